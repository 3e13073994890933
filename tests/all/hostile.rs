//! Hostile guests: every attack must fail for the guest, cleanly, and the
//! host must keep serving other sessions in the same process.

use std::sync::Arc;
use std::time::Duration;

use railbox::bindings::types::Error as WitError;
use railbox::limits::Limits;
use railbox::{Runtime, Session, SessionError};
use railbox_tests::{Recorder, open_probe, runtime_in};

const URL: &str = "probe://target/?region=us-east-1";

fn tight_limits() -> Limits {
    Limits {
        memory_bytes: 64 << 20,
        cpu_per_call: Duration::from_millis(500),
        call_timeout: Duration::from_secs(5),
        command_grace: Duration::from_secs(1),
        ..Limits::default()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    runtime: Arc<Runtime>,
    bystander: Session,
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let runtime = runtime_in(dir.path(), tight_limits());
        let bystander = open_probe(&runtime, URL).await.expect("bystander opens");
        Fixture {
            _dir: dir,
            runtime,
            bystander,
        }
    }

    async fn attack(&self, command: &str) -> Result<Vec<u8>, SessionError> {
        let mut session = open_probe(&self.runtime, URL)
            .await
            .expect("attacker opens");
        session
            .run(command, Duration::from_secs(2))
            .await
            .map(|o| o.stdout)
    }

    /// The bystander opened before the attack still works, and so does a
    /// session opened after it.
    async fn host_still_serves(mut self) {
        let out = self
            .bystander
            .run("echo alive", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(out.stdout, b"alive\n");
        let mut fresh = open_probe(&self.runtime, URL).await.unwrap();
        let out = fresh
            .run("echo fresh", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(out.stdout, b"fresh\n");
    }
}

fn assert_failed(result: Result<Vec<u8>, SessionError>, reason: &str) {
    match result {
        Err(SessionError::Failed { reason: got, .. }) => {
            assert!(got.contains(reason), "expected {reason:?}, got {got:?}")
        }
        other => panic!("expected the transport to fail with {reason:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn reading_a_host_file_fails() {
    let f = Fixture::new().await;
    match f.attack("read-file /etc/passwd").await {
        Err(SessionError::Transport(WitError::Io(_))) => {}
        other => panic!("reading a host file should fail, got {other:?}"),
    }
    f.host_still_serves().await;
}

#[tokio::test]
async fn listing_a_host_directory_fails() {
    let f = Fixture::new().await;
    assert!(matches!(
        f.attack("list-dir /").await,
        Err(SessionError::Transport(WitError::Io(_)))
    ));
    f.host_still_serves().await;
}

#[tokio::test]
async fn the_environment_arguments_and_stdin_are_empty() {
    let f = Fixture::new().await;
    assert_eq!(f.attack("env").await.unwrap(), b"[] []");
    assert_eq!(f.attack("stdin").await.unwrap(), b"Ok(0) \"\"");
    f.host_still_serves().await;
}

#[tokio::test]
async fn a_transport_that_imports_sockets_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path(), Limits::default());
    let wasm = std::fs::read(railbox_tests::SOCKETS).unwrap();
    let err = railbox::Transport::load(
        &runtime,
        &wasm,
        railbox::transport::Source::Builtin,
        "sockets",
    )
    .await
    .err()
    .expect("a sockets transport must not load");
    let text = err.to_string();
    assert!(text.contains("imports wasi:sockets/"), "{text}");
    assert!(text.contains("which railbox does not provide"), "{text}");
}

#[tokio::test]
async fn http_outside_the_allowlist_is_denied() {
    let f = Fixture::new().await;
    let server = Recorder::start().await;
    let result = f.attack(&format!("http {}/", server.url())).await;
    assert!(
        matches!(result, Err(SessionError::Transport(WitError::Denied(_)))),
        "{result:?}"
    );
    assert!(
        server.received().is_empty(),
        "the request must not leave the host"
    );
    f.host_still_serves().await;
}

#[tokio::test]
async fn http_to_an_allowed_endpoint_goes_through() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path(), tight_limits());
    let server = Recorder::start().await;
    let url = format!("{URL}&endpoint={}", server.url());
    let mut session = open_probe(&runtime, &url).await.unwrap();
    let out = session
        .run(
            &format!("http {}/hello", server.url()),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(out.exit_status, 200);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("GET /hello HTTP/1.1"));
    assert_eq!(server.received().len(), 1);
}

#[tokio::test]
async fn userinfo_case_and_trailing_dots_do_not_dodge_the_allowlist() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path(), tight_limits());
    let allowed = Recorder::start().await;
    let other = Recorder::start().await;
    let url = format!("{URL}&endpoint={}", allowed.url());
    let mut session = open_probe(&runtime, &url).await.unwrap();
    let dodges = [
        format!("http http://{}@{}/", allowed.addr, other.addr),
        format!("http http://user:pw@{}/", allowed.addr),
        format!("http http://127.0.0.1.nip.io:{}/", allowed.addr.port()),
        format!("http http://{}/", other.addr),
        format!("http https://{}/", allowed.addr),
    ];
    for dodge in &dodges {
        let result = session.run(dodge, Duration::from_secs(5)).await;
        assert!(
            matches!(result, Err(SessionError::Transport(WitError::Denied(_)))),
            "{dodge}: {result:?}"
        );
    }
    assert!(other.received().is_empty());
    assert!(allowed.received().is_empty());
    let upper = format!("http HTTP://{}/", allowed.addr);
    let out = session.run(&upper, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        out.exit_status, 200,
        "a differently cased scheme is the same endpoint"
    );
}

#[tokio::test]
async fn an_allowed_name_resolving_to_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path(), tight_limits());
    let server = Recorder::start().await;
    // `localhost` named by a policy file is the user's choice; the same name
    // reached through a transport's own template is not.
    let policy = railbox::policy::PolicyFile::parse(&format!(
        "[http]\nallow = [\"http://localhost:{}\"]\n",
        server.addr.port()
    ))
    .unwrap();
    let request = railbox::connect::Request {
        url: URL.to_string(),
        transports: vec![railbox_tests::PROBE.into()],
        policy: Some(policy),
        ..Default::default()
    };
    let mut prepared = railbox::connect::prepare(&runtime, &request).await.unwrap();
    for rule in &mut prepared.policy.http {
        rule.origin = railbox::policy::Origin::Transport;
    }
    let (_, mut session) = prepared.open(&runtime, None).await.unwrap();
    let result = session
        .run(
            &format!("http http://localhost:{}/", server.addr.port()),
            Duration::from_secs(5),
        )
        .await;
    assert!(
        matches!(result, Err(SessionError::Transport(WitError::Denied(_)))),
        "{result:?}"
    );
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn the_metadata_address_is_refused_unless_named() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path(), tight_limits());
    let request = railbox::connect::Request {
        url: URL.to_string(),
        transports: vec![railbox_tests::PROBE.into()],
        ..Default::default()
    };
    let mut prepared = railbox::connect::prepare(&runtime, &request).await.unwrap();
    prepared.policy.allow_http(
        railbox::policy::HttpRule::parse(
            "http://169.254.169.254",
            railbox::policy::Origin::Transport,
        )
        .unwrap(),
    );
    let (_, mut session) = prepared.open(&runtime, None).await.unwrap();
    let result = session
        .run(
            "http http://169.254.169.254/latest/meta-data/",
            Duration::from_secs(5),
        )
        .await;
    assert!(
        matches!(result, Err(SessionError::Transport(WitError::Denied(_)))),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_infinite_loop_hits_the_cpu_limit() {
    let f = Fixture::new().await;
    assert_failed(f.attack("spin").await, "CPU limit");
    f.host_still_serves().await;
}

#[tokio::test]
async fn sleeping_forever_in_a_host_call_hits_the_wall_clock() {
    let f = Fixture::new().await;
    match f.attack("sleep-host").await {
        Err(SessionError::Unresponsive { limit, .. }) => assert_eq!(limit, Duration::from_secs(3)),
        other => panic!("expected the wall clock to stop the call, got {other:?}"),
    }
    f.host_still_serves().await;
}

#[tokio::test]
async fn growing_memory_without_bound_hits_the_memory_limit() {
    let f = Fixture::new().await;
    assert_failed(f.attack("grow").await, "memory limit");
    f.host_still_serves().await;
}

#[tokio::test]
async fn deep_recursion_overflows_the_guest_stack_only() {
    let f = Fixture::new().await;
    // A Rust guest keeps large frames on a shadow stack in its linear memory,
    // below its data; running off that stack is an out-of-bounds access,
    // while small frames exhaust the engine's wasm stack first.
    match f.attack("recurse").await {
        Err(SessionError::Failed { reason, .. }) => assert!(
            reason == "overflowed its stack" || reason == "accessed memory out of bounds",
            "{reason}"
        ),
        other => panic!("expected the recursion to fail the transport, got {other:?}"),
    }
    f.host_still_serves().await;
}

#[tokio::test]
async fn allocating_host_resources_without_bound_is_stopped() {
    let f = Fixture::new().await;
    assert_failed(f.attack("resources").await, "");
    f.host_still_serves().await;
}

#[tokio::test]
async fn a_huge_table_is_refused_before_it_is_allocated() {
    let f = Fixture::new().await;
    let wasm = std::fs::read(railbox_tests::HUGETABLE).unwrap();
    let source = railbox::transport::Source::File(railbox_tests::HUGETABLE.into());
    let err = railbox::Transport::load(&f.runtime, &wasm, source, "hugetable")
        .await
        .err()
        .expect("a transport with a 50-million-element table must not load");
    let text = err.to_string();
    assert!(text.contains("exceeded its table limit"), "{text}");
    f.host_still_serves().await;
}

#[tokio::test]
async fn a_gigabyte_of_output_hits_the_memory_limit() {
    let f = Fixture::new().await;
    assert_failed(f.attack("big-output 1024").await, "memory limit");
    f.host_still_serves().await;
}

#[tokio::test]
async fn a_panicking_guest_fails_cleanly() {
    let f = Fixture::new().await;
    assert_failed(f.attack("panic").await, "panicked");
    f.host_still_serves().await;
}

#[tokio::test]
async fn a_trapping_guest_fails_cleanly() {
    let f = Fixture::new().await;
    assert_failed(f.attack("trap").await, "panicked or aborted");
    f.host_still_serves().await;
}

#[tokio::test]
async fn a_broken_session_refuses_further_calls() {
    let f = Fixture::new().await;
    let mut session = open_probe(&f.runtime, URL).await.unwrap();
    assert!(session.run("panic", Duration::from_secs(2)).await.is_err());
    let again = session.run("echo hi", Duration::from_secs(2)).await;
    assert!(matches!(again, Err(SessionError::Broken(_))), "{again:?}");
    f.host_still_serves().await;
}

#[tokio::test]
async fn a_closed_session_refuses_further_calls() {
    let f = Fixture::new().await;
    let mut session = open_probe(&f.runtime, URL).await.unwrap();
    session.close().await.unwrap();
    let again = session.run("echo hi", Duration::from_secs(2)).await;
    assert!(matches!(again, Err(SessionError::Closed)), "{again:?}");
    assert!(matches!(session.close().await, Err(SessionError::Closed)));
    f.host_still_serves().await;
}

#[tokio::test]
async fn a_byte_stream_is_denied_when_the_url_names_none() {
    let f = Fixture::new().await;
    let result = f.attack("stream-write hello").await;
    assert!(
        matches!(result, Err(SessionError::Transport(WitError::Denied(_)))),
        "{result:?}"
    );
    f.host_still_serves().await;
}

#[tokio::test]
async fn pooled_sessions_are_isolated_too() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(railbox::RuntimeConfig {
        allocation: railbox::Allocation::Pooling { sessions: 8 },
        cache_dir: Some(dir.path().join("cache")),
        limits: tight_limits(),
    })
    .unwrap();
    let mut bystander = open_probe(&runtime, URL).await.unwrap();
    for attack in ["panic", "grow", "spin"] {
        let mut attacker = open_probe(&runtime, URL).await.unwrap();
        let result = attacker.run(attack, Duration::from_secs(2)).await;
        assert!(
            matches!(result, Err(SessionError::Failed { .. })),
            "{attack}: {result:?}"
        );
    }
    // Slots freed by the attackers are reused cleanly.
    for n in 0..16 {
        let mut session = open_probe(&runtime, URL).await.unwrap();
        let out = session
            .run(&format!("echo {n}"), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(out.stdout, format!("{n}\n").into_bytes());
    }
    let out = bystander
        .run("echo alive", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(out.stdout, b"alive\n");
}

/// A console that echoes is the easy way to read a secret back; the host
/// scrubs every copy of it from the stream.
#[tokio::test(flavor = "multi_thread")]
async fn an_echoed_secret_comes_back_masked() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime_in(dir.path(), Limits::default());
    let peer = railbox_tests::StreamPeer::start_echoing(b"Password: ").await;
    let url = format!("probe+tcp://root:hunter2@{}/?region=us-east-1", peer.addr);
    let mut session = open_probe(&runtime, &url).await.expect("open");
    let greeting = session
        .run("stream-read", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(greeting.stdout, b"Password: ");
    session
        .run("stream-secret password", Duration::from_secs(10))
        .await
        .unwrap();
    session
        .run("stream-write !", Duration::from_secs(10))
        .await
        .unwrap();
    // A read can come back empty while the start of the secret is held.
    let mut echoed = Vec::new();
    for _ in 0..10 {
        let out = session
            .run("stream-read", Duration::from_secs(10))
            .await
            .unwrap();
        echoed.extend_from_slice(&out.stdout);
        if echoed.len() >= 8 {
            break;
        }
    }
    assert_eq!(
        echoed, b"*******!",
        "the secret is masked, what follows is not"
    );
    assert_eq!(
        peer.received(),
        b"hunter2!",
        "the console got the real secret"
    );
}
