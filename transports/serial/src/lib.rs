//! The `serial` railbox transport: commands and files over a serial console,
//! a local device (`serial:///dev/ttyUSB0`) or a console server's TCP port
//! (`serial+tcp://host:port`).
//!
//! This file is the export boundary: it describes the transport and turns
//! the host's target into a `shell::Shell`. The protocol lives below it:
//! `login` reaches a shell, `shell` frames commands, `transfer` moves files;
//! only `link` touches the host.

mod console;
mod link;
mod login;
mod options;
mod shell;
mod transfer;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::time::Duration;

use crate::link::{Level, Link, Wire};
use crate::options::{Config, Flow, Kind, Parity, SPECS, Value};
use crate::shell::Shell;

/// Bindings generated from the WIT contract.
#[allow(unsafe_code, missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "transport" });

    #[cfg(target_arch = "wasm32")]
    use super::Component;

    // Exported only in wasm: a native build (the unit tests, clippy) cannot
    // link symbol names that hold WIT package paths.
    #[cfg(target_arch = "wasm32")]
    export!(Component);
}

use bindings::exports::railbox::transport::session_api as wit_api;
use bindings::railbox::transport::byte_stream;
use bindings::railbox::transport::types as wit;

/// The transport's errors are the contract's.
pub(crate) use wit::Error;

/// An error's message, without its kind.
pub(crate) fn message(e: &Error) -> &str {
    let (Error::InvalidTarget(m)
    | Error::NotFound(m)
    | Error::Denied(m)
    | Error::Timeout(m)
    | Error::Unsupported(m)
    | Error::Protocol(m)
    | Error::Io(m)) = e;
    m
}

/// The exported component.
struct Component;

/// An open session, as the host holds it.
struct Session {
    shell: RefCell<Shell<Wire>>,
}

impl wit_api::Guest for Component {
    type Session = Session;

    fn describe() -> wit::Description {
        description()
    }
}

impl wit_api::GuestSession for Session {
    fn open(target: wit::Target) -> Result<wit_api::Session, Error> {
        open(target).map(wit_api::Session::new)
    }

    fn run(&self, command: String, timeout_ms: u64) -> Result<wit::CommandOutput, Error> {
        let output = self
            .shell
            .borrow_mut()
            .run(&command, Duration::from_millis(timeout_ms))?;
        Ok(wit::CommandOutput {
            stdout: output.stdout,
            stderr: output.stderr,
            exit_status: output.exit,
        })
    }

    fn upload(&self, path: String, data: Vec<u8>, mode: Option<u32>) -> Result<(), Error> {
        self.shell.borrow_mut().upload(&path, &data, mode)
    }

    fn download(&self, path: String) -> Result<Vec<u8>, Error> {
        self.shell.borrow_mut().download(&path)
    }

    fn close(&self) -> Result<(), Error> {
        self.shell.borrow_mut().close()
    }
}

/// The transport's description: options, schemes and the stream it needs.
fn description() -> wit::Description {
    let options = SPECS
        .iter()
        .map(|s| wit::OptionSpec {
            name: s.name.to_string(),
            type_: match s.kind {
                Kind::Text => wit::OptionType::String,
                Kind::Integer => wit::OptionType::Integer,
                Kind::Boolean => wit::OptionType::Boolean,
            },
            default: s.default.map(str::to_string),
            doc: s.doc.to_string(),
            secret: s.secret,
        })
        .collect();
    wit::Description {
        name: "serial".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        summary: "serial consoles: local devices and console servers over TCP".into(),
        schemes: vec!["serial".into(), "serial+tcp".into()],
        options,
        needs: wit::Needs {
            http: Vec::new(),
            aws: Vec::new(),
            streams: vec![
                wit::StreamNeed {
                    scheme: "serial".into(),
                    source: wit::StreamSource::DevicePath,
                },
                wit::StreamNeed {
                    scheme: "serial+tcp".into(),
                    source: wit::StreamSource::TcpAddress,
                },
            ],
        },
    }
}

fn open(target: wit::Target) -> Result<Session, Error> {
    match target.scheme.as_str() {
        "serial" => {
            if target.host.as_deref().is_some_and(|h| !h.is_empty()) || target.port.is_some() {
                return Err(Error::InvalidTarget(
                    "serial:// names a local device by its path, as in serial:///dev/ttyS0; for a \
                     console server use serial+tcp://host:port"
                        .into(),
                ));
            }
        }
        "serial+tcp" => {
            if !matches!(target.path.as_str(), "" | "/") {
                return Err(Error::InvalidTarget(format!(
                    "serial+tcp:// takes a host and port, not a path ({:?})",
                    target.path
                )));
            }
        }
        other => {
            return Err(Error::InvalidTarget(format!(
                "scheme {other:?} is not served by serial"
            )));
        }
    }
    let options: Vec<(String, Value)> = target
        .options
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                wit::OptionValue::String(s) => Value::Text(s),
                wit::OptionValue::Integer(i) => Value::Integer(i),
                wit::OptionValue::Boolean(b) => Value::Boolean(b),
                wit::OptionValue::Float(f) => Value::Text(f.to_string()),
                wit::OptionValue::Secret => Value::Secret,
            };
            (name, value)
        })
        .collect();
    let config = Config::from_options(&options, target.user.as_deref())?;
    let settings = byte_stream::LineSettings {
        baud: config.baud,
        data_bits: config.data_bits,
        parity: match config.parity {
            Parity::None => byte_stream::Parity::None,
            Parity::Odd => byte_stream::Parity::Odd,
            Parity::Even => byte_stream::Parity::Even,
        },
        stop_bits: config.stop_bits,
        flow_control: match config.flow {
            Flow::None => byte_stream::FlowControl::None,
            Flow::Software => byte_stream::FlowControl::Software,
            Flow::Hardware => byte_stream::FlowControl::Hardware,
        },
    };
    let wire = Wire::new(byte_stream::open(Some(settings))?);
    wire.log(Level::Debug, "byte stream open; reaching a shell");
    let shell = Shell::open(wire, config)?;
    Ok(Session {
        shell: RefCell::new(shell),
    })
}
