//! Builds the guest programs under `tests/guests/` for wasm32-wasip2 and
//! writes `guests.rs` with their paths.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

const GUESTS: &[&str] = &["probe", "sockets", "future", "tiny"];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    let root = manifest
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets this"));
    println!(
        "cargo:rerun-if-changed={}",
        manifest.join("guests").display()
    );
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    let target_dir = root.join("target").join("wasm");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--profile",
            "wasm",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for guest in GUESTS {
        cmd.args(["-p", &format!("railbox-guest-{guest}")]);
    }
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "-Clink-arg=-zstack-size=65536");
    let status = cmd.status().expect("running cargo for the test guests");
    assert!(status.success(), "building the test guests failed");

    let mut code = String::new();
    for guest in GUESTS {
        let path = target_dir
            .join("wasm32-wasip2")
            .join("wasm")
            .join(format!("railbox_guest_{guest}.wasm"));
        code.push_str(&format!(
            "/// The `{guest}` test guest.\npub const {}: &str = {:?};\n",
            guest.to_uppercase(),
            path.display().to_string()
        ));
    }
    fs::write(out.join("guests.rs"), code).expect("writing guests.rs");
}
