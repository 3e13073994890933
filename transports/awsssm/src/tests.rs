//! End-to-end tests of the protocol against the fake SSM service, with real
//! shell scripts and virtual time.

use std::time::Duration;

use crate::error::Error;
use crate::fake::{Fake, Fault};
use crate::http::Client;
use crate::options::Config;
use crate::remote::{Output, Remote};
use crate::target::{Instance, Wanted};

const LINUX: &str = "i-00000000000000001";

fn remote_with(config: Config) -> Remote<Fake> {
    let instance = Instance {
        id: LINUX.into(),
        platform: "Linux".into(),
    };
    Remote::new(Client::new(Fake::new()), instance, config)
}

fn remote() -> Remote<Fake> {
    remote_with(Config::default())
}

/// Close the session and list what is left in its temporary directory.
fn settled(r: &Remote<Fake>) -> Vec<String> {
    r.close();
    r.host().leftovers()
}

fn run(r: &Remote<Fake>, command: &str) -> Output {
    r.run(command, Duration::from_secs(60)).unwrap()
}

/// A deterministic, incompressible byte pattern.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn a_small_command_returns_output_and_status_in_two_calls() {
    let r = remote();
    let out = run(&r, "echo hello; echo oops >&2; exit 3");
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(out.stderr, b"oops\n");
    assert_eq!(out.exit, 3);
    assert_eq!(r.host().calls(), ["SendCommand", "GetCommandInvocation"]);
    assert_eq!(r.host().leftovers().len(), 1, "only the empty lock remains");
    assert!(settled(&r).is_empty());
}

#[test]
fn the_next_command_removes_the_previous_lock() {
    let r = remote();
    run(&r, "true");
    let first = r.host().leftovers();
    run(&r, "true");
    let second = r.host().leftovers();
    assert_eq!(second.len(), 1);
    assert_ne!(first, second);
    assert_eq!(r.host().count("SendCommand"), 2, "no extra command for it");
}

#[test]
fn quotes_newlines_and_dollars_reach_the_shell_unchanged() {
    let r = remote();
    let command = "printf '%s\\n' \"it's\" '$HOME' \"a\\\\b\"\ncat <<'EOF'\nline `two`\nEOF";
    let out = run(&r, command);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "it's\n$HOME\na\\b\nline `two`\n"
    );
    assert_eq!(out.exit, 0);
}

#[test]
fn binary_and_non_utf8_output_arrive_unchanged() {
    let r = remote();
    let out = run(&r, r"printf '\377\376\000abc\200'; printf '\351t\351' >&2");
    assert_eq!(out.stdout, b"\xff\xfe\x00abc\x80");
    assert_eq!(out.stderr, b"\xe9t\xe9");
}

#[test]
fn the_command_does_not_see_the_wrappers_variables() {
    let r = remote();
    let out = run(
        &r,
        "echo \"[$d][$r]\"; type rb_b64 >/dev/null 2>&1 && echo leaked; exit 0",
    );
    assert_eq!(out.stdout, b"[][]\n");
}

#[test]
fn a_mebibyte_of_output_is_read_back_byte_exact() {
    let r = remote();
    let expected = pattern(1 << 20);
    let file = r.host().tmp.join("expected");
    std::fs::write(&file, &expected).unwrap();
    let command = format!(
        "cat '{}'; head -c 20000 '{}' >&2; exit 7",
        file.display(),
        file.display()
    );
    let out = run(&r, &command);
    assert_eq!(out.exit, 7);
    assert!(out.stdout == expected, "stdout differs");
    assert!(out.stderr == expected[..20_000], "stderr differs");
    let calls = r.host().calls();
    let sends = calls.iter().filter(|c| *c == "SendCommand").count();
    // The command, 47 reads (1 MiB + 20 kB at 23,100 bytes each) and the clean-up.
    assert_eq!(sends, 1 + 47 + 1, "{calls:?}");
    assert!(calls.len() <= 2 * sends + 4, "{} calls", calls.len());
    assert!(settled(&r).is_empty());
}

#[test]
fn output_just_over_the_inline_limit_is_read_back() {
    let r = remote();
    for size in [17_400, 17_401, 23_999, 24_001] {
        let out = run(&r, &format!("head -c {size} /dev/zero | tr '\\0' x"));
        assert_eq!(out.stdout.len(), size);
        assert!(out.stdout.iter().all(|b| *b == b'x'));
    }
    assert!(settled(&r).is_empty());
}

#[test]
fn the_working_directory_applies_to_commands() {
    let r = remote_with(Config {
        working_directory: Some("/".into()),
        ..Config::default()
    });
    assert_eq!(run(&r, "pwd").stdout, b"/\n");
}

#[test]
fn a_command_that_outlives_its_timeout_is_cancelled() {
    let r = remote();
    r.host().hang();
    let err = r.run("sleep 600", Duration::from_secs(5)).unwrap_err();
    assert!(
        matches!(&err, Error::Timeout(m) if m.contains(LINUX)),
        "{err:?}"
    );
    assert_eq!(r.host().count("CancelCommand"), 1);
    assert!(r.host().commands()[0].cancelled);
    assert!(
        r.host().commands()[1].script.contains("rm -rf"),
        "its directory is removed"
    );
    let now = crate::http::Host::now(r.host());
    assert!(now < Duration::from_secs(7), "gave up at {now:?}");
}

#[test]
fn the_execution_timeout_is_capped_by_the_callers_timeout() {
    let r = remote();
    run(&r, "true");
    r.host().hang();
    let _ = r.run("sleep 600", Duration::from_millis(4500));
    let _ = r.run("sleep 600", Duration::from_secs(3600));
    let sent: Vec<(String, u64)> = r
        .host()
        .commands()
        .into_iter()
        .filter(|c| !c.script.starts_with("rm -rf"))
        .map(|c| (c.execution_timeout, c.delivery_timeout))
        .collect();
    let want = [("60", 60), ("5", 60), ("60", 60)].map(|(e, d)| (e.to_string(), d));
    assert_eq!(sent, want);
}

#[test]
fn throttling_storms_are_ridden_out_without_sending_twice() {
    let r = remote();
    for _ in 0..4 {
        r.host().fault("SendCommand", Fault::Throttle);
        r.host().fault("GetCommandInvocation", Fault::Throttle);
    }
    let out = run(&r, "echo ok");
    assert_eq!(out.stdout, b"ok\n");
    assert_eq!(r.host().commands().len(), 1);
    assert_eq!(r.host().count("SendCommand"), 5);
}

#[test]
fn a_500_before_processing_is_resent_after_the_command_is_not_found() {
    let r = remote();
    r.host().fault("SendCommand", Fault::Status500);
    let out = run(&r, "echo once");
    assert_eq!(out.stdout, b"once\n");
    assert_eq!(r.host().commands().len(), 1);
    assert!(r.host().count("ListCommandInvocations") >= 1);
    assert_eq!(r.host().count("SendCommand"), 2);
}

#[test]
fn a_connection_reset_after_sending_finds_the_command_instead_of_resending() {
    let r = remote();
    r.host().fault("SendCommand", Fault::ResetAfter);
    let out = run(&r, "echo once");
    assert_eq!(out.stdout, b"once\n");
    assert_eq!(r.host().count("SendCommand"), 1);
    assert_eq!(r.host().commands().len(), 1);
    assert_eq!(r.host().count("ListCommandInvocations"), 1);
}

#[test]
fn a_500_after_processing_is_found_and_not_resent() {
    let r = remote();
    r.host().fault("SendCommand", Fault::Status500After);
    assert_eq!(run(&r, "echo once").stdout, b"once\n");
    assert_eq!(r.host().commands().len(), 1);
}

#[test]
fn a_refused_connection_is_retried_at_once() {
    let r = remote();
    r.host().fault("SendCommand", Fault::Refused);
    r.host().fault("GetCommandInvocation", Fault::Refused);
    r.host().fault("GetCommandInvocation", Fault::Status500);
    assert_eq!(run(&r, "echo ok").stdout, b"ok\n");
    assert_eq!(r.host().count("ListCommandInvocations"), 0);
    assert_eq!(r.host().commands().len(), 1);
}

#[test]
fn a_wrong_secret_key_is_denied_without_retrying() {
    let r = remote();
    r.host().fault("*", Fault::BadSignature);
    let err = r.run("echo hi", Duration::from_secs(10)).unwrap_err();
    assert!(
        matches!(&err, Error::Denied(m) if m.contains("InvalidSignatureException")),
        "{err:?}"
    );
    assert_eq!(r.host().calls(), ["SendCommand"]);
}

#[test]
fn a_long_invocation_does_not_exist_window_is_waited_out() {
    let r = remote();
    r.host().invisible_polls(12);
    assert_eq!(run(&r, "echo late").stdout, b"late\n");
}

#[test]
fn an_invocation_that_never_appears_fails_after_invocation_wait() {
    let r = remote_with(Config {
        invocation_wait: Duration::from_secs(3),
        ..Config::default()
    });
    r.host().invisible_polls(u32::MAX);
    let err = r.run("echo never", Duration::from_secs(60)).unwrap_err();
    assert!(
        matches!(&err, Error::Protocol(m) if m.contains("invocation_wait")),
        "{err:?}"
    );
    assert!(crate::http::Host::now(r.host()) < Duration::from_secs(6));
}

#[test]
fn undelivered_commands_are_errors_naming_the_instance() {
    let r = remote();
    r.host().next_status("TimedOut", "DeliveryTimedOut");
    let err = r.run("true", Duration::from_secs(60)).unwrap_err();
    assert!(matches!(&err, Error::Timeout(m) if m.contains(LINUX) && m.contains("delivery")));
    r.host().next_status("Failed", "Undeliverable");
    let err = r.run("true", Duration::from_secs(60)).unwrap_err();
    assert!(matches!(&err, Error::Io(m) if m.contains(LINUX) && m.contains("Undeliverable")));
    r.host().next_status("TimedOut", "ExecutionTimedOut");
    let err = r.run("true", Duration::from_secs(60)).unwrap_err();
    assert!(matches!(&err, Error::Timeout(m) if m.contains("execution timeout")));
}

#[test]
fn a_familiar_command_length_is_polled_where_it_ends() {
    let r = remote();
    r.host().run_time(Duration::from_millis(1000));
    run(&r, "true");
    r.host().reset_calls();
    let before = crate::http::Host::now(r.host());
    run(&r, "true");
    let took = crate::http::Host::now(r.host()) - before;
    assert!(r.host().calls().len() <= 3, "{:?}", r.host().calls());
    assert!(took < Duration::from_millis(1060), "took {took:?}");
}

#[test]
fn files_of_every_size_round_trip_byte_exact() {
    let r = remote();
    let dir = r.host().tmp.join("files");
    std::fs::create_dir(&dir).unwrap();
    for size in [0, 1, 100 * 1024, 1 << 20] {
        let data = pattern(size);
        let path = dir.join(format!("f{size}")).display().to_string();
        r.upload(&path, &data, Some(0o640)).unwrap();
        assert!(
            std::fs::read(&path).unwrap() == data,
            "upload of {size} bytes differs"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o640);
        assert!(
            r.download(&path).unwrap() == data,
            "download of {size} bytes differs"
        );
    }
    assert!(settled(&r).is_empty());
    let dir_entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(dir_entries.len(), 4, "no temporary files remain");
}

#[test]
fn uploads_report_progress_per_chunk() {
    let r = remote();
    let path = r.host().tmp.join("p").display().to_string();
    r.upload(&path, &pattern(100_000), None).unwrap();
    let reports = r.host().progress_reports();
    let op = format!("upload {path}");
    let done: Vec<u64> = reports
        .iter()
        .filter(|(o, _, _)| *o == op)
        .map(|(_, d, _)| *d)
        .collect();
    assert_eq!(done, [36_000, 72_000, 100_000]);
    assert!(reports.iter().all(|(_, _, total)| *total == 100_000));
}

#[test]
fn a_small_upload_costs_one_command() {
    let r = remote();
    let path = r.host().tmp.join("small").display().to_string();
    r.upload(&path, b"hello", None).unwrap();
    assert_eq!(r.host().calls(), ["SendCommand", "GetCommandInvocation"]);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644);
}

#[test]
fn upload_survives_throttling_and_resets_of_chunks() {
    let r = remote();
    r.host().fault("SendCommand", Fault::Throttle);
    r.host().fault("SendCommand", Fault::ResetAfter);
    r.host().fault("GetCommandInvocation", Fault::Status500);
    let path = r.host().tmp.join("t").display().to_string();
    let data = pattern(200_000);
    r.upload(&path, &data, None).unwrap();
    assert!(std::fs::read(&path).unwrap() == data);
}

#[test]
fn upload_errors_name_the_cause() {
    let r = remote();
    let missing = r.host().tmp.join("no/such/dir/f").display().to_string();
    assert!(matches!(
        r.upload(&missing, b"x", None),
        Err(Error::NotFound(_))
    ));
    let dir = r.host().tmp.display().to_string();
    assert!(matches!(r.upload(&dir, b"x", None), Err(Error::Io(m)) if m.contains("directory")));
    assert!(settled(&r).is_empty());
}

#[test]
fn download_errors_name_the_cause() {
    let r = remote();
    let missing = r.host().tmp.join("nothing").display().to_string();
    assert!(matches!(r.download(&missing), Err(Error::NotFound(m)) if m.contains("nothing")));
    let dir = r.host().tmp.display().to_string();
    assert!(matches!(r.download(&dir), Err(Error::Io(_))));
}

#[test]
fn windows_commands_run_unwrapped_and_files_fall_back() {
    let instance = Instance {
        id: "i-00000000000000003".into(),
        platform: "Windows".into(),
    };
    let r = Remote::new(Client::new(Fake::new()), instance, Config::default());
    assert_eq!(r.document, "AWS-RunPowerShellScript");
    let out = run(&r, "echo plain");
    assert_eq!(out.stdout, b"plain\n");
    assert_eq!(r.host().commands()[0].script, "echo plain");
    assert!(matches!(
        r.upload("C:/x", b"x", None),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(r.download("C:/x"), Err(Error::Unsupported(_))));
}

#[test]
fn instances_are_found_by_id_address_and_name() {
    let client = Client::new(Fake::new());
    let find = |host: &str| crate::lookup(&client, &Wanted::parse(host).unwrap(), "us-east-1");
    assert_eq!(
        find("i-00000000000000001").unwrap().id,
        "i-00000000000000001"
    );
    assert_eq!(find("web").unwrap().id, "i-00000000000000001");
    client.host.reset_calls();
    let win = find("10.0.0.3").unwrap();
    assert_eq!(
        (win.id.as_str(), win.platform.as_str()),
        ("i-00000000000000003", "Windows")
    );
    assert_eq!(
        client.host.count("DescribeInstanceInformation"),
        3,
        "address lookups page"
    );
    assert!(matches!(find("db"), Err(Error::Io(m)) if m.contains("ConnectionLost")));
    assert!(matches!(find("nobody"), Err(Error::NotFound(_))));
    assert!(matches!(find("10.9.9.9"), Err(Error::NotFound(_))));
    assert!(matches!(find("twin"), Err(Error::InvalidTarget(m)) if m.contains("2 instances")));
}

#[test]
fn closing_cleans_up_what_could_not_be_cleaned_earlier() {
    let r = remote();
    r.host().hang();
    r.host().fault_on("SendCommand", 2, Fault::BadSignature);
    assert!(matches!(
        r.run("sleep 9", Duration::from_secs(1)),
        Err(Error::Timeout(_))
    ));
    assert_eq!(r.host().commands().len(), 1, "the clean-up was refused");
    assert!(
        r.host()
            .logs()
            .iter()
            .any(|l| l.contains("could not clean up"))
    );
    r.close();
    let commands = r.host().commands();
    assert_eq!(commands.len(), 2);
    assert!(commands[1].script.starts_with("rm -rf"));
    assert!(
        commands[1]
            .script
            .contains(&commands[0].comment["railbox ".len()..])
    );
}

#[test]
fn a_copy_sent_again_behind_a_lagging_listing_does_not_run_twice() {
    let r = remote();
    r.host().hide_list_for(Duration::from_secs(5));
    r.host().fault("SendCommand", Fault::ResetAfter);
    let marker = r.host().tmp.join("ran");
    let out = run(&r, &format!("echo x >>'{}'; echo once", marker.display()));
    assert_eq!(out.stdout, b"once\n");
    assert_eq!(
        std::fs::read(&marker).unwrap(),
        b"x\n",
        "the command ran once"
    );
    assert_eq!(r.host().commands().len(), 2, "the second copy answered dup");
    assert!(
        r.host()
            .logs()
            .iter()
            .any(|l| l.contains("following the first copy"))
    );
}

#[test]
fn an_upload_sent_again_behind_a_lagging_listing_follows_the_first_copy() {
    let r = remote();
    r.host().hide_list_for(Duration::from_secs(5));
    r.host().fault("SendCommand", Fault::ResetAfter);
    let path = r.host().tmp.join("u").display().to_string();
    r.upload(&path, b"data", None).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"data");
    assert!(settled(&r).is_empty());
}
