//! The `railbox` command as users and tools see it: output, exit statuses
//! and one-line errors.

use railbox_tests::{PROBE, Recorder, StreamPeer};

use crate::support::{code, railbox, railbox_with, stderr, stdout};

const URL: &str = "probe://target/?region=us-east-1";

fn run(home: &std::path::Path, url: &str, command: &[&str]) -> std::process::Output {
    let mut args = vec!["run", "--transport", PROBE, url, "--"];
    args.extend_from_slice(command);
    railbox(home, &args)
}

fn assert_one_line_error(out: &std::process::Output, code_wanted: i32, contains: &str) {
    let err = stderr(out);
    assert_eq!(code(out), code_wanted, "stderr: {err}");
    assert!(err.starts_with("railbox: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(contains), "expected {contains:?} in {err}");
}

#[test]
fn run_prints_stdout_and_exits_zero() {
    let home = tempfile::tempdir().unwrap();
    let out = run(home.path(), URL, &["echo", "hello", "world"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello world\n");
}

#[test]
fn run_exits_with_the_remote_status() {
    let home = tempfile::tempdir().unwrap();
    assert_eq!(code(&run(home.path(), URL, &["exit", "123"])), 123);
    assert_eq!(code(&run(home.path(), URL, &["exit", "-1"])), 255);
}

#[test]
fn run_prints_stderr_on_stderr() {
    let home = tempfile::tempdir().unwrap();
    let out = run(home.path(), URL, &["stderr", "oops"]);
    assert_eq!(code(&out), 0);
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "oops\n");
}

#[test]
fn run_json_reports_output_and_status() {
    let home = tempfile::tempdir().unwrap();
    let out = railbox(
        home.path(),
        &[
            "run",
            "--json",
            "--transport",
            PROBE,
            URL,
            "--",
            "exit",
            "3",
        ],
    );
    assert_eq!(code(&out), 3);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["exit_status"], 3);
    assert_eq!(v["stdout"], "");

    let out = railbox(
        home.path(),
        &[
            "run",
            "--json",
            "--transport",
            PROBE,
            URL,
            "--",
            "bytes",
            "3",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["stdout_base64"], "////",
        "non-UTF-8 output arrives as base64"
    );
}

#[test]
fn run_passes_binary_output_through_unchanged() {
    let home = tempfile::tempdir().unwrap();
    let out = run(home.path(), URL, &["bytes", "5"]);
    assert_eq!(out.stdout, vec![0xff; 5]);
}

#[test]
fn an_unknown_scheme_lists_the_known_ones() {
    let home = tempfile::tempdir().unwrap();
    let out = run(home.path(), "nope://target/", &["true"]);
    assert_one_line_error(&out, 125, "unknown scheme \"nope\"; known schemes: ");
    assert!(stderr(&out).contains("probe"));
}

#[test]
fn a_malformed_url_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    assert_one_line_error(
        &run(home.path(), "probe//nothing", &["true"]),
        125,
        "malformed target URL",
    );
}

#[test]
fn an_unknown_option_is_named() {
    let home = tempfile::tempdir().unwrap();
    let out = run(
        home.path(),
        "probe://t/?region=us-east-1&colour=red",
        &["true"],
    );
    assert_one_line_error(
        &out,
        125,
        "unknown option \"colour\" for probe; known options:",
    );
}

#[test]
fn an_ill_typed_option_names_its_type() {
    let home = tempfile::tempdir().unwrap();
    let out = run(
        home.path(),
        "probe://t/?region=us-east-1&count=many",
        &["true"],
    );
    assert_one_line_error(&out, 125, "option \"count\" takes an integer, got \"many\"");
}

#[test]
fn options_on_the_command_line_are_coerced_too() {
    let home = tempfile::tempdir().unwrap();
    let args = [
        "run",
        "--transport",
        PROBE,
        "-o",
        "ratio=0.25",
        "-o",
        "verbose=on",
        URL,
        "--",
        "target",
    ];
    let out = railbox(home.path(), &args);
    let text = stdout(&out);
    assert!(
        text.contains("(\"ratio\", OptionValue::Float(0.25))"),
        "{text}"
    );
    assert!(
        text.contains("(\"verbose\", OptionValue::Boolean(true))"),
        "{text}"
    );
    assert!(
        text.contains("(\"count\", OptionValue::Integer(1))"),
        "defaults are filled in: {text}"
    );
}

#[test]
fn a_transport_error_exits_255_with_its_message() {
    let home = tempfile::tempdir().unwrap();
    let out = run(
        home.path(),
        "probe://web-1/?region=us-east-1&fail_open=true",
        &["true"],
    );
    assert_one_line_error(&out, 255, "not found: no machine called web-1");
}

#[test]
fn a_transport_timeout_exits_124() {
    let home = tempfile::tempdir().unwrap();
    let out = run(home.path(), URL, &["fail-timeout", "took too long"]);
    assert_one_line_error(&out, 124, "timed out: took too long");
}

#[test]
fn a_crashing_transport_is_reported_as_failed() {
    let home = tempfile::tempdir().unwrap();
    let out = run(home.path(), URL, &["panic"]);
    assert_one_line_error(&out, 255, "transport probe failed: panicked");
}

#[test]
fn a_file_that_is_not_wasm_is_refused() {
    let home = tempfile::tempdir().unwrap();
    let bogus = home.path().join("bogus.wasm");
    std::fs::write(&bogus, "not wasm at all").unwrap();
    let out = railbox(
        home.path(),
        &[
            "run",
            "--transport",
            bogus.to_str().unwrap(),
            URL,
            "--",
            "true",
        ],
    );
    assert_one_line_error(&out, 125, "is not a WebAssembly file");
}

#[test]
fn a_core_module_is_refused_as_not_a_component() {
    let home = tempfile::tempdir().unwrap();
    let core = home.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = railbox(home.path(), &["inspect", core.to_str().unwrap()]);
    assert_one_line_error(&out, 125, "is a core WebAssembly module, not a component");
}

#[test]
fn an_unsupported_contract_version_names_the_supported_ones() {
    let home = tempfile::tempdir().unwrap();
    let out = railbox(home.path(), &["inspect", railbox_tests::FUTURE]);
    let err = stderr(&out);
    assert_eq!(code(&out), 125);
    assert!(
        err.contains(
            "is built for railbox:transport@9.0.0; this railbox supports railbox:transport@0.1.0"
        ),
        "{err}"
    );
}

#[test]
fn inspect_groups_imports_into_capabilities() {
    let home = tempfile::tempdir().unwrap();
    let out = railbox(home.path(), &["inspect", "--json", PROBE]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["contract"], "railbox:transport@0.1.0");
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    let capability = |prefix: &str| {
        v["imports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["import"].as_str().unwrap().starts_with(prefix))
            .map(|i| i["capability"].as_str().unwrap().to_string())
    };
    assert_eq!(
        capability("wasi:http/outgoing-handler").as_deref(),
        Some("outgoing HTTP")
    );
    assert_eq!(
        capability("railbox:transport/aws").as_deref(),
        Some("AWS settings and signing")
    );
    assert_eq!(
        capability("railbox:transport/byte-stream").as_deref(),
        Some("byte stream")
    );
    assert_eq!(
        capability("wasi:filesystem/preopens").as_deref(),
        Some("WASI baseline (nothing granted)")
    );
    assert_eq!(v["description"]["name"], "probe");
    assert_eq!(
        v["default_policy"]["aws"][0]["actions"][0],
        "AmazonSSM.GetCommandInvocation"
    );
}

#[test]
fn inspect_shows_the_effective_policy_for_a_target() {
    let home = tempfile::tempdir().unwrap();
    let policy = home.path().join("policy.toml");
    std::fs::write(&policy, "[http]\nallow = [\"https://proxy.example.com:8443\"]\nmax_timeout = 5\n[aws]\ndeny_actions = [\"AmazonSSM.GetCommandInvocation\"]\n").unwrap();
    let out = railbox(
        home.path(),
        &[
            "inspect",
            "--json",
            PROBE,
            "--policy",
            policy.to_str().unwrap(),
            "--target",
            "probe://t/?region=eu-west-1&endpoint=http://127.0.0.1:9",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v["effective_policy"];
    let hosts: Vec<_> = p["http"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["host"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["127.0.0.1", "proxy.example.com"]);
    assert_eq!(p["http_max_timeout"], 5.0);
    assert_eq!(
        p["aws"][0]["endpoint"]["host"],
        "ssm.eu-west-1.amazonaws.com"
    );
    assert_eq!(p["aws"][0]["actions"].as_array().unwrap().len(), 0);
}

#[test]
fn a_bad_policy_file_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let policy = home.path().join("policy.toml");
    std::fs::write(&policy, "[http]\nallowed = []\n").unwrap();
    let out = railbox(
        home.path(),
        &[
            "run",
            "--policy",
            policy.to_str().unwrap(),
            "--transport",
            PROBE,
            URL,
            "--",
            "true",
        ],
    );
    assert_one_line_error(&out, 125, "unknown field `allowed`");
}

#[test]
fn transports_lists_schemes_options_and_digest() {
    let home = tempfile::tempdir().unwrap();
    let out = railbox(home.path(), &["transports", "--json", "--transport", PROBE]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let probe = v
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "probe")
        .expect("probe listed");
    assert_eq!(probe["schemes"], serde_json::json!(["probe", "probe+tcp"]));
    assert_eq!(probe["sha256"].as_str().unwrap().len(), 64);
    assert!(
        probe["options"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "password" && o["secret"] == true)
    );
}

#[test]
fn upload_and_download_use_the_transports_file_transfer() {
    let home = tempfile::tempdir().unwrap();
    let local = home.path().join("in.bin");
    std::fs::write(&local, [0u8, 1, 2, 255]).unwrap();
    let out = railbox(
        home.path(),
        &[
            "upload",
            "--transport",
            PROBE,
            URL,
            local.to_str().unwrap(),
            "/tmp/x",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let got = home.path().join("out.bin");
    let out = railbox(
        home.path(),
        &[
            "download",
            "--transport",
            PROBE,
            URL,
            "/etc/motd",
            got.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(std::fs::read(&got).unwrap(), b"/etc/motd");
}

#[test]
fn an_upload_without_native_transfer_falls_back_to_commands() {
    let home = tempfile::tempdir().unwrap();
    let local = home.path().join("in.bin");
    std::fs::write(&local, b"x").unwrap();
    let out = railbox(
        home.path(),
        &[
            "upload",
            "--transport",
            PROBE,
            URL,
            local.to_str().unwrap(),
            "/unsupported",
        ],
    );
    // The probe runs no shell, so the fallback through commands fails too.
    assert_one_line_error(
        &out,
        255,
        "cannot write /unsupported: the transport has no upload of its own, and running commands failed",
    );
}

#[tokio::test]
async fn aws_requests_are_signed_by_the_host_for_allowed_actions_only() {
    let home = tempfile::tempdir().unwrap();
    let server = Recorder::start().await;
    let endpoint: &'static str = Box::leak(server.url().into_boxed_str());
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDRAILBOXTEST"),
        ("AWS_SECRET_ACCESS_KEY", "railbox-test-secret-key"),
        ("AWS_ENDPOINT_URL_SSM", endpoint),
    ];
    let allowed = format!("{endpoint}/ AmazonSSM.GetCommandInvocation");
    let home_path = home.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        railbox_with(
            &home_path,
            &["run", "--transport", PROBE, URL, "--", "aws", &allowed],
            &env,
        )
    })
    .await
    .unwrap();
    assert_eq!(code(&out), 200, "{}", stderr(&out));
    let seen = server.received();
    assert_eq!(seen.len(), 1);
    let head = seen[0].head.to_ascii_lowercase();
    assert!(
        head.contains("authorization: aws4-hmac-sha256 credential=akidrailboxtest/"),
        "{head}"
    );
    assert!(head.contains("/us-east-1/ssm/aws4_request"), "{head}");
    assert!(!stdout(&out).contains("railbox-test-secret-key"));
    assert!(!stderr(&out).contains("railbox-test-secret-key"));

    let denied = format!("{endpoint}/ AmazonSSM.SendCommand");
    let home_path = home.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        railbox_with(
            &home_path,
            &["run", "--transport", PROBE, URL, "--", "aws", &denied],
            &env,
        )
    })
    .await
    .unwrap();
    assert_eq!(code(&out), 255, "{}", stderr(&out));
    assert!(stderr(&out).contains("denied"), "{}", stderr(&out));
    assert_eq!(
        server.received().len(),
        1,
        "a disallowed action never leaves the host"
    );
}

#[test]
fn aws_settings_carry_no_secret() {
    let home = tempfile::tempdir().unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", "AKIDRAILBOXTEST"),
        ("AWS_SECRET_ACCESS_KEY", "railbox-test-secret-key"),
        ("AWS_SESSION_TOKEN", "railbox-test-session-token"),
        ("RAILBOX_LOG", "trace"),
    ];
    let out = railbox_with(
        home.path(),
        &["run", "--transport", PROBE, URL, "--", "settings", "ssm"],
        &env,
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "us-east-1 https://ssm.us-east-1.amazonaws.com:443"
    );
    for secret in ["railbox-test-secret-key", "railbox-test-session-token"] {
        assert!(!stdout(&out).contains(secret));
        assert!(!stderr(&out).contains(secret), "a secret in the log");
    }
    let out = railbox_with(
        home.path(),
        &["run", "--transport", PROBE, URL, "--", "settings", "ec2"],
        &env,
    );
    assert_eq!(code(&out), 255);
    assert!(stderr(&out).contains("denied: the policy grants no access to AWS service \"ec2\""));
}

#[tokio::test]
async fn the_byte_stream_reaches_only_the_url_address_and_secrets_stay_in_the_host() {
    let home = tempfile::tempdir().unwrap();
    let peer = StreamPeer::start(b"login: ").await;
    let url = format!("probe+tcp://root:hunter2@{}/?region=us-east-1", peer.addr);
    let home_path = home.path().to_path_buf();
    let (read, secret) = tokio::task::spawn_blocking(move || {
        let read = railbox_with(
            &home_path,
            &["run", "--transport", PROBE, &url, "--", "stream-read"],
            &[],
        );
        let secret = railbox_with(
            &home_path,
            &[
                "run",
                "--transport",
                PROBE,
                &url,
                "--",
                "stream-secret",
                "password",
            ],
            &[("RAILBOX_LOG", "trace")],
        );
        (read, secret)
    })
    .await
    .unwrap();
    assert_eq!(stdout(&read), "login: ");
    assert_eq!(code(&secret), 0, "{}", stderr(&secret));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(peer.received(), b"hunter2");
    assert!(
        !stderr(&secret).contains("hunter2"),
        "the password must not be logged"
    );
}

#[test]
fn installed_transports_are_found_in_the_transport_path() {
    let home = tempfile::tempdir().unwrap();
    let installed = home.path().join("installed");
    std::fs::create_dir(&installed).unwrap();
    let out = railbox(home.path(), &["run", URL, "--", "echo", "hi"]);
    assert_one_line_error(&out, 125, "unknown scheme \"probe\"");
    assert!(
        stderr(&out).contains("awsssm"),
        "the built-in schemes are listed"
    );

    std::fs::copy(PROBE, installed.join("probe.wasm")).unwrap();
    let path = installed.to_str().unwrap();
    let env = [("RAILBOX_TRANSPORT_PATH", path)];
    let out = railbox_with(home.path(), &["run", URL, "--", "echo", "hi"], &env);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "hi\n");
    let listed = railbox_with(home.path(), &["transports"], &env);
    assert!(stdout(&listed).contains("probe"), "{}", stdout(&listed));
    assert!(stdout(&listed).contains("awsssm"), "{}", stdout(&listed));
    let serial = stdout(&listed);
    assert!(serial.contains("serial, serial+tcp"), "{serial}");
    assert!(
        serial.contains("[default: 115200]"),
        "defaults are shown: {serial}"
    );
    assert!(
        serial.contains("never sees it (secret)"),
        "secrets are marked: {serial}"
    );
}

#[test]
fn conformance_reports_what_a_transport_gets_wrong() {
    let home = tempfile::tempdir().unwrap();
    let out = railbox(
        home.path(),
        &["conformance", "--transport", PROBE, URL, "--json"],
    );
    // The probe runs no shell, so most checks must fail, each with a reason.
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let checks = report["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 9);
    let failed = checks.iter().filter(|c| c["passed"] == false).count();
    assert_eq!(report["failed"], failed);
    assert!(failed >= 5, "{report:#}");
    for check in checks.iter().filter(|c| c["passed"] == false) {
        assert!(!check["detail"].as_str().unwrap().is_empty(), "{check}");
    }

    let table = railbox(home.path(), &["conformance", "--transport", PROBE, URL]);
    assert_eq!(code(&table), 1);
    let text = stdout(&table);
    assert!(text.contains("FAIL  stderr"), "{text}");
    assert!(
        text.trim_end()
            .ends_with(&format!("{} passed, {failed} failed", 9 - failed)),
        "{text}"
    );
}
