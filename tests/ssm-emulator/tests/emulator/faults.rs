//! Fault injection: throttling, injected errors, resets, delays, and changing
//! faults while the emulator runs.

use std::time::{Duration, Instant};

use aws_sdk_ssm::error::ProvideErrorMetadata;
use ssm_emulator::{Faults, Throttle};

use crate::support::{client, config, default_credentials, raw, start, still_serving};

fn throttled(op: &str, rate: f64, burst: u32) -> Faults {
    let mut faults = Faults::default();
    faults
        .throttle
        .insert(op.to_owned(), Throttle { rate, burst });
    faults
}

#[tokio::test]
async fn throttled_calls_fail_with_throttling_exception() {
    let setup = start(config(1)).await;
    setup
        .emulator
        .set_faults(throttled("ListCommands", 0.001, 1))
        .unwrap();
    let no_retries = client(&setup.emulator, default_credentials(), 1);

    no_retries
        .list_commands()
        .send()
        .await
        .expect("the burst allows one call");
    let err = no_retries.list_commands().send().await.unwrap_err();
    assert_eq!(err.code(), Some("ThrottlingException"), "{err:?}");
    assert_eq!(err.message(), Some("Rate exceeded"));
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 400);
    // Other operations have no bucket.
    still_serving(&setup).await;
}

#[tokio::test]
async fn the_sdk_retries_throttled_calls_until_they_pass() {
    let setup = start(config(1)).await;
    setup
        .emulator
        .set_faults(throttled("DescribeInstanceInformation", 2.0, 1))
        .unwrap();
    let patient = client(&setup.emulator, default_credentials(), 10);

    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let client = patient.clone();
        calls.spawn(async move {
            client
                .describe_instance_information()
                .send()
                .await
                .map(|_| ())
        });
    }
    for result in calls.join_all().await {
        result.expect("retries get through the throttle");
    }
    let attempts = setup.emulator.calls("DescribeInstanceInformation");
    assert!(
        attempts > 3,
        "expected throttled retries, saw {attempts} calls"
    );
}

#[tokio::test]
async fn injected_internal_errors_are_retried_by_the_sdk() {
    let setup = start(config(1)).await;
    setup
        .emulator
        .set_faults(Faults {
            error_rate: 1.0,
            ..Faults::default()
        })
        .unwrap();
    let err = setup.client.list_commands().send().await.unwrap_err();
    assert_eq!(err.code(), Some("InternalServerError"), "{err:?}");
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 500);
    assert_eq!(setup.emulator.calls("ListCommands"), 3);
}

#[tokio::test]
async fn reset_connections_are_retried_by_the_sdk() {
    let setup = start(config(1)).await;
    setup
        .emulator
        .set_faults(Faults {
            reset_rate: 1.0,
            ..Faults::default()
        })
        .unwrap();
    let err = setup.client.list_commands().send().await.unwrap_err();
    assert!(
        err.raw_response().is_none(),
        "a reset leaves no response: {err:?}"
    );
    assert_eq!(setup.emulator.calls("ListCommands"), 3);

    setup.emulator.set_faults(Faults::default()).unwrap();
    setup
        .client
        .list_commands()
        .send()
        .await
        .expect("serves again once resets stop");
}

#[tokio::test]
async fn a_response_delay_slows_every_answer() {
    let setup = start(config(1)).await;
    setup
        .emulator
        .set_faults(Faults {
            response_delay_ms: 300,
            ..Faults::default()
        })
        .unwrap();
    let began = Instant::now();
    setup.client.list_commands().send().await.unwrap();
    assert!(began.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn faults_change_at_runtime_through_the_admin_endpoint() {
    let setup = start(config(1)).await;
    let json = [("content-type".to_owned(), "application/json".to_owned())];
    let body =
        br#"{"throttle": {"ListCommands": {"rate": 0.001, "burst": 1}}, "response_delay_ms": 5}"#;
    let answer = raw(&setup.emulator, "POST", "/_emulator/faults", &json, body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let faults = setup.emulator.faults();
    assert_eq!(faults.throttle["ListCommands"].burst, 1);
    assert_eq!(faults.response_delay_ms, 5);

    let no_retries = client(&setup.emulator, default_credentials(), 1);
    no_retries.list_commands().send().await.unwrap();
    let err = no_retries.list_commands().send().await.unwrap_err();
    assert_eq!(err.code(), Some("ThrottlingException"));

    let current = raw(&setup.emulator, "GET", "/_emulator/faults", &[], b"").await;
    assert!(
        current.body.contains("\"ListCommands\""),
        "{}",
        current.body
    );
    let calls = raw(&setup.emulator, "GET", "/_emulator/calls", &[], b"").await;
    let calls: serde_json::Value = serde_json::from_str(&calls.body).unwrap();
    assert_eq!(calls["ListCommands"], 2);

    let bad = raw(
        &setup.emulator,
        "POST",
        "/_emulator/faults",
        &json,
        br#"{"error_rate": 7}"#,
    )
    .await;
    assert_eq!(bad.status, 400);
    let bad = raw(
        &setup.emulator,
        "POST",
        "/_emulator/faults",
        &json,
        b"{not json",
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(setup.emulator.faults().response_delay_ms, 5);
}
