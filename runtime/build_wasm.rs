//! Building workspace crates for wasm32-wasip2 from a build script, shared
//! by the host's build (the built-in transports) and the tests' (their
//! guest programs).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Build `packages` of the workspace at `root` for wasm32-wasip2 with the
/// `wasm` profile, in their own target directory so the outer build's lock
/// is not needed, and return the directory holding the `.wasm` files.
pub fn build(root: &Path, packages: &[String]) -> PathBuf {
    let target_dir = root.join("target").join("wasm");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--profile", "wasm", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target_dir);
    for package in packages {
        cmd.args(["-p", package]);
    }
    // The outer build's settings are for the host, not for wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    // A 64 KiB shadow stack keeps each instance's memory small.
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "-Clink-arg=-zstack-size=65536");
    let status = cmd.status().expect("running cargo for wasm32-wasip2");
    assert!(
        status.success(),
        "building {} for wasm32-wasip2 failed",
        packages.join(", ")
    );
    target_dir.join("wasm32-wasip2").join("wasm")
}
