//! Builds every transport under `transports/` for wasm32-wasip2 and writes
//! `builtin.rs`, which embeds them in the railbox binary.

#[path = "build_wasm.rs"]
mod build_wasm;

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

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
    let names: Vec<String> = packages.iter().map(|(name, _)| name.clone()).collect();
    let wasm_dir = if names.is_empty() {
        PathBuf::new()
    } else {
        build_wasm::build(&root, &names)
    };

    let mut code =
        String::from("/// Transports compiled into this binary: (file name, wasm bytes).\n");
    code.push_str("pub const BUILTIN: &[(&str, &[u8])] = &[\n");
    for (package, _) in &packages {
        let file = package.replace('-', "_") + ".wasm";
        let path = wasm_dir.join(&file);
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
