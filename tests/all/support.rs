//! Running the `railbox` binary from tests.

use std::path::Path;
use std::process::Output;

/// Run `railbox` with `args` in an isolated environment under `home`.
pub fn railbox(home: &Path, args: &[&str]) -> Output {
    railbox_with(home, args, &[])
}

/// Run `railbox` with extra environment variables.
pub fn railbox_with(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = railbox_tests::railbox(home);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("railbox runs")
}

/// The exit status of a finished `railbox`.
pub fn code(out: &Output) -> i32 {
    out.status.code().expect("railbox exited normally")
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
