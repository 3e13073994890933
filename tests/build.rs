//! Builds the guest programs under `tests/guests/` for wasm32-wasip2 and
//! writes `guests.rs` with their paths.

#[path = "../runtime/build_wasm.rs"]
mod build_wasm;

use std::env;
use std::fs;
use std::path::PathBuf;

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

    let names: Vec<String> = GUESTS
        .iter()
        .map(|guest| format!("railbox-guest-{guest}"))
        .collect();
    let wasm_dir = build_wasm::build(&root, &names);

    let mut code = String::new();
    for guest in GUESTS {
        let path = wasm_dir.join(format!("railbox_guest_{guest}.wasm"));
        code.push_str(&format!(
            "/// The `{guest}` test guest.\npub const {}: &str = {:?};\n",
            guest.to_uppercase(),
            path.display().to_string()
        ));
    }
    // A guest whose table asks for far more elements than any limit allows:
    // the tiny guest with its core module's table minimum raised. No Rust
    // guest can grow a table by itself, so the attack is made here.
    let tiny = wasm_dir.join("railbox_guest_tiny.wasm");
    let huge = out.join("railbox_guest_hugetable.wasm");
    let wasm = fs::read(&tiny).expect("reading the tiny guest");
    fs::write(&huge, huge_table(&wasm)).expect("writing the huge-table guest");
    code.push_str(&format!(
        "/// The tiny guest with a table of {HUGE_TABLE} elements.\npub const HUGETABLE: &str = {:?};\n",
        huge.display().to_string()
    ));
    fs::write(out.join("guests.rs"), code).expect("writing guests.rs");
}

/// Elements the huge-table guest's table starts with.
const HUGE_TABLE: u64 = 50_000_000;

/// Reencodes a component so that every table of its core modules starts at
/// [`HUGE_TABLE`] elements, with no maximum.
fn huge_table(wasm: &[u8]) -> Vec<u8> {
    use wasm_encoder::reencode::{Error, Reencode, ReencodeComponent, component_utils};

    struct Grow;

    impl Reencode for Grow {
        type Error = std::convert::Infallible;

        fn table_type(
            &mut self,
            table: wasmparser::TableType,
        ) -> Result<wasm_encoder::TableType, Error<Self::Error>> {
            let mut grown = wasm_encoder::reencode::utils::table_type(self, table)?;
            grown.minimum = HUGE_TABLE;
            grown.maximum = None;
            Ok(grown)
        }
    }

    impl ReencodeComponent for Grow {}

    let mut component = wasm_encoder::Component::new();
    component_utils::parse_component(
        &mut Grow,
        &mut component,
        wasmparser::Parser::new(0),
        wasm,
        wasm,
    )
    .expect("reencoding the tiny guest");
    component.finish()
}
