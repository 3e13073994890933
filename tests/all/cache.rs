//! The compiled-code cache: reused across runs, invalidated when the wasm
//! changes, private to the user, and never trusted blindly.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use railbox_tests::PROBE;

use crate::support::{code, railbox, stderr};

const URL: &str = "probe://target/?region=us-east-1";

fn entries(home: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(home.join("cache"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| p.extension().is_some_and(|x| x == "cwasm"));
    found.sort();
    found
}

fn run_with(home: &Path, transport: &Path) -> std::process::Output {
    railbox(
        home,
        &[
            "run",
            "--transport",
            transport.to_str().unwrap(),
            URL,
            "--",
            "echo",
            "ok",
        ],
    )
}

#[test]
fn compiled_code_is_cached_privately_and_reused() {
    let home = tempfile::tempdir().unwrap();
    let out = run_with(home.path(), Path::new(PROBE));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let first = entries(home.path());
    assert_eq!(first.len(), 1);
    let mode = std::fs::metadata(home.path().join("cache"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let written = std::fs::metadata(&first[0]).unwrap().modified().unwrap();

    let out = run_with(home.path(), Path::new(PROBE));
    assert_eq!(code(&out), 0);
    assert_eq!(entries(home.path()), first);
    let again = std::fs::metadata(&first[0]).unwrap().modified().unwrap();
    assert_eq!(
        written, again,
        "the second run loads the entry instead of rewriting it"
    );
}

#[test]
fn a_changed_wasm_gets_a_new_entry() {
    let home = tempfile::tempdir().unwrap();
    assert_eq!(code(&run_with(home.path(), Path::new(PROBE))), 0);
    // Appending a custom section changes the digest but not the behaviour.
    let mut wasm = std::fs::read(PROBE).unwrap();
    wasm.extend_from_slice(&[0, 5, 4, b'n', b'o', b't', b'e']);
    let changed = home.path().join("changed.wasm");
    std::fs::write(&changed, wasm).unwrap();
    let out = run_with(home.path(), &changed);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(entries(home.path()).len(), 2);
}

#[test]
fn a_corrupt_entry_is_discarded_and_rebuilt() {
    let home = tempfile::tempdir().unwrap();
    assert_eq!(code(&run_with(home.path(), Path::new(PROBE))), 0);
    let entry = entries(home.path()).remove(0);
    std::fs::write(&entry, b"garbage that is not compiled code").unwrap();
    let out = run_with(home.path(), Path::new(PROBE));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        std::fs::read(&entry).unwrap().len() > 1000,
        "the entry was rebuilt"
    );
}

#[test]
fn an_entry_others_can_write_is_not_loaded() {
    let home = tempfile::tempdir().unwrap();
    assert_eq!(code(&run_with(home.path(), Path::new(PROBE))), 0);
    let entry = entries(home.path()).remove(0);
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = railbox(
        home.path(),
        &["run", "--transport", PROBE, URL, "--", "echo", "ok"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).is_empty() || !stderr(&out).contains("panicked"));
    let mode = std::fs::metadata(&entry).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o022,
        0,
        "the suspicious entry was replaced by a private one"
    );
}

#[test]
fn a_cache_directory_others_can_read_is_made_private() {
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(code(&run_with(home.path(), Path::new(PROBE))), 0);
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
}
