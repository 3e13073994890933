//! railbox runs remote-access transports as sandboxed WebAssembly components.
//!
//! A transport (AWS SSM Run Command, a serial console, ...) is a component
//! built against the `railbox:transport` WIT contract. The host compiles it
//! once, instantiates it per session in its own store with memory, CPU and
//! time limits, and grants it only the capabilities its policy names:
//! outgoing HTTP to named endpoints, AWS requests signed by the host, and the
//! one byte stream the target URL names.

pub mod aws;
pub mod bindings;
pub mod cache;
pub mod cli;
pub mod conformance;
pub mod connect;
pub mod describe;
pub mod engine;
pub mod files;
pub mod guest_output;
mod host;
pub mod inspect;
pub mod limits;
pub mod linker;
pub mod net;
pub mod platform;
pub mod policy;
pub mod registry;
pub mod session;
pub mod stream;
pub mod target;
pub mod transport;
pub mod wrap;

pub use engine::{Allocation, Runtime, RuntimeConfig};
pub use policy::Policy;
pub use session::{Session, SessionError};
pub use transport::Transport;
