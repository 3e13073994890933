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
        with: {
            "railbox:transport/byte-stream.connection": crate::stream::Connection,
        },
    });
}

pub use generated::exports::railbox::transport::session_api;
pub use generated::{Transport, TransportPre};
pub use generated::railbox::transport::{aws, byte_stream, logging, types};

/// The WIT package the host implements.
pub const PACKAGE: &str = "railbox:transport";

/// Contract versions the host supports, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.1.0"];

/// The exported interface a transport must provide, without its version.
pub const SESSION_INTERFACE: &str = "railbox:transport/session-api";
