//! The `ssm-emulator` binary, driven as a user would, through aws-config.

use std::process::Stdio;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_ssm::config::Region;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::{PATIENCE, default_credentials, instance};

#[tokio::test]
async fn the_binary_prints_its_address_and_serves_until_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssm-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--instances",
            "2",
            "--offline",
            "1",
            "--builtin-commands",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let endpoint = line
        .strip_prefix("listening on ")
        .expect("the address line")
        .to_owned();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");

    let sdk_config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(default_credentials())
        .load()
        .await;
    let client = aws_sdk_ssm::Client::new(&sdk_config);
    let listed = client
        .describe_instance_information()
        .send()
        .await
        .expect("the binary serves SSM");
    let statuses: Vec<_> = listed
        .instance_information_list()
        .iter()
        .map(|i| i.ping_status().unwrap().as_str())
        .collect();
    assert_eq!(statuses, ["Online", "ConnectionLost"]);
    let sent = client
        .send_command()
        .instance_ids(instance(1))
        .document_name("AWS-RunShellScript")
        .parameters("commands", vec!["echo from the binary".into()])
        .send()
        .await
        .unwrap();
    let id = sent.command().unwrap().command_id().unwrap().to_owned();
    let out = crate::support::finished(&client, &id, &instance(1)).await;
    assert_eq!(out.standard_output_content(), Some("from the binary\n"));

    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        lines.next_line().await.unwrap().is_none(),
        "nothing else on stdout"
    );
}

#[tokio::test]
async fn the_binary_reports_bad_arguments_in_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_ssm-emulator"))
        .args(["--instances-file", "/nonexistent/instances.toml"])
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with("ssm-emulator: failed to read instances file"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(output.stdout.is_empty());
}
