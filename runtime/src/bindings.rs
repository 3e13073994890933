//! Host bindings for the `railbox:transport` WIT contract.
//!
//! The contract is versioned; the host keeps bindings for every version it
//! supports and refuses components built for any other.

#[allow(missing_docs)]
mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "transport",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [PartialEq],
        with: {
            "railbox:transport/byte-stream.connection": crate::stream::Connection,
        },
    });
}

pub use generated::exports::railbox::transport::session_api;
pub use generated::railbox::transport::{aws, byte_stream, logging, types};
pub use generated::{Transport, TransportPre};

/// The WIT package the host implements.
pub const PACKAGE: &str = "railbox:transport";

/// Contract versions the host supports, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.1.0"];

/// The exported interface a transport must provide, without its version.
pub const SESSION_INTERFACE: &str = "railbox:transport/session-api";

/// Say a transport's error in one line for users, `not found: web-1`.
///
/// The generated `Display` prints the variant's Rust spelling instead.
pub fn describe_error(error: &types::Error) -> String {
    use types::Error as E;
    let (kind, message) = match error {
        E::InvalidTarget(m) => ("invalid target", m),
        E::NotFound(m) => ("not found", m),
        E::Denied(m) => ("denied", m),
        E::Timeout(m) => ("timed out", m),
        E::Unsupported(m) => ("unsupported", m),
        E::Protocol(m) => ("protocol error", m),
        E::Io(m) => ("i/o error", m),
    };
    format!("{kind}: {message}")
}
