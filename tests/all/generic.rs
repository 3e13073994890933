//! The generic layer over both built-in transports: the conformance suite,
//! files on hostile paths (native transfer and the fallback through
//! commands), `exec`, `shell` and command wrapping, against the SSM
//! emulator and the serial VM.

use std::io::Write as _;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use railbox::Session;
use railbox::connect;
use railbox::files::{self, FileKind};
use railbox::limits::Limits;
use railbox_tests::vm::SerialVm;
use ssm_emulator::EmulatorHandle;

use crate::support::{code, stderr};
use crate::{awsssm, serial};

async fn emulator_session(emu: &EmulatorHandle) -> Session {
    let dir = tempfile::tempdir().unwrap();
    let runtime = railbox_tests::runtime_in(dir.path(), Limits::default());
    let request = awsssm::library_request(emu, 1);
    connect::connect(&runtime, &request, None)
        .await
        .expect("open")
        .1
}

fn serial_url(vm: &SerialVm) -> String {
    serial::root_url(vm.tcp(None))
}

/// `railbox ARGS` against a serial console, with `stdin` fed in.
fn railbox_serial(args: &[&str], stdin: &[u8]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut child = railbox_tests::railbox(home.path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("railbox runs");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().expect("railbox ends")
}

fn passed_all(out: &Output) {
    assert_eq!(
        code(out),
        0,
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["failed"], 0, "{report:#}");
    assert_eq!(report["passed"], 9, "{report:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn awsssm_passes_the_conformance_suite() {
    let emu = awsssm::emulator(awsssm::config()).await;
    let home = tempfile::tempdir().unwrap();
    let out = awsssm::railbox(
        home.path(),
        &emu,
        &["conformance", "awsssm://node-1/", "--json"],
    )
    .await;
    passed_all(&out);
}

#[tokio::test(flavor = "multi_thread")]
async fn serial_passes_the_conformance_suite() {
    let vm = SerialVm::boot();
    let url = serial_url(&vm);
    let out =
        tokio::task::spawn_blocking(move || railbox_serial(&["conformance", &url, "--json"], b""))
            .await
            .unwrap();
    passed_all(&out);
}

/// Names that break careless quoting.
const HOSTILE: &[&str] = &[
    "'; rm -rf ~ #",
    "$(reboot)",
    "new\nline",
    "-rf",
    "spa ce ünï",
];

/// Every file operation on hostile names under a scratch directory, both
/// through the transport's own transfer and through commands.
async fn file_operations(session: &mut Session, big: usize) {
    let made = session
        .run("mktemp -d", Duration::from_secs(60))
        .await
        .unwrap();
    let root = String::from_utf8(made.stdout).unwrap().trim().to_string();
    let big_data: Vec<u8> = (0..big as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
        .collect();
    for name in HOSTILE {
        let dir = format!("{root}/{name}/sub");
        files::mkdir(session, &dir)
            .await
            .unwrap_or_else(|e| panic!("mkdir {dir:?}: {e}"));
        assert_eq!(
            files::stat(session, &dir).await.unwrap().map(|s| s.kind),
            Some(FileKind::Directory)
        );
        files::mkdir(session, &dir)
            .await
            .expect("mkdir twice is fine");
        let onto_dir = files::write(session, &dir, b"x", None)
            .await
            .expect_err("a directory");
        assert!(onto_dir.to_string().contains("directory"), "{onto_dir}");
        let onto_dir = files::write_by_commands(session, &dir, b"x", None)
            .await
            .expect_err("a directory");
        assert!(
            onto_dir.to_string().contains("it is a directory"),
            "{onto_dir}"
        );

        for (label, data) in [("empty", Vec::new()), ("big", big_data.clone())] {
            let path = format!("{dir}/{name}.{label}");
            files::write(session, &path, &data, Some(0o600))
                .await
                .unwrap_or_else(|e| panic!("write {path:?}: {e}"));
            assert_eq!(
                files::sha256(session, &path).await.unwrap(),
                files::hex_sha256(&data)
            );
            assert!(
                files::read(session, &path).await.unwrap() == data,
                "{path:?} read back differs"
            );
            let stat = files::stat(session, &path)
                .await
                .unwrap()
                .expect("written file exists");
            assert_eq!((stat.size, stat.mode), (data.len() as u64, 0o600));
            files::remove(session, &path, false).await.unwrap();
            assert!(
                !files::exists(session, &path).await.unwrap(),
                "{path:?} was removed"
            );
        }

        // The fallback a transport without native transfer gets.
        let small: Vec<u8> = (0..60_000u32).map(|i| (i % 253) as u8).collect();
        let path = format!("{dir}/{name}.commands");
        files::write_by_commands(session, &path, &small, Some(0o640))
            .await
            .unwrap_or_else(|e| panic!("write by commands {path:?}: {e}"));
        assert!(files::read_by_commands(session, &path).await.unwrap() == small);
        assert_eq!(
            files::stat(session, &path).await.unwrap().unwrap().mode,
            0o640
        );

        let not_empty = files::remove(session, &format!("{root}/{name}"), false)
            .await
            .expect_err("rmdir of a full directory");
        assert!(
            not_empty.to_string().starts_with("cannot remove"),
            "{not_empty}"
        );
        files::remove(session, &format!("{root}/{name}"), true)
            .await
            .unwrap();
    }
    let missing = files::sha256(session, &format!("{root}/missing"))
        .await
        .expect_err("missing");
    assert!(
        missing.to_string().ends_with("nothing is there"),
        "{missing}"
    );
    let left = session
        .run(&format!("ls -A {root} | wc -l"), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&left.stdout).trim(),
        "0",
        "nothing is left behind"
    );
    files::remove(session, &root, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn file_operations_on_hostile_paths_through_awsssm() {
    let emu = awsssm::emulator(awsssm::config()).await;
    let mut session = emulator_session(&emu).await;
    file_operations(&mut session, 5 << 20).await;
    session.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn file_operations_on_hostile_paths_through_serial() {
    let vm = SerialVm::boot();
    let mut session = serial::open(&serial_url(&vm), &[]).await.expect("open");
    file_operations(&mut session, 3 << 20).await;
    session.close().await.unwrap();
}

fn write_script(dir: &Path) -> std::path::PathBuf {
    let script = dir.join("bootstrap.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf 'arg:%s\\n' \"$@\"\necho \"running in $(dirname \"$0\")\" >&2\nexit 7\n",
    )
    .unwrap();
    script
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_runs_a_script_with_its_arguments_and_removes_it() {
    let emu = awsssm::emulator(awsssm::config()).await;
    let home = tempfile::tempdir().unwrap();
    let script = write_script(home.path());
    let script = script.to_str().unwrap();
    let out = awsssm::railbox(
        home.path(),
        &emu,
        &[
            "exec",
            "awsssm://node-1/",
            script,
            "two words",
            "it's",
            "--flag",
        ],
    )
    .await;
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "arg:two words\narg:it's\narg:--flag\n"
    );
    let err = stderr(&out);
    let dir = err
        .trim()
        .strip_prefix("running in ")
        .expect("the script's stderr");
    assert!(dir.starts_with("/tmp/railbox-exec."), "{err}");

    let check = awsssm::railbox(home.path(), &emu, &["stat", "awsssm://node-1/", dir]).await;
    assert_eq!(code(&check), 1, "the directory is gone: {}", stderr(&check));
}

#[tokio::test(flavor = "multi_thread")]
async fn shell_keeps_the_directory_and_exec_runs_as_another_user_over_serial() {
    let vm = SerialVm::boot();
    let url = serial_url(&vm);
    let home = tempfile::tempdir().unwrap();
    let script = write_script(home.path());
    let shell_url = url.clone();
    let out = tokio::task::spawn_blocking(move || {
        railbox_serial(
            &["shell", &shell_url],
            b"cd /tmp\npwd\nmkdir -p 'a dir' && cd 'a dir'\npwd\nfalse\nexit\necho never\n",
        )
    })
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/tmp\n/tmp/a dir\n");
    assert_eq!(code(&out), 1, "the last line's status: {}", stderr(&out));

    let script = script.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        railbox_serial(
            &[
                "exec", "--user", "guest", "--env", "X=1", &url, &script, "as guest",
            ],
            b"",
        )
    })
    .await
    .unwrap();
    assert_eq!(code(&out), 7, "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "arg:as guest\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn run_wraps_commands_with_a_directory_environment_and_user() {
    let vm = SerialVm::boot();
    let url = serial_url(&vm);
    let out = tokio::task::spawn_blocking(move || {
        railbox_serial(
            &[
                "run",
                "--cwd",
                "/home/guest",
                "--env",
                "GREETING=it's $(here)",
                "--user",
                "guest",
                &url,
                "--",
                "printf '%s|%s|%s\\n' \"$(id -un)\" \"$PWD\" \"$GREETING\"",
            ],
            b"",
        )
    })
    .await
    .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "guest|/home/guest|it's $(here)\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_exec_removes_the_script_directory() {
    let emu = awsssm::emulator(awsssm::config()).await;
    let home = tempfile::tempdir().unwrap();
    // The emulated instance runs on this machine, so the script can say
    // where it runs through a file the test reads.
    let seen = home.path().join("script-dir");
    let script = home.path().join("slow.sh");
    std::fs::write(&script, "#!/bin/sh\ndirname \"$0\" > \"$1\"\nsleep 30\n").unwrap();
    let mut cmd = awsssm::railbox_command(home.path(), &emu);
    cmd.args([
        "exec",
        "awsssm://node-1/",
        script.to_str().unwrap(),
        seen.to_str().unwrap(),
    ]);
    let child = tokio::process::Command::from(cmd)
        .stderr(Stdio::piped())
        .spawn()
        .expect("railbox runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !seen.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the script never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(code(&out), 130, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("interrupted; the script's directory was removed"),
        "{}",
        stderr(&out)
    );
    let dir = std::fs::read_to_string(&seen).unwrap();
    let dir = dir.trim();
    assert!(dir.starts_with("/tmp/railbox-exec."), "{dir}");
    assert!(!Path::new(dir).exists(), "{dir} is gone");
}
