//! The built-in awsssm transport end to end, against the SSM emulator:
//! through the `railbox` binary as an operator runs it, and through the
//! library as a tool embeds it.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use railbox::connect::{self, Request};
use railbox::limits::Limits;
use railbox::{Runtime, Session, SessionError};
use ssm_emulator::{
    Config, DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator, EmulatorHandle, Faults,
    Instance, LatencyRange, PingStatus, Throttle,
};

use crate::support::{code, stderr};

/// Three online instances and one offline, with quick pickup.
pub(crate) fn config() -> Config {
    let mut instances = Instance::numbered_range(3);
    instances.push(Instance::numbered(4).with_ping_status(PingStatus::ConnectionLost));
    Config {
        instances,
        faults: Faults {
            agent_latency_ms: LatencyRange::fixed(5),
            ..Faults::default()
        },
        ..Config::default()
    }
}

pub(crate) async fn emulator(config: Config) -> EmulatorHandle {
    Emulator::start(config).await.expect("the emulator starts")
}

/// `railbox ARGS` with the emulator as its SSM endpoint and `secret` as the
/// secret key.
async fn railbox_with_secret(
    home: &Path,
    emulator: &EmulatorHandle,
    secret: &str,
    args: &[&str],
) -> Output {
    let mut cmd = railbox_command(home, emulator);
    cmd.args(args).env("AWS_SECRET_ACCESS_KEY", secret);
    tokio::process::Command::from(cmd)
        .output()
        .await
        .expect("railbox runs")
}

/// A `railbox` command with the emulator as its SSM endpoint.
pub(crate) fn railbox_command(home: &Path, emulator: &EmulatorHandle) -> std::process::Command {
    let mut cmd = railbox_tests::railbox(home);
    cmd.env("AWS_ENDPOINT_URL_SSM", emulator.endpoint_url())
        .env("AWS_REGION", emulator.region())
        .env("AWS_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", DEFAULT_SECRET_ACCESS_KEY);
    cmd
}

pub(crate) async fn railbox(home: &Path, emulator: &EmulatorHandle, args: &[&str]) -> Output {
    railbox_with_secret(home, emulator, DEFAULT_SECRET_ACCESS_KEY, args).await
}

/// `railbox run URL -- COMMAND` against the emulator.
async fn run(emulator: &EmulatorHandle, url: &str, command: &str) -> Output {
    let home = tempfile::tempdir().unwrap();
    railbox(home.path(), emulator, &["run", url, "--", command]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn output_stderr_and_exit_status_come_back() {
    let emu = emulator(config()).await;
    let out = run(
        &emu,
        "awsssm://i-00000000000000001/",
        "echo out; echo err >&2; exit 3",
    )
    .await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn quotes_and_newlines_reach_the_shell_unchanged() {
    let emu = emulator(config()).await;
    let command = "printf '%s|' \"it's\" 'say \"hi\"' '$HOME' \\\\n\nprintf 'second line\\n'";
    let out = run(&emu, "awsssm://node-1/", command).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "it's|say \"hi\"|$HOME|\\n|second line\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_resolve_by_id_address_and_name() {
    let emu = emulator(config()).await;
    for url in [
        "awsssm://i-00000000000000002/",
        "awsssm://10.0.0.2/",
        "awsssm://node-2/",
    ] {
        let out = run(&emu, url, "pwd").await;
        assert_eq!(code(&out), 0, "{url}: {}", stderr(&out));
        let dir = emu.instance_dir("i-00000000000000002").unwrap();
        let pwd = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            Path::new(pwd.trim()),
            dir,
            "{url} reached the wrong instance"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_and_unknown_instances_are_clear_errors() {
    let emu = emulator(config()).await;
    let out = run(&emu, "awsssm://node-4/", "true").await;
    assert_eq!(code(&out), 255);
    let err = stderr(&out);
    assert!(
        err.starts_with("railbox: ") && err.trim_end().lines().count() == 1,
        "{err}"
    );
    assert!(err.contains("ConnectionLost"), "{err}");

    let out = run(&emu, "awsssm://i-0123456789abcdef0/", "true").await;
    assert_eq!(code(&out), 255);
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    let out = run(&emu, "awsssm://no-such-node/", "true").await;
    assert_eq!(code(&out), 255);
    assert!(stderr(&out).contains("no-such-node"), "{}", stderr(&out));
    assert_eq!(emu.spawned_processes(), 0, "nothing ran");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_past_its_timeout_is_cancelled_on_the_instance() {
    let emu = emulator(config()).await;
    let home = tempfile::tempdir().unwrap();
    let marker = "sleep 31.4159";
    let out = railbox(
        home.path(),
        &emu,
        &["run", "--timeout", "2", "awsssm://node-1/", "--", marker],
    )
    .await;
    assert_eq!(code(&out), 124, "{}", stderr(&out));
    assert!(stderr(&out).contains("timed out"), "{}", stderr(&out));
    assert!(emu.calls("CancelCommand") >= 1, "{:?}", emu.call_counts());
    let gone = wait_until(Duration::from_secs(10), || !process_running(marker)).await;
    assert!(gone, "the command still runs on the instance");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mebibyte_of_output_and_binary_output_arrive_byte_exact() {
    let emu = emulator(config()).await;
    let out = run(
        &emu,
        "awsssm://node-1/",
        "head -c 1048576 /dev/zero | tr '\\0' x; echo end",
    )
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(out.stdout.len(), (1 << 20) + 4);
    assert!(out.stdout.ends_with(b"xxend\n"));

    let out = run(
        &emu,
        "awsssm://node-1/",
        "printf '\\377\\376\\000\\001\\r\\n'; printf '\\351' >&2",
    )
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(out.stdout, [0xff, 0xfe, 0x00, 0x01, b'\r', b'\n']);
    assert_eq!(out.stderr, [0xe9]);
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_files_of_every_size_round_trip() {
    let emu = emulator(config()).await;
    let home = tempfile::tempdir().unwrap();
    let remote = tempfile::tempdir().unwrap();
    for size in [0usize, 1, 100 << 10, 1 << 20] {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
        let local = home.path().join(format!("up-{size}"));
        std::fs::write(&local, &data).unwrap();
        let target = remote.path().join(format!("file {size}.bin"));
        let target = target.to_str().unwrap();
        let up = railbox(
            home.path(),
            &emu,
            &[
                "upload",
                "awsssm://node-1/",
                local.to_str().unwrap(),
                target,
            ],
        )
        .await;
        assert_eq!(code(&up), 0, "upload {size}: {}", stderr(&up));
        assert_eq!(
            std::fs::read(target).unwrap(),
            data,
            "uploaded {size} bytes"
        );

        let back = home.path().join(format!("down-{size}"));
        let down = railbox(
            home.path(),
            &emu,
            &[
                "download",
                "awsssm://node-1/",
                target,
                back.to_str().unwrap(),
            ],
        )
        .await;
        assert_eq!(code(&down), 0, "download {size}: {}", stderr(&down));
        assert_eq!(
            std::fs::read(&back).unwrap(),
            data,
            "downloaded {size} bytes"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_remote_file_is_a_clear_error_and_writes_nothing() {
    let emu = emulator(config()).await;
    let home = tempfile::tempdir().unwrap();
    let local = home.path().join("never");
    let out = railbox(
        home.path(),
        &emu,
        &[
            "download",
            "awsssm://node-1/",
            "/no/such/file",
            local.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code(&out), 255, "{}", stderr(&out));
    assert!(stderr(&out).contains("/no/such/file"), "{}", stderr(&out));
    assert!(!local.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_storms_errors_and_resets_are_ridden_out_without_running_twice() {
    let emu = emulator(config()).await;
    let ledger = tempfile::tempdir().unwrap();
    let ledger = ledger.path().join("ran");
    let storms = [
        Faults {
            throttle: [(
                "*".to_string(),
                Throttle {
                    rate: 4.0,
                    burst: 2,
                },
            )]
            .into(),
            ..emu.faults()
        },
        Faults {
            error_rate: 0.3,
            ..emu.faults()
        },
        Faults {
            reset_rate: 0.3,
            ..emu.faults()
        },
    ];
    for (n, faults) in storms.into_iter().enumerate() {
        emu.set_faults(faults).unwrap();
        let command = format!("echo {n} >> '{}'; echo done {n}", ledger.display());
        let out = run(&emu, "awsssm://node-1/", &command).await;
        assert_eq!(code(&out), 0, "storm {n}: {}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("done {n}\n"));
    }
    let ran = std::fs::read_to_string(&ledger).unwrap();
    assert_eq!(ran, "0\n1\n2\n", "each command ran exactly once");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_invocation_does_not_exist_window_is_waited_out() {
    let mut config = config();
    config.faults.invocation_does_not_exist_ms = 3_000;
    let emu = emulator(config).await;
    let out = run(&emu, "awsssm://node-1/", "echo visible at last").await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(out.stdout, b"visible at last\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_key_fails_clearly_without_a_retry_storm() {
    let emu = emulator(config()).await;
    let home = tempfile::tempdir().unwrap();
    let out = railbox_with_secret(
        home.path(),
        &emu,
        "not-the-secret",
        &["run", "awsssm://node-1/", "--", "true"],
    )
    .await;
    assert_eq!(code(&out), 255);
    let err = stderr(&out);
    assert!(err.trim_end().lines().count() == 1, "{err}");
    assert!(err.contains("denied") && err.contains("signature"), "{err}");
    let calls: u64 = emu.call_counts().values().sum();
    assert!(
        calls <= 2,
        "a bad key must not be retried: {:?}",
        emu.call_counts()
    );
}

/// A library request for `node-N` of the emulator, with the credentials
/// the tool holds itself instead of the standard chain.
pub(crate) fn library_request(emu: &EmulatorHandle, node: u32) -> Request {
    let credentials = Credentials::new(
        DEFAULT_ACCESS_KEY_ID,
        DEFAULT_SECRET_ACCESS_KEY,
        None,
        None,
        "tests",
    );
    Request {
        url: format!(
            "awsssm://node-{node}/?region={}&endpoint={}",
            emu.region(),
            emu.endpoint_url()
        ),
        aws_credentials: Some(SharedCredentialsProvider::new(credentials)),
        ..Request::default()
    }
}

/// The library path: a tool that holds its own credentials and many
/// sessions in one process.
#[tokio::test(flavor = "multi_thread")]
async fn the_library_runs_sessions_side_by_side() {
    let emu = emulator(config()).await;
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(railbox::RuntimeConfig {
        cache_dir: Some(dir.path().join("cache")),
        limits: Limits::default(),
        ..railbox::RuntimeConfig::default()
    })
    .unwrap();
    let mut sessions: Vec<Session> = Vec::new();
    for node in 1..=3 {
        let request = library_request(&emu, node);
        let (_, session) = connect::connect(&runtime, &request, None)
            .await
            .expect("open");
        sessions.push(session);
    }
    let runs: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, mut session)| {
            tokio::spawn(async move {
                let out = session
                    .run(&format!("echo node {}", i + 1), Duration::from_secs(30))
                    .await;
                (session, out)
            })
        })
        .collect();
    for (i, run) in runs.into_iter().enumerate() {
        let (mut session, out) = run.await.unwrap();
        assert_eq!(
            out.unwrap().stdout,
            format!("node {}\n", i + 1).into_bytes()
        );
        session.close().await.unwrap();
        let closed = session.run("true", Duration::from_secs(5)).await;
        assert!(matches!(closed, Err(SessionError::Closed)), "{closed:?}");
    }
}

async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done()
}

/// Whether any process's command line contains `text`.
fn process_running(text: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(text)
            })
            .unwrap_or(false)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_platform_is_detected_in_one_round_trip() {
    let emu = emulator(config()).await;
    let home = tempfile::tempdir().unwrap();
    // One command, as a baseline: it and its session's clean-up at close.
    let one = run(&emu, "awsssm://node-1/", "true").await;
    assert_eq!(code(&one), 0, "{}", stderr(&one));
    let per_command = emu.calls("SendCommand");
    let out = railbox(home.path(), &emu, &["detect", "--json", "awsssm://node-1/"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let detected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The emulated instance is this machine: ask it the same question directly.
    let local = std::process::Command::new("uname")
        .arg("-s")
        .output()
        .unwrap();
    assert_eq!(
        detected["kernel"].as_str().unwrap().split(' ').next(),
        Some(String::from_utf8_lossy(&local.stdout).trim())
    );
    let families: Vec<&str> = detected["families"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(families.ends_with(&["linux", "unix"]), "{families:?}");
    if let Ok(os_release) = std::fs::read_to_string("/etc/os-release") {
        let id = os_release
            .lines()
            .find_map(|l| l.strip_prefix("ID="))
            .map(|v| v.trim_matches('"'))
            .unwrap_or_default();
        if id == "debian" {
            assert_eq!(detected["name"], "debian");
            assert_eq!(families[0], "debian");
        }
    }
    assert_eq!(
        emu.calls("SendCommand"),
        2 * per_command,
        "detection costs what one command does: {:?}",
        emu.call_counts()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stat_describes_hostile_paths_exactly() {
    use std::os::unix::fs::PermissionsExt as _;

    let emu = emulator(config()).await;
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "plain",
        "with space",
        "'; rm -rf ~ #",
        "$(reboot)",
        "new\nline",
        "-rf",
        "ünïcødé",
    ];
    for (n, name) in names.iter().enumerate() {
        let path = dir.path().join(name);
        std::fs::write(&path, vec![b'x'; n * 10]).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    std::os::unix::fs::symlink("plain", dir.path().join("link")).unwrap();
    std::fs::create_dir(dir.path().join("sub dir")).unwrap();

    let stat = async |path: &Path| {
        let out = railbox(
            home.path(),
            &emu,
            &["stat", "--json", "awsssm://node-1/", path.to_str().unwrap()],
        )
        .await;
        (code(&out), out)
    };
    for (n, name) in names.iter().enumerate() {
        let (status, out) = stat(&dir.path().join(name)).await;
        assert_eq!(status, 0, "{name:?}: {}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["kind"], "file", "{name:?}");
        assert_eq!(json["size"], n * 10, "{name:?}");
        assert_eq!(json["mode"], 0o640, "{name:?}");
    }
    let (_, out) = stat(&dir.path().join("link")).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (json["kind"].as_str(), json["link_target"].as_str()),
        (Some("symlink"), Some("plain"))
    );
    let (_, out) = stat(&dir.path().join("sub dir")).await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["kind"], "directory");

    let (status, out) = stat(&dir.path().join("missing")).await;
    assert_eq!(status, 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing at"), "{}", stderr(&out));
    // Nothing the names held ran: every file is still there, unchanged.
    for name in names {
        assert!(dir.path().join(name).exists(), "{name:?}");
    }
}
