//! Running commands: statuses, exit codes, output, timeouts, cancellation.

use aws_sdk_ssm::types::{
    CommandFilter, CommandFilterKey, CommandInvocationStatus, CommandStatus,
    InstanceInformationStringFilter,
};
use ssm_emulator::{Config, Instance, PingStatus, PlatformType};

use crate::support::{self, config, eventually, finished, instance, poll, send, start};

#[tokio::test]
async fn a_successful_script_reports_its_output_and_timestamps() {
    let setup = start(config(1)).await;
    let id = send(&setup.client, &[instance(1)], &["echo out", "echo err >&2"]).await;
    let out = finished(&setup.client, &id, &instance(1)).await;

    assert_eq!(out.status(), Some(&CommandInvocationStatus::Success));
    assert_eq!(out.status_details(), Some("Success"));
    assert_eq!(out.response_code(), 0);
    assert_eq!(out.standard_output_content(), Some("out\n"));
    assert_eq!(out.standard_error_content(), Some("err\n"));
    assert_eq!(out.plugin_name(), Some("aws:runShellScript"));
    assert_eq!(out.document_version(), Some("$DEFAULT"));
    let start = out.execution_start_date_time().unwrap();
    assert_eq!(start.len(), "2023-05-12T12:49:12.236Z".len(), "{start}");
    assert!(start.ends_with('Z'));
    let elapsed = out.execution_elapsed_time().unwrap();
    assert!(
        elapsed.starts_with("PT") && elapsed.ends_with('S'),
        "{elapsed}"
    );
}

#[tokio::test]
async fn a_failing_script_reports_its_exit_code() {
    let setup = start(config(1)).await;
    let id = send(
        &setup.client,
        &[instance(1)],
        &["echo partial", "printf oops >&2", "exit 3"],
    )
    .await;
    let out = finished(&setup.client, &id, &instance(1)).await;

    assert_eq!(out.status(), Some(&CommandInvocationStatus::Failed));
    assert_eq!(out.status_details(), Some("Failed"));
    assert_eq!(out.response_code(), 3);
    assert_eq!(out.standard_output_content(), Some("partial\n"));
    // The agent reports the failure on stderr, on a line of its own.
    assert_eq!(
        out.standard_error_content(),
        Some("oops\nfailed to run commands: exit status 3\n")
    );
}

#[tokio::test]
async fn pending_invocations_have_response_code_minus_one_and_no_output() {
    let mut cfg = config(1);
    cfg.faults.agent_latency_ms = ssm_emulator::LatencyRange::fixed(60_000);
    let setup = start(cfg).await;
    let id = send(&setup.client, &[instance(1)], &["echo hi"]).await;
    let out = poll(&setup.client, &id, &instance(1), |_| true).await;

    assert_eq!(out.status(), Some(&CommandInvocationStatus::Pending));
    assert_eq!(out.response_code(), -1);
    assert_eq!(out.standard_output_content(), Some(""));
    assert_eq!(out.execution_start_date_time(), Some(""));
}

#[tokio::test]
async fn commands_run_as_one_script_in_the_instance_working_directory() {
    let setup = start(config(2)).await;
    let script = [
        "X=kept",
        "mkdir -p sub && cd sub",
        "echo $X $(pwd)",
        "echo $SSM_COMMAND_ID $AWS_SSM_INSTANCE_ID",
    ];
    let id = send(&setup.client, &[instance(1), instance(2)], &script).await;

    for n in [1, 2] {
        let out = finished(&setup.client, &id, &instance(n)).await;
        let home = setup.emulator.instance_dir(&instance(n)).unwrap();
        let expected = format!("kept {}/sub\n{id} {}\n", home.display(), instance(n));
        assert_eq!(out.standard_output_content(), Some(expected.as_str()));
    }
}

#[tokio::test]
async fn a_relative_working_directory_is_used_when_it_exists() {
    let setup = start(config(1)).await;
    let id = send(&setup.client, &[instance(1)], &["mkdir -p work"]).await;
    finished(&setup.client, &id, &instance(1)).await;

    let out = setup
        .client
        .send_command()
        .instance_ids(instance(1))
        .document_name("AWS-RunShellScript")
        .parameters("commands", vec!["pwd".into()])
        .parameters("workingDirectory", vec!["work".into()])
        .send()
        .await
        .unwrap();
    let id = out.command().unwrap().command_id().unwrap().to_owned();
    let out = finished(&setup.client, &id, &instance(1)).await;
    let home = setup.emulator.instance_dir(&instance(1)).unwrap();
    assert_eq!(
        out.standard_output_content(),
        Some(format!("{}/work\n", home.display()).as_str())
    );
}

#[tokio::test]
async fn the_execution_timeout_kills_the_whole_process_group() {
    let setup = start(Config {
        time_scale: 0.1,
        ..config(1)
    })
    .await;
    let out = setup
        .client
        .send_command()
        .instance_ids(instance(1))
        .document_name("AWS-RunShellScript")
        .parameters(
            "commands",
            vec![
                "sleep 60 &".into(),
                "echo started".into(),
                "sleep 60".into(),
            ],
        )
        .parameters("executionTimeout", vec!["20".into()])
        .send()
        .await
        .unwrap();
    let id = out.command().unwrap().command_id().unwrap().to_owned();
    eventually("the script runs", || {
        setup.emulator.processes_alive(&id, &instance(1))
    })
    .await;

    let out = finished(&setup.client, &id, &instance(1)).await;
    assert_eq!(out.status(), Some(&CommandInvocationStatus::TimedOut));
    assert_eq!(out.status_details(), Some("ExecutionTimedOut"));
    assert_eq!(out.response_code(), 137);
    assert_eq!(out.standard_output_content(), Some("started\n"));
    eventually("the killed processes are gone", || {
        !setup.emulator.processes_alive(&id, &instance(1))
    })
    .await;
}

#[tokio::test]
async fn cancelling_a_running_command_kills_it() {
    let setup = start(config(1)).await;
    let id = send(&setup.client, &[instance(1)], &["sleep 60 &", "sleep 60"]).await;
    eventually("the script runs", || {
        setup.emulator.processes_alive(&id, &instance(1))
    })
    .await;

    setup
        .client
        .cancel_command()
        .command_id(&id)
        .send()
        .await
        .expect("CancelCommand works");
    let out = finished(&setup.client, &id, &instance(1)).await;
    assert_eq!(out.status(), Some(&CommandInvocationStatus::Cancelled));
    assert_eq!(out.response_code(), 137);
    eventually("the cancelled processes are gone", || {
        !setup.emulator.processes_alive(&id, &instance(1))
    })
    .await;

    let listed = setup
        .client
        .list_commands()
        .command_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.commands()[0].status(),
        Some(&CommandStatus::Cancelled)
    );
}

#[tokio::test]
async fn cancelling_before_pickup_never_runs_the_command() {
    let mut cfg = config(1);
    cfg.faults.agent_latency_ms = ssm_emulator::LatencyRange::fixed(60_000);
    let setup = start(cfg).await;
    let id = send(&setup.client, &[instance(1)], &["echo never"]).await;
    setup
        .client
        .cancel_command()
        .command_id(&id)
        .instance_ids(instance(1))
        .send()
        .await
        .unwrap();

    let out = finished(&setup.client, &id, &instance(1)).await;
    assert_eq!(out.status(), Some(&CommandInvocationStatus::Cancelled));
    assert_eq!(out.response_code(), -1);
    assert_eq!(setup.emulator.spawned_processes(), 0);
}

#[tokio::test]
async fn an_offline_instance_times_out_delivery() {
    let mut cfg = Config {
        time_scale: 0.01,
        ..config(2)
    };
    cfg.instances[1].ping_status = PingStatus::ConnectionLost;
    let setup = start(cfg).await;
    let out = setup
        .client
        .send_command()
        .instance_ids(instance(2))
        .document_name("AWS-RunShellScript")
        .timeout_seconds(30)
        .parameters("commands", vec!["echo never".into()])
        .send()
        .await
        .unwrap();
    let id = out.command().unwrap().command_id().unwrap().to_owned();

    let out = finished(&setup.client, &id, &instance(2)).await;
    assert_eq!(out.status(), Some(&CommandInvocationStatus::TimedOut));
    assert_eq!(out.status_details(), Some("DeliveryTimedOut"));
    assert_eq!(out.response_code(), -1);
    let command = &setup
        .client
        .list_commands()
        .command_id(&id)
        .send()
        .await
        .unwrap()
        .commands()[0]
        .clone();
    assert_eq!(command.status(), Some(&CommandStatus::TimedOut));
    assert_eq!(command.status_details(), Some("DeliveryTimedOut"));
    assert_eq!(command.delivery_timed_out_count(), 1);
    assert_eq!(setup.emulator.spawned_processes(), 0);
}

#[tokio::test]
async fn output_is_truncated_like_the_service() {
    let setup = start(config(1)).await;
    let script = [
        "head -c 30000 /dev/zero | tr '\\0' a",
        "head -c 10000 /dev/zero | tr '\\0' b >&2",
    ];
    let id = send(&setup.client, &[instance(1)], &script).await;
    let out = finished(&setup.client, &id, &instance(1)).await;

    let stdout = out.standard_output_content().unwrap();
    assert_eq!(stdout.len(), 24_000);
    assert!(stdout.ends_with("aaa--output truncated--"));
    let stderr = out.standard_error_content().unwrap();
    assert_eq!(stderr.chars().count(), 8_000);
    assert!(stderr.chars().all(|c| c == 'b'));

    let listed = setup
        .client
        .list_command_invocations()
        .command_id(&id)
        .details(true)
        .send()
        .await
        .unwrap();
    let output = listed.command_invocations()[0].command_plugins()[0]
        .output()
        .unwrap();
    assert!(output.len() <= 2_500, "{}", output.len());
    assert!(output.starts_with("aaa"));
    assert!(output.contains("a\n---Output truncated---\n----------ERROR-------\nbbb"));
    assert!(output.ends_with("b\n---Error truncated----"));
}

#[tokio::test]
async fn binary_output_arrives_with_replacement_characters() {
    let setup = start(config(1)).await;
    let id = send(&setup.client, &[instance(1)], &["printf 'ok\\377\\376\\n'"]).await;
    let out = finished(&setup.client, &id, &instance(1)).await;
    assert_eq!(out.standard_output_content(), Some("ok\u{fffd}\u{fffd}\n"));
}

#[tokio::test]
async fn powershell_documents_fail_like_an_agent_without_powershell() {
    let setup = start(config(1)).await;
    let out = setup
        .client
        .send_command()
        .instance_ids(instance(1))
        .document_name("AWS-RunPowerShellScript")
        .parameters("commands", vec!["Write-Output hi".into()])
        .send()
        .await
        .expect("PowerShell documents are accepted");
    let id = out.command().unwrap().command_id().unwrap().to_owned();
    let out = finished(&setup.client, &id, &instance(1)).await;
    assert_eq!(out.status(), Some(&CommandInvocationStatus::Failed));
    assert_eq!(out.response_code(), 1);
    assert!(out.standard_error_content().unwrap().contains("powershell"));
    assert_eq!(out.plugin_name(), Some("aws:runPowerShellScript"));
}

#[tokio::test]
async fn shell_scripts_are_refused_for_windows_instances() {
    let mut cfg = config(1);
    cfg.instances = vec![Instance::numbered(1).with_platform(PlatformType::Windows)];
    let setup = start(cfg).await;
    let err = setup
        .client
        .send_command()
        .instance_ids(instance(1))
        .document_name("AWS-RunShellScript")
        .parameters("commands", vec!["echo hi".into()])
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_unsupported_platform_type(),
        "{err:?}"
    );
}

#[tokio::test]
async fn builtin_commands_answer_without_starting_processes() {
    let setup = start(Config {
        builtin_commands: true,
        ..config(1)
    })
    .await;
    let id = send(
        &setup.client,
        &[instance(1)],
        &["echo hello world", "exit 4"],
    )
    .await;
    let out = finished(&setup.client, &id, &instance(1)).await;
    assert_eq!(out.status(), Some(&CommandInvocationStatus::Failed));
    assert_eq!(out.response_code(), 4);
    assert_eq!(out.standard_output_content(), Some("hello world\n"));
    assert_eq!(setup.emulator.spawned_processes(), 0);

    // Anything else still runs in a shell.
    let id = send(
        &setup.client,
        &[instance(1)],
        &["echo $AWS_SSM_INSTANCE_ID"],
    )
    .await;
    let out = finished(&setup.client, &id, &instance(1)).await;
    assert_eq!(
        out.standard_output_content(),
        Some(format!("{}\n", instance(1)).as_str())
    );
    assert_eq!(setup.emulator.spawned_processes(), 1);
}

#[tokio::test]
async fn one_command_runs_on_fifty_instances_at_once() {
    let setup = start(config(50)).await;
    let ids: Vec<String> = (1..=50).map(instance).collect();
    let id = send(
        &setup.client,
        &ids,
        &["sleep 0.2", "echo $AWS_SSM_INSTANCE_ID"],
    )
    .await;
    for target in &ids {
        let out = finished(&setup.client, &id, target).await;
        assert_eq!(
            out.standard_output_content(),
            Some(format!("{target}\n").as_str())
        );
    }
    let command = setup
        .client
        .list_commands()
        .command_id(&id)
        .send()
        .await
        .unwrap()
        .commands()[0]
        .clone();
    assert_eq!(command.status(), Some(&CommandStatus::Success));
    assert_eq!(
        (
            command.target_count(),
            command.completed_count(),
            command.error_count()
        ),
        (50, 50, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_commands_run_at_once_on_their_instances() {
    let setup = start(config(1_000)).await;
    let mut senders = tokio::task::JoinSet::new();
    for worker in 0..10u32 {
        let client = setup.client.clone();
        senders.spawn(async move {
            let mut sent = Vec::new();
            for n in 1 + worker * 100..=(worker + 1) * 100 {
                let script = format!("sleep 2; echo {n}");
                sent.push((n, send(&client, &[instance(n)], &[&script]).await));
            }
            sent
        });
    }
    let sent: Vec<(u32, String)> = senders.join_all().await.into_iter().flatten().collect();
    assert_eq!(sent.len(), 1_000);
    // Each waits 2 s; one after another they would take over half an hour,
    // far past the patience of the polls below.
    for (n, id) in &sent {
        let out = finished(&setup.client, id, &instance(*n)).await;
        assert_eq!(out.status(), Some(&CommandInvocationStatus::Success), "{n}");
        assert_eq!(
            out.standard_output_content(),
            Some(format!("{n}\n").as_str())
        );
    }
    assert_eq!(setup.emulator.spawned_processes(), 1_000);
}

#[tokio::test]
async fn ten_thousand_instances_hold_a_thousand_commands_in_flight() {
    let mut cfg = Config {
        builtin_commands: true,
        ..support::config(10_000)
    };
    // The agent waits long enough that every command is still in flight at the end.
    cfg.faults.agent_latency_ms = ssm_emulator::LatencyRange::fixed(600_000);
    let setup = start(cfg).await;

    // Twenty senders keep twenty connections busy, as a pooled client would.
    let mut senders = tokio::task::JoinSet::new();
    for worker in 0..20u32 {
        let client = setup.client.clone();
        senders.spawn(async move {
            let mut sent = Vec::new();
            for n in (1 + worker * 500..=(worker + 1) * 500).step_by(10) {
                sent.push((
                    n,
                    send(&client, &[instance(n)], &[&format!("echo {n}")]).await,
                ));
            }
            sent
        });
    }
    let sent: Vec<(u32, String)> = senders.join_all().await.into_iter().flatten().collect();
    assert_eq!(sent.len(), 1_000);

    let executing = CommandFilter::builder()
        .key(CommandFilterKey::ExecutionStage)
        .value("Executing")
        .build()
        .unwrap();
    let in_flight = setup
        .client
        .list_commands()
        .filters(executing)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(in_flight.len(), 1_000);
    let (n, id) = &sent[777];
    let out = poll(&setup.client, id, &instance(*n), |_| true).await;
    assert_eq!(out.status(), Some(&CommandInvocationStatus::Pending));
    let last = setup
        .client
        .describe_instance_information()
        .filters(
            InstanceInformationStringFilter::builder()
                .key("InstanceIds")
                .values(instance(10_000))
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        last.instance_information_list()[0].ip_address(),
        Some("10.0.39.16")
    );
    assert_eq!(setup.emulator.spawned_processes(), 0);
}

#[tokio::test]
async fn builtin_answers_complete_a_burst_of_commands() {
    let setup = start(Config {
        builtin_commands: true,
        ..support::config(200)
    })
    .await;
    let mut sends = tokio::task::JoinSet::new();
    for n in 1..=200 {
        let client = setup.client.clone();
        sends.spawn(async move {
            (
                n,
                send(&client, &[instance(n)], &[&format!("echo {n}")]).await,
            )
        });
    }
    for (n, id) in sends.join_all().await {
        let out = finished(&setup.client, &id, &instance(n)).await;
        assert_eq!(
            out.standard_output_content(),
            Some(format!("{n}\n").as_str())
        );
    }
    assert_eq!(setup.emulator.spawned_processes(), 0);
}
