//! Errors: the typed errors the SDK surfaces, signatures, and malformed input.

use std::time::{Duration, SystemTime};

use aws_sdk_ssm::config::Credentials;
use aws_sdk_ssm::error::ProvideErrorMetadata;
use ssm_emulator::{Config, DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator};

use crate::support::{
    self, client, config, instance, raw, send, signed, signed_headers, start, still_serving,
};

#[tokio::test]
async fn an_unknown_instance_is_an_invalid_instance_id() {
    let setup = start(config(1)).await;
    let err = setup
        .client
        .send_command()
        .instance_ids("i-0000000000000abcd")
        .document_name("AWS-RunShellScript")
        .parameters("commands", vec!["true".into()])
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error().unwrap().is_invalid_instance_id(),
        "{err:?}"
    );
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 400);
}

#[tokio::test]
async fn fifty_one_instance_ids_fail_validation() {
    let setup = start(config(51)).await;
    let mut request = setup
        .client
        .send_command()
        .document_name("AWS-RunShellScript");
    for n in 1..=51 {
        request = request.instance_ids(instance(n));
    }
    let err = request
        .parameters("commands", vec!["true".into()])
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"), "{err:?}");
    assert!(err.message().unwrap().contains("50"));
    still_serving(&setup).await;
}

#[tokio::test]
async fn invocations_do_not_exist_during_the_consistency_window() {
    let mut cfg = config(1);
    cfg.faults.invocation_does_not_exist_ms = 1_500;
    let setup = start(cfg).await;
    let id = send(&setup.client, &[instance(1)], &["echo hi"]).await;

    let err = setup
        .client
        .get_command_invocation()
        .command_id(&id)
        .instance_id(instance(1))
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_invocation_does_not_exist(),
        "{err:?}"
    );
    let listed = setup
        .client
        .list_command_invocations()
        .command_id(&id)
        .send()
        .await
        .unwrap();
    assert!(listed.command_invocations().is_empty());

    let out = crate::support::finished(&setup.client, &id, &instance(1)).await;
    assert_eq!(out.standard_output_content(), Some("hi\n"));
    let listed = setup
        .client
        .list_command_invocations()
        .command_id(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.command_invocations().len(), 1);
}

#[tokio::test]
async fn an_unknown_command_has_no_invocation() {
    let setup = start(config(1)).await;
    let err = setup
        .client
        .get_command_invocation()
        .command_id("00000000-0000-4000-8000-000000000000")
        .instance_id(instance(1))
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_invocation_does_not_exist(),
        "{err:?}"
    );
    let err = setup
        .client
        .cancel_command()
        .command_id("00000000-0000-4000-8000-000000000000")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error().unwrap().is_invalid_command_id(),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_wrong_secret_is_an_invalid_signature() {
    let setup = start(config(1)).await;
    let wrong = Credentials::new(DEFAULT_ACCESS_KEY_ID, "not-the-secret", None, None, "tests");
    let err = client(&setup.emulator, wrong, 1)
        .describe_instance_information()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidSignatureException"), "{err:?}");
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 400);
}

#[tokio::test]
async fn an_unknown_access_key_is_an_unrecognized_client() {
    let setup = start(config(1)).await;
    let unknown = Credentials::new("AKIDNOBODY", DEFAULT_SECRET_ACCESS_KEY, None, None, "tests");
    let err = client(&setup.emulator, unknown, 1)
        .describe_instance_information()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UnrecognizedClientException"), "{err:?}");
}

#[tokio::test]
async fn session_tokens_must_match_the_configured_one() {
    let key =
        ssm_emulator::Credentials::new("AKIDTEMP", "temp-secret").with_session_token("token-1");
    let cfg = Config {
        credentials: vec![key],
        ..config(1)
    };
    let emulator = Emulator::start(cfg).await.unwrap();

    let good = Credentials::new(
        "AKIDTEMP",
        "temp-secret",
        Some("token-1".into()),
        None,
        "tests",
    );
    client(&emulator, good, 1)
        .describe_instance_information()
        .send()
        .await
        .expect("token accepted");
    let missing = Credentials::new("AKIDTEMP", "temp-secret", None, None, "tests");
    let err = client(&emulator, missing, 1)
        .describe_instance_information()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UnrecognizedClientException"));
    let other = Credentials::new(
        "AKIDTEMP",
        "temp-secret",
        Some("token-2".into()),
        None,
        "tests",
    );
    let err = client(&emulator, other, 1)
        .describe_instance_information()
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("UnrecognizedClientException"));
}

#[tokio::test]
async fn a_request_without_authorization_is_missing_its_token() {
    let setup = start(config(1)).await;
    let headers = vec![(
        "x-amz-target".to_owned(),
        "AmazonSSM.ListCommands".to_owned(),
    )];
    let answer = raw(&setup.emulator, "POST", "/", &headers, b"{}").await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.error_type(), "MissingAuthenticationTokenException");
    still_serving(&setup).await;
}

#[tokio::test]
async fn a_stale_signature_has_expired() {
    let setup = start(config(1)).await;
    let old = SystemTime::now() - Duration::from_secs(600);
    let headers = signed_headers(
        &setup.emulator,
        "ListCommands",
        b"{}",
        DEFAULT_SECRET_ACCESS_KEY,
        old,
    );
    let answer = raw(&setup.emulator, "POST", "/", &headers, b"{}").await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.error_type(), "InvalidSignatureException");
    assert!(answer.body.contains("Signature expired"), "{}", answer.body);
}

#[tokio::test]
async fn a_signature_dated_in_the_future_has_not_started() {
    let setup = start(config(1)).await;
    let ahead = SystemTime::now() + Duration::from_secs(600);
    let headers = signed_headers(
        &setup.emulator,
        "ListCommands",
        b"{}",
        DEFAULT_SECRET_ACCESS_KEY,
        ahead,
    );
    let answer = raw(&setup.emulator, "POST", "/", &headers, b"{}").await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.error_type(), "InvalidSignatureException");
    still_serving(&setup).await;
}

#[tokio::test]
async fn a_signature_for_another_region_or_service_is_refused() {
    let setup = start(config(1)).await;
    for (scope, says) in [
        (
            ("eu-west-1", "ssm"),
            "scoped to a valid region, not 'eu-west-1'",
        ),
        (
            (setup.emulator.region(), "ec2"),
            "scoped to correct service",
        ),
    ] {
        let headers = support::signed_headers_scoped(
            &setup.emulator,
            "ListCommands",
            b"{}",
            DEFAULT_SECRET_ACCESS_KEY,
            SystemTime::now(),
            scope,
        );
        let answer = raw(&setup.emulator, "POST", "/", &headers, b"{}").await;
        assert_eq!(answer.status, 400, "{scope:?}");
        assert_eq!(
            answer.error_type(),
            "InvalidSignatureException",
            "{scope:?}"
        );
        assert!(answer.body.contains(says), "{scope:?}: {}", answer.body);
    }
    still_serving(&setup).await;
}

#[tokio::test]
async fn a_signature_without_its_date_header_is_incomplete() {
    let setup = start(config(1)).await;
    let headers: Vec<(String, String)> = signed_headers(
        &setup.emulator,
        "ListCommands",
        b"{}",
        DEFAULT_SECRET_ACCESS_KEY,
        SystemTime::now(),
    )
    .into_iter()
    .filter(|(name, _)| name != "x-amz-date")
    .collect();
    let answer = raw(&setup.emulator, "POST", "/", &headers, b"{}").await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.error_type(), "IncompleteSignatureException");
    assert!(answer.body.contains("X-Amz-Date"), "{}", answer.body);
}

#[tokio::test]
async fn a_tampered_body_breaks_the_signature() {
    let setup = start(config(1)).await;
    let headers = signed_headers(
        &setup.emulator,
        "ListCommands",
        b"{}",
        DEFAULT_SECRET_ACCESS_KEY,
        SystemTime::now(),
    );
    let answer = raw(&setup.emulator, "POST", "/", &headers, b"{ }").await;
    assert_eq!(answer.error_type(), "InvalidSignatureException");
}

#[tokio::test]
async fn a_truncated_authorization_header_is_an_incomplete_signature() {
    let setup = start(config(1)).await;
    let headers = vec![
        (
            "x-amz-target".to_owned(),
            "AmazonSSM.ListCommands".to_owned(),
        ),
        (
            "authorization".to_owned(),
            "AWS4-HMAC-SHA256 Credential=AKIDRAILBOXEMULATOR/2026".to_owned(),
        ),
    ];
    let answer = raw(&setup.emulator, "POST", "/", &headers, b"{}").await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.error_type(), "IncompleteSignatureException");
}

#[tokio::test]
async fn malformed_json_is_a_serialization_error() {
    let setup = start(config(1)).await;
    let answer = signed(&setup.emulator, "SendCommand", b"{\"InstanceIds\": [").await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.error_type(), "SerializationException");
    still_serving(&setup).await;
}

#[tokio::test]
async fn an_ill_typed_member_is_a_serialization_error() {
    let setup = start(config(1)).await;
    let body = br#"{"InstanceIds": "i-00000000000000001", "DocumentName": "AWS-RunShellScript"}"#;
    let answer = signed(&setup.emulator, "SendCommand", body).await;
    assert_eq!(answer.error_type(), "SerializationException");
}

#[tokio::test]
async fn a_missing_required_member_fails_validation() {
    let setup = start(config(1)).await;
    let answer = signed(&setup.emulator, "GetCommandInvocation", b"{}").await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.error_type(), "ValidationException");
    let answer = signed(
        &setup.emulator,
        "SendCommand",
        br#"{"InstanceIds": ["i-00000000000000001"]}"#,
    )
    .await;
    assert_eq!(answer.error_type(), "ValidationException");
}

#[tokio::test]
async fn an_unknown_operation_is_rejected() {
    let setup = start(config(1)).await;
    let answer = signed(&setup.emulator, "MakeCoffee", b"{}").await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.error_type(), "UnknownOperationException");
    assert_eq!(setup.emulator.calls("MakeCoffee"), 1);
}

#[tokio::test]
async fn oversized_parameters_exceed_the_document_size() {
    let setup = start(config(1)).await;
    let big = "x".repeat(70 * 1024);
    let err = setup
        .client
        .send_command()
        .instance_ids(instance(1))
        .document_name("AWS-RunShellScript")
        .parameters("commands", vec![format!("echo {big}")])
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_max_document_size_exceeded(),
        "{err:?}"
    );

    // Past the body limit the emulator answers 413 and closes; the close may
    // reset the connection before the client reads the answer.
    let huge = vec![b' '; 2 * 1024 * 1024];
    let answer = signed(&setup.emulator, "SendCommand", &huge).await;
    assert!(matches!(answer.status, 413 | 0), "{}", answer.status);
    still_serving(&setup).await;
}

#[tokio::test]
async fn invalid_parameters_are_rejected() {
    let setup = start(config(1)).await;
    let base = || {
        setup
            .client
            .send_command()
            .instance_ids(instance(1))
            .document_name("AWS-RunShellScript")
    };
    let err = base()
        .parameters("commands", vec![])
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error().unwrap().is_invalid_parameters(),
        "{err:?}"
    );
    let err = base()
        .parameters("commands", vec!["true".into()])
        .parameters("colour", vec!["red".into()])
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error().unwrap().is_invalid_parameters(),
        "{err:?}"
    );
    let err = base()
        .parameters("commands", vec!["true".into()])
        .timeout_seconds(10)
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ValidationException"));
    let err = setup
        .client
        .send_command()
        .instance_ids(instance(1))
        .document_name("AWS-NoSuchDocument")
        .parameters("commands", vec!["true".into()])
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error().unwrap().is_invalid_document(),
        "{err:?}"
    );
}

#[tokio::test]
async fn garbage_on_the_socket_does_not_stop_the_emulator() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let setup = start(config(1)).await;

    let mut garbage = tokio::net::TcpStream::connect(setup.emulator.addr())
        .await
        .unwrap();
    garbage
        .write_all(b"\x00\x01\x02 not http at all\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), garbage.read_to_end(&mut sink)).await;

    // A client that connects and says nothing stays open without blocking others.
    let _silent = tokio::net::TcpStream::connect(setup.emulator.addr())
        .await
        .unwrap();
    let answer = raw(&setup.emulator, "GET", "/", &[], b"").await;
    assert_eq!(answer.status, 400);
    still_serving(&setup).await;
}
