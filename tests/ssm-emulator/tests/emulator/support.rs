//! Helpers shared by the emulator tests: starting an emulator, building SDK
//! clients against it, polling invocations, and raw signed HTTP requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_ssm::Client;
use aws_sdk_ssm::config::retry::{RetryConfig, RetryPartition};
use aws_sdk_ssm::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ssm::operation::get_command_invocation::GetCommandInvocationOutput;
use aws_sdk_ssm::types::CommandInvocationStatus;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use ssm_emulator::{
    Config, DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator, EmulatorHandle, Faults,
    Instance, LatencyRange,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous bound for anything that should finish quickly on a loaded machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Settings for tests: `count` instances, fast pickup, real time.
pub fn config(count: u32) -> Config {
    Config {
        instances: Instance::numbered_range(count),
        faults: Faults {
            agent_latency_ms: LatencyRange::fixed(1),
            ..Faults::default()
        },
        ..Config::default()
    }
}

/// The id of generated instance `n`.
pub fn instance(n: u32) -> String {
    Instance::numbered(n).id
}

/// An emulator and an SDK client for it.
pub struct Setup {
    pub emulator: EmulatorHandle,
    pub client: Client,
}

/// Starts an emulator and a client with the default key and a few quick retries.
pub async fn start(config: Config) -> Setup {
    let emulator = Emulator::start(config).await.expect("emulator starts");
    let client = client(&emulator, default_credentials(), 3);
    Setup { emulator, client }
}

/// The emulator's default key as SDK credentials.
pub fn default_credentials() -> Credentials {
    Credentials::new(
        DEFAULT_ACCESS_KEY_ID,
        DEFAULT_SECRET_ACCESS_KEY,
        None,
        None,
        "tests",
    )
}

/// An SDK client for `emulator` with `credentials` and at most `attempts` attempts per call.
///
/// Every client gets its own retry partition: the SDK otherwise shares one retry
/// quota among all clients of the process, and one test's retries would starve
/// another's.
pub fn client(emulator: &EmulatorHandle, credentials: Credentials, attempts: u32) -> Client {
    static PARTITIONS: AtomicU64 = AtomicU64::new(0);
    let partition = PARTITIONS.fetch_add(1, Ordering::Relaxed);
    let retry = RetryConfig::standard()
        .with_max_attempts(attempts)
        .with_initial_backoff(Duration::from_millis(100));
    let config = aws_sdk_ssm::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(emulator.endpoint_url())
        .region(Region::new(emulator.region().to_owned()))
        .credentials_provider(credentials)
        .retry_config(retry)
        .retry_partition(RetryPartition::new(format!(
            "ssm-emulator-test-{partition}"
        )))
        .build();
    Client::from_conf(config)
}

/// Sends `commands` to the given instances and returns the command id.
pub async fn send(client: &Client, instances: &[String], commands: &[&str]) -> String {
    let mut request = client.send_command().document_name("AWS-RunShellScript");
    for id in instances {
        request = request.instance_ids(id);
    }
    let commands = commands.iter().map(|c| c.to_string()).collect();
    let output = request
        .parameters("commands", commands)
        .send()
        .await
        .expect("SendCommand works");
    output
        .command()
        .and_then(|c| c.command_id())
        .expect("a command id")
        .to_owned()
}

/// Polls GetCommandInvocation until the invocation reaches a final status.
pub async fn finished(
    client: &Client,
    command_id: &str,
    instance_id: &str,
) -> GetCommandInvocationOutput {
    poll(client, command_id, instance_id, |out| {
        !matches!(
            out.status(),
            Some(
                CommandInvocationStatus::Pending
                    | CommandInvocationStatus::InProgress
                    | CommandInvocationStatus::Delayed
                    | CommandInvocationStatus::Cancelling
            )
        )
    })
    .await
}

/// Polls GetCommandInvocation until `done` holds, tolerating InvocationDoesNotExist.
pub async fn poll(
    client: &Client,
    command_id: &str,
    instance_id: &str,
    done: impl Fn(&GetCommandInvocationOutput) -> bool,
) -> GetCommandInvocationOutput {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let result = client
            .get_command_invocation()
            .command_id(command_id)
            .instance_id(instance_id)
            .send()
            .await;
        match result {
            Ok(out) if done(&out) => return out,
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_invocation_does_not_exist()) => {}
            Err(e) => panic!("GetCommandInvocation failed: {e:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "invocation {command_id} on {instance_id} did not get there"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `check` holds, failing after [`PATIENCE`].
pub async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw HTTP answer.
pub struct Raw {
    pub status: u16,
    pub body: String,
}

impl Raw {
    /// The `__type` of a JSON error body.
    pub fn error_type(&self) -> String {
        let json: serde_json::Value = serde_json::from_str(&self.body).expect("JSON body");
        json["__type"].as_str().unwrap_or_default().to_owned()
    }
}

/// Sends one HTTP/1.1 request over a fresh connection and reads the answer.
pub async fn raw(
    emulator: &EmulatorHandle,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Raw {
    let mut stream = TcpStream::connect(emulator.addr()).await.expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k == "host") {
        request.push_str(&format!("host: {}\r\n", emulator.addr()));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write head");
    // The server may stop reading a body it refuses; what it answered still counts.
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "no answer in time");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Raw {
        status,
        body: body.to_owned(),
    }
}

/// Headers of an SSM request for `target` signed with `secret` at `time`.
pub fn signed_headers(
    emulator: &EmulatorHandle,
    target: &str,
    body: &[u8],
    secret: &str,
    time: SystemTime,
) -> Vec<(String, String)> {
    let scope = (emulator.region(), "ssm");
    signed_headers_scoped(emulator, target, body, secret, time, scope)
}

/// [`signed_headers`] with the signature scoped to (region, service).
pub fn signed_headers_scoped(
    emulator: &EmulatorHandle,
    target: &str,
    body: &[u8],
    secret: &str,
    time: SystemTime,
    (region, service): (&str, &str),
) -> Vec<(String, String)> {
    let identity: Identity =
        aws_credential_types::Credentials::new(DEFAULT_ACCESS_KEY_ID, secret, None, None, "tests")
            .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let mut headers = vec![
        ("host".to_owned(), emulator.addr().to_string()),
        (
            "content-type".to_owned(),
            "application/x-amz-json-1.1".to_owned(),
        ),
        ("x-amz-target".to_owned(), format!("AmazonSSM.{target}")),
    ];
    let request = SignableRequest::new(
        "POST",
        "/",
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body),
    )
    .expect("signable request");
    let (instructions, _) = sign(request, &params).expect("signing works").into_parts();
    for (name, value) in instructions.headers() {
        headers.push((name.to_owned(), value.to_owned()));
    }
    headers
}

/// A correctly signed raw SSM request.
pub async fn signed(emulator: &EmulatorHandle, target: &str, body: &[u8]) -> Raw {
    let headers = signed_headers(
        emulator,
        target,
        body,
        DEFAULT_SECRET_ACCESS_KEY,
        SystemTime::now(),
    );
    raw(emulator, "POST", "/", &headers, body).await
}

/// Checks that the emulator still answers an ordinary SDK call.
pub async fn still_serving(setup: &Setup) {
    let out = setup
        .client
        .describe_instance_information()
        .send()
        .await
        .expect("emulator still serves");
    assert!(!out.instance_information_list().is_empty());
}
