//! The built-in serial transport end to end, against a real Linux console:
//! Debian's kernel and busybox booted in qemu (`railbox_tests::vm`), reached
//! over loopback TCP as a console server would serve it, and through a pty
//! as a local serial device.

use std::process::Output;
use std::time::Duration;

use railbox::connect::{self, Request};
use railbox::limits::Limits;
use railbox::{Session, SessionError};
use railbox_tests::vm::{BANNER, GUEST_PASSWORD, GUEST_USER, Line, ROOT_PASSWORD, SerialVm};

use crate::support::{code, stderr};

/// The console's URL as root, with the password in it.
pub(crate) fn root_url(addr: std::net::SocketAddr) -> String {
    format!("serial+tcp://root:{ROOT_PASSWORD}@{addr}/")
}

/// `railbox ARGS` in its own home.
async fn railbox(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    crate::support::railbox(home.path(), args)
}

/// A library session to `url`.
pub(crate) async fn open(
    url: &str,
    options: &[(&str, &str)],
) -> Result<Session, connect::ConnectError> {
    let dir = tempfile::tempdir().unwrap();
    let runtime = railbox_tests::runtime_in(dir.path(), Limits::default());
    let request = Request {
        url: url.to_string(),
        options: options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Request::default()
    };
    connect::connect(&runtime, &request, None)
        .await
        .map(|(_, session)| session)
}

async fn run(session: &mut Session, command: &str) -> railbox::bindings::types::CommandOutput {
    session
        .run(command, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_logs_in_and_returns_output_stderr_and_status() {
    let vm = SerialVm::boot();
    let url = root_url(vm.tcp(None));
    let out = railbox(&[
        "run",
        &url,
        "--",
        "echo out; echo err >&2; uname -s; exit 3",
    ])
    .await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(text(&out.stdout), "out\nLinux\n");
    assert_eq!(stderr(&out), "err\n");

    // The first session logged out; the next logs in again.
    let out = railbox(&["run", &url, "--", "id -un"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(text(&out.stdout), "root\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn output_arrives_byte_exact_whatever_it_holds() {
    let vm = SerialVm::boot();
    let mut s = open(&root_url(vm.tcp(None)), &[]).await.expect("open");

    let quoting =
        "printf '%s|' \"a b\" 'it'\"'\"'s' \"$(echo sub)\"; printf '\\n'\necho second line";
    assert_eq!(
        text(&run(&mut s, quoting).await.stdout),
        "a b|it's|sub|\nsecond line\n"
    );

    // Text shaped like the transport's own markers, with other nonces.
    let fake = "printf 'RBXE_0123456789abcdef_0\\nRBXB_x\\nRBXS_y\\n'";
    assert_eq!(
        text(&run(&mut s, fake).await.stdout),
        "RBXE_0123456789abcdef_0\nRBXB_x\nRBXS_y\n"
    );

    // No trailing newline, carriage returns, NUL and high bytes.
    let binary = run(&mut s, "printf 'a\\r\\nb\\000\\377\\rc'").await;
    assert_eq!(binary.stdout, b"a\r\nb\0\xff\rc");

    let unicode = run(&mut s, "echo 'héllo ✓ 世界'").await;
    assert_eq!(text(&unicode.stdout), "héllo ✓ 世界\n");

    // A mebibyte of output.
    let big = run(
        &mut s,
        "head -c 1048576 /dev/urandom | base64 -w 0 | head -c 1048576",
    )
    .await;
    assert_eq!(big.stdout.len(), 1 << 20);
    assert!(
        big.stdout
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
    );

    // A command longer than a tty line travels as a script.
    let long = format!("x='{}'; echo ${{#x}}", "y".repeat(20_000));
    assert_eq!(text(&run(&mut s, &long).await.stdout), "20000\n");

    // A command reading stdin gets end of file, not the transport's lines.
    assert_eq!(
        text(&run(&mut s, "cat; echo after").await.stdout),
        "after\n"
    );

    // A command the shell cannot parse fails alone.
    let broken = run(&mut s, "echo 'unterminated").await;
    assert_ne!(broken.exit_status, 0);
    assert!(
        text(&broken.stderr).contains("unterminated"),
        "{}",
        text(&broken.stderr)
    );
    assert_eq!(text(&run(&mut s, "echo fine").await.stdout), "fine\n");
    s.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_and_teardown_run_in_the_login_shell() {
    let vm = SerialVm::boot();
    let addr = vm.tcp(None);
    let options = [
        ("setup", "export GREETING='set up'; cd /tmp"),
        ("teardown", "echo torn down > /tmp/teardown"),
    ];
    let mut s = open(&root_url(addr), &options).await.expect("open");
    let out = run(&mut s, "echo \"$GREETING\"; pwd").await;
    assert_eq!(text(&out.stdout), "set up\n/tmp\n");
    s.close().await.expect("close");

    let mut s = open(&root_url(addr), &[]).await.expect("open");
    assert_eq!(
        text(&run(&mut s, "cat /tmp/teardown").await.stdout),
        "torn down\n"
    );
    s.close().await.expect("close");

    let failing = [("setup", "false")];
    let err = open(&root_url(addr), &failing)
        .await
        .err()
        .expect("setup fails");
    assert!(
        err.to_string()
            .contains("setup commands failed with status 1"),
        "{err}"
    );
    // The failed session logged out again; the next one logs in afresh.
    let mut s = open(&root_url(addr), &[]).await.expect("open");
    assert_eq!(text(&run(&mut s, "id -un").await.stdout), "root\n");
    s.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunk_damaged_on_the_line_is_sent_again() {
    let vm = SerialVm::boot();
    // Noise that no compressor shrinks, so the damage lands in the data.
    let data = railbox_tests::noise(256 * 1024, 0x2545_f491_4f6c_dd1d);

    // One letter flipped on the way to the console, deep in the upload.
    let up = vm.relay(Line {
        corrupt_up: Some(60_000),
        ..Line::default()
    });
    let mut s = open(&root_url(up.addr), &[]).await.expect("open");
    s.upload("/tmp/noisy", &data, None)
        .await
        .expect("upload survives noise");
    let sum = run(&mut s, "sha256sum /tmp/noisy").await;
    assert!(text(&sum.stdout).starts_with(&railbox::files::hex_sha256(&data)));
    assert_eq!(up.damaged(), 1, "the relay damaged the upload");
    s.close().await.expect("close");

    // And one on the way back, deep in the download.
    let down = vm.relay(Line {
        corrupt_down: Some(60_000),
        ..Line::default()
    });
    let mut s = open(&root_url(down.addr), &[]).await.expect("open");
    let back = s
        .download("/tmp/noisy")
        .await
        .expect("download survives noise");
    assert!(back == data, "the download came back intact");
    assert_eq!(down.damaged(), 1, "the relay damaged the download");
    s.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_past_its_timeout_is_interrupted_and_the_console_recovers() {
    let vm = SerialVm::boot();
    let mut s = open(&root_url(vm.tcp(None)), &[]).await.expect("open");
    let err = s
        .run("echo started; sleep 600", Duration::from_secs(2))
        .await
        .expect_err("the command must time out");
    assert!(err.is_timeout(), "{err}");
    assert!(err.to_string().contains("interrupted"), "{err}");

    let after = run(&mut s, "echo still here; ps | grep -c '[s]leep 600'").await;
    assert_eq!(text(&after.stdout), "still here\n0\n");
    assert_eq!(
        after.exit_status, 1,
        "the sleep is gone, so grep finds nothing"
    );
    s.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn kernel_messages_stay_out_of_the_output_and_the_level_is_restored() {
    let vm = SerialVm::boot();
    let addr = vm.tcp(None);
    let mut plain = open(&root_url(addr), &[("quiet_kernel", "false")])
        .await
        .expect("open");
    let level = text(
        &run(&mut plain, "cut -f1 /proc/sys/kernel/printk")
            .await
            .stdout,
    );
    plain.close().await.expect("close");

    let mut s = open(&root_url(addr), &[]).await.expect("open");
    let noisy = "echo before; for i in 1 2 3; do echo \"<2>railbox-test kernel noise $i\" > /dev/kmsg; \
                 done; sleep 0.3; echo after";
    let out = run(&mut s, noisy).await;
    assert_eq!(text(&out.stdout), "before\nafter\n");
    let logged = run(&mut s, "dmesg | grep -c 'railbox-test kernel noise'").await;
    assert_eq!(
        text(&logged.stdout),
        "3\n",
        "the messages reached the kernel log"
    );
    s.close().await.expect("close");

    let mut again = open(&root_url(addr), &[("quiet_kernel", "false")])
        .await
        .expect("open");
    let restored = text(
        &run(&mut again, "cut -f1 /proc/sys/kernel/printk")
            .await
            .stdout,
    );
    assert_eq!(
        restored, level,
        "the console log level is put back on close"
    );
    again.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_files_round_trip_with_hostile_names() {
    let vm = SerialVm::boot();
    let mut s = open(&root_url(vm.tcp(None)), &[]).await.expect("open");
    let pattern: Vec<u8> = (0..100 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let text_like = "line of compressible text\n".repeat(12_000).into_bytes();
    let cases: &[(&str, Vec<u8>)] = &[
        ("/tmp/empty", Vec::new()),
        ("/tmp/one", vec![0xff]),
        ("/tmp/pattern.bin", pattern),
        ("/tmp/text.txt", text_like),
        ("/tmp/'; rm -rf ~ #", b"quote".to_vec()),
        ("/tmp/$(reboot)", b"dollar".to_vec()),
        ("/tmp/new\nline", b"newline".to_vec()),
        ("/tmp/-rf", b"dash".to_vec()),
        ("/tmp/ünï cödé", b"unicode".to_vec()),
    ];
    for (path, data) in cases {
        s.upload(path, data, Some(0o640))
            .await
            .unwrap_or_else(|e| panic!("upload {path:?}: {e}"));
        let back = s
            .download(path)
            .await
            .unwrap_or_else(|e| panic!("download {path:?}: {e}"));
        assert!(back == *data, "{path:?} came back different");
    }
    let listing = run(&mut s, "ls /tmp | wc -l; stat -c %a /tmp/one; ls -d ~").await;
    assert_eq!(
        text(&listing.stdout),
        format!("{}\n640\n/root\n", cases.len() + 1),
        "one railbox directory besides the files, no temporary files left"
    );

    let missing = s.download("/tmp/missing").await.expect_err("missing file");
    assert!(
        matches!(
            missing,
            SessionError::Transport(railbox::bindings::types::Error::NotFound(_))
        ),
        "{missing}"
    );
    let nowhere = s
        .upload("/no/such/dir/f", b"x", None)
        .await
        .expect_err("no directory");
    assert!(nowhere.to_string().contains("does not exist"), "{nowhere}");
    s.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_and_a_missing_one_are_clear_errors() {
    let vm = SerialVm::boot();
    let addr = vm.tcp(None);
    let out = railbox(&[
        "run",
        &format!("serial+tcp://root:wrong@{addr}/"),
        "--",
        "true",
    ])
    .await;
    assert_eq!(code(&out), 255);
    let err = stderr(&out);
    assert!(err.contains("refused the password for root"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!err.contains("wrong"), "the password is not echoed: {err}");

    let out = railbox(&["run", &format!("serial+tcp://{addr}/"), "--", "true"]).await;
    assert_eq!(code(&out), 255);
    assert!(
        stderr(&out).contains("asks for root's password"),
        "{}",
        stderr(&out)
    );

    // RAILBOX_PASSWORD keeps the password off the command line.
    let home = tempfile::tempdir().unwrap();
    let out = railbox_tests::railbox(home.path())
        .args(["run", &format!("serial+tcp://{addr}/"), "--", "id -un"])
        .env("RAILBOX_PASSWORD", ROOT_PASSWORD)
        .output()
        .expect("railbox runs");
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(text(&out.stdout), "root\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_shell_is_taken_over_and_left_open() {
    let vm = SerialVm::boot();
    vm.login_by_hand();
    let addr = vm.tcp(None);
    // No password: the shell someone left open is used as it is.
    for _ in 0..2 {
        let out = railbox(&[
            "run",
            &format!("serial+tcp://{addr}/"),
            "--",
            "pwd; echo $PS1",
        ])
        .await;
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(
            text(&out.stdout),
            "/tmp\n\n",
            "cwd kept, prompt cleared in the command"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_with_an_awkward_password_logs_in_through_a_pty() {
    let vm = SerialVm::boot();
    let pty = vm.pty();
    let url = format!(
        "serial://{}?user={GUEST_USER}&baud=57600&parity=even&stop_bits=2",
        pty.path.display()
    );
    let mut s = open(&url, &[("password", GUEST_PASSWORD)])
        .await
        .expect("open");
    let out = run(&mut s, "id -un; cd; pwd").await;
    assert_eq!(text(&out.stdout), "guest\n/home/guest\n");

    // The host set the line as the URL asked. (A pty keeps no parity:
    // Linux forces it off on ptys, so only a real device would show it.)
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&pty.path)
        .expect("open the pty");
    let termios = rustix::termios::tcgetattr(&tty).expect("tcgetattr");
    assert_eq!(termios.output_speed(), 57_600);
    use rustix::termios::ControlModes;
    assert!(
        termios.control_modes.contains(ControlModes::CSTOPB),
        "two stop bits"
    );
    assert!(
        termios.control_modes.contains(ControlModes::CS8),
        "eight data bits"
    );
    assert!(
        !termios.control_modes.contains(ControlModes::CRTSCTS),
        "no hardware flow control"
    );
    drop(tty);
    s.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_banner_and_motd_do_not_reach_the_output() {
    let vm = SerialVm::boot();
    let out = railbox(&["run", &root_url(vm.tcp(None)), "--", "cat /etc/issue"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(text(&out.stdout), format!("{BANNER}\n\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_linux_without_os_release_is_detected_as_unknown_not_guessed() {
    let vm = SerialVm::boot();
    let out = railbox(&["detect", &root_url(vm.tcp(None)), "--json"]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let platform: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(platform["name"], "unknown", "{platform}");
    assert_eq!(
        platform["families"],
        serde_json::json!(["linux", "unix"]),
        "{platform}"
    );
    assert_eq!(platform["arch"], "x86_64", "{platform}");
}
