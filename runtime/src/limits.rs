//! Resource limits for one session: memory, tables, instances, CPU and time.
//!
//! Limits bound what a misbehaving or hostile transport can take from the
//! host. The defaults suit real transports; a policy file can change them.

use std::time::Duration;

use serde::Deserialize;

/// Resource limits applied to every session of a runtime.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest linear memory a transport may grow to, in bytes.
    pub memory_bytes: usize,
    /// Most linear memories in one session.
    pub memories: usize,
    /// Most tables in one session.
    pub tables: usize,
    /// Most elements in one table.
    pub table_elements: usize,
    /// Most core instances in one session.
    pub instances: usize,
    /// Stack available to guest code, in bytes.
    pub wasm_stack_bytes: usize,
    /// CPU time the guest may spend in one call, in seconds.
    #[serde(with = "seconds")]
    pub cpu_per_call: Duration,
    /// Wall-clock time for a call other than running a command, in seconds.
    #[serde(with = "seconds")]
    pub call_timeout: Duration,
    /// Extra wall-clock time a command may take beyond its own timeout
    /// before the host gives up on the transport, in seconds.
    #[serde(with = "seconds")]
    pub command_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            memories: 4,
            tables: 8,
            table_elements: 100_000,
            instances: 16,
            wasm_stack_bytes: 512 << 10,
            cpu_per_call: Duration::from_secs(30),
            call_timeout: Duration::from_secs(600),
            command_grace: Duration::from_secs(60),
        }
    }
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}
