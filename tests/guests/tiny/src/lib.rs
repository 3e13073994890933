//! The smallest useful transport: it answers `run` with the command it was
//! given, and nothing else. Benchmarks use it to measure what the host costs
//! per session, without a real protocol's state.

// wit-bindgen generates the unsafe ABI glue; the code written here uses none.
#![allow(missing_docs, unsafe_code)]

wit_bindgen::generate!({
    path: "../../../wit",
    world: "transport",
});

use exports::railbox::transport::session_api::{Guest, GuestSession, Session};
use railbox::transport::types::{CommandOutput, Description, Error, Needs, Target};

struct Tiny;

impl Guest for Tiny {
    type Session = TinySession;

    fn describe() -> Description {
        Description {
            name: "tiny".into(),
            version: "1.0.0".into(),
            summary: "Echoes the command it is given; for railbox's benchmarks".into(),
            schemes: vec!["tiny".into()],
            options: Vec::new(),
            needs: Needs {
                http: Vec::new(),
                aws: Vec::new(),
                streams: Vec::new(),
            },
        }
    }
}

struct TinySession;

impl GuestSession for TinySession {
    fn open(_target: Target) -> Result<Session, Error> {
        Ok(Session::new(TinySession))
    }

    fn run(&self, command: String, _timeout_ms: u64) -> Result<CommandOutput, Error> {
        Ok(CommandOutput {
            stdout: command.into_bytes(),
            stderr: Vec::new(),
            exit_status: 0,
        })
    }

    fn upload(&self, _path: String, _data: Vec<u8>, _mode: Option<u32>) -> Result<(), Error> {
        Err(Error::Unsupported("tiny has no file transfer".into()))
    }

    fn download(&self, _path: String) -> Result<Vec<u8>, Error> {
        Err(Error::Unsupported("tiny has no file transfer".into()))
    }

    fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}

// Exported only in wasm: a native build (tests, clippy) cannot link symbol
// names that hold WIT package paths.
#[cfg(target_arch = "wasm32")]
export!(Tiny);
