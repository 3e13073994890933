//! The listing operations and their paginators.

use std::collections::HashSet;

use aws_sdk_ssm::types::{
    CommandFilter, CommandFilterKey, CommandInvocationStatus, InstanceInformationStringFilter,
    PingStatus as SdkPingStatus, PlatformType as SdkPlatformType,
};
use ssm_emulator::{Instance, PingStatus, PlatformType};

use crate::support::{config, finished, instance, send, start};

fn string_filter(key: &str, values: &[&str]) -> InstanceInformationStringFilter {
    let mut filter = InstanceInformationStringFilter::builder().key(key);
    for value in values {
        filter = filter.values(*value);
    }
    filter.build().unwrap()
}

#[tokio::test]
async fn describe_instance_information_pages_through_every_instance() {
    let mut cfg = config(23);
    for n in [5, 6, 7] {
        cfg.instances[n - 1].ping_status = PingStatus::ConnectionLost;
    }
    cfg.instances[22] = Instance::numbered(23).with_platform(PlatformType::Windows);
    let setup = start(cfg).await;

    let all: Vec<_> = setup
        .client
        .describe_instance_information()
        .into_paginator()
        .page_size(5)
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    let ids: Vec<&str> = all.iter().filter_map(|i| i.instance_id()).collect();
    assert_eq!(ids, (1..=23).map(instance).collect::<Vec<_>>());
    let third = &all[2];
    assert_eq!(third.ip_address(), Some("10.0.0.3"));
    assert_eq!(third.computer_name(), Some("ip-10-0-0-3.ec2.internal"));
    assert_eq!(third.platform_type(), Some(&SdkPlatformType::Linux));
    assert_eq!(third.ping_status(), Some(&SdkPingStatus::Online));
    assert!(third.last_ping_date_time().is_some());
    assert!(third.agent_version().is_some());

    let offline = setup
        .client
        .describe_instance_information()
        .filters(string_filter("PingStatus", &["ConnectionLost"]))
        .send()
        .await
        .unwrap();
    let offline: Vec<_> = offline
        .instance_information_list()
        .iter()
        .filter_map(|i| i.instance_id())
        .collect();
    assert_eq!(offline, [instance(5), instance(6), instance(7)]);

    let windows = setup
        .client
        .describe_instance_information()
        .filters(string_filter("PlatformTypes", &["Windows"]))
        .send()
        .await
        .unwrap();
    assert_eq!(windows.instance_information_list().len(), 1);

    let named = setup
        .client
        .describe_instance_information()
        .filters(string_filter("tag:Name", &["node-7", "node-9"]))
        .send()
        .await
        .unwrap();
    assert_eq!(named.instance_information_list().len(), 2);
}

#[tokio::test]
async fn an_instance_ids_filter_pages_through_the_named_instances() {
    let setup = start(config(30)).await;
    let wanted: Vec<String> = [2, 4, 8, 16, 17, 20, 29]
        .into_iter()
        .map(instance)
        .collect();
    let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
    let found: Vec<_> = setup
        .client
        .describe_instance_information()
        .filters(string_filter("InstanceIds", &names))
        .into_paginator()
        .page_size(5)
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    let ids: Vec<String> = found
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect();
    assert_eq!(ids, wanted);
}

#[tokio::test]
async fn list_commands_pages_newest_first() {
    let setup = start(config(2)).await;
    let mut sent = Vec::new();
    for n in 0..7 {
        sent.push(
            send(
                &setup.client,
                &[instance(1 + n % 2)],
                &[&format!("echo {n}")],
            )
            .await,
        );
    }

    let listed: Vec<_> = setup
        .client
        .list_commands()
        .into_paginator()
        .page_size(2)
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    let ids: Vec<String> = listed
        .iter()
        .filter_map(|c| c.command_id().map(str::to_owned))
        .collect();
    sent.reverse();
    assert_eq!(ids, sent);
    assert!(
        listed
            .iter()
            .all(|c| c.document_name() == Some("AWS-RunShellScript"))
    );
    assert!(listed.iter().all(|c| c.requested_date_time().is_some()));

    let on_two = setup
        .client
        .list_commands()
        .instance_id(instance(2))
        .send()
        .await
        .unwrap();
    assert_eq!(on_two.commands().len(), 3);
}

#[tokio::test]
async fn list_command_invocations_pages_and_filters() {
    let setup = start(config(5)).await;
    let all: Vec<String> = (1..=5).map(instance).collect();
    let first = send(&setup.client, &all, &["echo one"]).await;
    let second = send(&setup.client, &[instance(3)], &["exit 1"]).await;
    for id in &all {
        finished(&setup.client, &first, id).await;
    }
    finished(&setup.client, &second, &instance(3)).await;

    let every: Vec<_> = setup
        .client
        .list_command_invocations()
        .into_paginator()
        .page_size(2)
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(every.len(), 6);
    assert_eq!(every[0].command_id(), Some(second.as_str()));
    let unique: HashSet<(String, String)> = every
        .iter()
        .map(|i| {
            (
                i.command_id().unwrap().to_owned(),
                i.instance_id().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(unique.len(), 6);

    let of_first = setup
        .client
        .list_command_invocations()
        .command_id(&first)
        .details(true)
        .send()
        .await
        .unwrap();
    assert_eq!(of_first.command_invocations().len(), 5);
    let plugin = &of_first.command_invocations()[0].command_plugins()[0];
    assert_eq!(plugin.name(), Some("aws:runShellScript"));
    assert_eq!(plugin.output(), Some("one\n"));
    assert_eq!(plugin.response_code(), 0);

    let failed = CommandFilter::builder()
        .key(CommandFilterKey::Status)
        .value("Failed")
        .build()
        .unwrap();
    let failed = setup
        .client
        .list_command_invocations()
        .filters(failed)
        .send()
        .await
        .unwrap();
    let failed = failed.command_invocations();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].status(), Some(&CommandInvocationStatus::Failed));
    assert_eq!(failed[0].instance_id(), Some(instance(3).as_str()));

    let on_three = setup
        .client
        .list_command_invocations()
        .instance_id(instance(3))
        .send()
        .await
        .unwrap();
    assert_eq!(on_three.command_invocations().len(), 2);
    let without_details = setup
        .client
        .list_command_invocations()
        .command_id(&second)
        .send()
        .await
        .unwrap();
    assert!(
        without_details.command_invocations()[0]
            .command_plugins()
            .is_empty()
    );
}
