//! A test transport that opens sockets, which railbox does not provide.
//!
//! Loading it must fail and name the `wasi:sockets` import.

// wit-bindgen generates the unsafe ABI glue; the code written here uses none.
#![allow(missing_docs, unsafe_code)]

wit_bindgen::generate!({
    path: "../../../wit",
    world: "transport",
});

use exports::railbox::transport::session_api::{Guest, GuestSession, Session};
use railbox::transport::types::{CommandOutput, Description, Error, Needs, Target};

struct Sockets;

struct SocketSession;

impl Guest for Sockets {
    type Session = SocketSession;

    fn describe() -> Description {
        Description {
            name: "sockets".into(),
            version: "1.0.0".into(),
            summary: "Opens sockets; for railbox's tests".into(),
            schemes: vec!["sockets".into()],
            options: vec![],
            needs: Needs {
                http: vec![],
                aws: vec![],
                streams: vec![],
            },
        }
    }
}

impl GuestSession for SocketSession {
    fn open(_target: Target) -> Result<Session, Error> {
        Ok(Session::new(SocketSession))
    }

    fn run(&self, command: String, _timeout_ms: u64) -> Result<CommandOutput, Error> {
        let tcp = std::net::TcpStream::connect(command.as_str()).map(|_| ());
        let udp = std::net::UdpSocket::bind("0.0.0.0:0").map(|_| ());
        Ok(CommandOutput {
            stdout: format!("{tcp:?} {udp:?}").into_bytes(),
            stderr: Vec::new(),
            exit_status: 0,
        })
    }

    fn upload(&self, _path: String, _data: Vec<u8>, _mode: Option<u32>) -> Result<(), Error> {
        Err(Error::Unsupported("no upload".into()))
    }

    fn download(&self, _path: String) -> Result<Vec<u8>, Error> {
        Err(Error::Unsupported("no download".into()))
    }

    fn close(&self) -> Result<(), Error> {
        Ok(())
    }
}

// Exported only in wasm: a native build (tests, clippy) cannot link symbol
// names that hold WIT package paths.
#[cfg(target_arch = "wasm32")]
export!(Sockets);
