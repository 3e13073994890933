//! A test transport built for a contract version railbox does not support.
//!
//! Loading it must fail with a message naming the supported versions.

// wit-bindgen generates the unsafe ABI glue; the code written here uses none.
#![allow(missing_docs, unsafe_code)]

wit_bindgen::generate!({
    inline: "
        package railbox:transport@9.0.0;

        interface session-api {
            describe: func() -> string;
        }

        world transport {
            export session-api;
        }
    ",
});

struct Future;

impl exports::railbox::transport::session_api::Guest for Future {
    fn describe() -> String {
        "from the future".into()
    }
}

// Exported only in wasm: a native build (tests, clippy) cannot link symbol
// names that hold WIT package paths.
#[cfg(target_arch = "wasm32")]
export!(Future);
