//! Builds every transport under `transports/` for wasm32-wasip2 and writes
//! `builtin.rs`, which embeds them in the railbox binary.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets this"));
    let root = manifest
        .parent()
        .expect("runtime/ sits in the workspace")
        .to_path_buf();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets this"));
    println!(
        "cargo:rerun-if-changed={}",
        root.join("transports").display()
    );
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-env-changed=RAILBOX_SKIP_BUILTIN");

    let packages = if env::var_os("RAILBOX_SKIP_BUILTIN").is_some() {
        Vec::new()
    } else {
        transport_packages(&root.join("transports"))
    };
    let wasm_target = root.join("target").join("wasm");
    if !packages.is_empty() {
        build_wasm(&root, &wasm_target, &packages);
    }

    let mut code =
        String::from("/// Transports compiled into this binary: (file name, wasm bytes).\n");
    code.push_str("pub const BUILTIN: &[(&str, &[u8])] = &[\n");
    for (package, _) in &packages {
        let file = package.replace('-', "_") + ".wasm";
        let path = wasm_target.join("wasm32-wasip2").join("wasm").join(&file);
        assert!(path.exists(), "{} was not built", path.display());
        code.push_str(&format!(
            "    ({file:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    fs::write(out.join("builtin.rs"), code).expect("writing builtin.rs");
}

/// (package name, crate dir) of every crate directly under `transports/`.
fn transport_packages(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = fs::read_to_string(&manifest) else {
            continue;
        };
        let name = text
            .lines()
            .skip_while(|l| l.trim() != "[package]")
            .find_map(|l| {
                l.trim()
                    .strip_prefix("name = ")
                    .map(|v| v.trim_matches('"').to_string())
            });
        if let Some(name) = name {
            found.push((name, entry.path()));
        }
    }
    found.sort();
    found
}

fn build_wasm(root: &Path, target_dir: &Path, packages: &[(String, PathBuf)]) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--profile",
            "wasm",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(target_dir);
    for (package, _) in packages {
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
    cmd.env("CARGO_ENCODED_RUSTFLAGS", "-Clink-arg=-zstack-size=65536");
    let status = cmd
        .status()
        .expect("running cargo for the built-in transports");
    assert!(status.success(), "building the built-in transports failed");
}
