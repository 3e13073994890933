//! A local AWS Systems Manager (SSM) endpoint that really runs commands.
//!
//! railbox's SSM transport must be tested without reaching AWS, and people
//! trying railbox need an SSM to talk to. This crate serves the Run Command
//! part of the SSM API (awsJson1_1 over HTTP, SigV4-signed) on loopback and
//! executes what it is sent with `sh` on emulated instances, each with its own
//! working directory and one process group per command.
//!
//! Served operations: SendCommand, GetCommandInvocation, ListCommandInvocations,
//! ListCommands, CancelCommand and DescribeInstanceInformation. Statuses,
//! truncation, timestamps and errors follow the service, including its eventual
//! consistency (`InvocationDoesNotExist` right after SendCommand, when enabled)
//! and its delivery timeout for unreachable instances.
//!
//! # Usage
//!
//! From the command line:
//!
//! ```text
//! ssm-emulator --listen 127.0.0.1:0 --instances 3
//! listening on http://127.0.0.1:41234
//! AWS_ACCESS_KEY_ID=AKIDRAILBOXEMULATOR AWS_SECRET_ACCESS_KEY=railbox-emulator-secret \
//!   aws --endpoint-url http://127.0.0.1:41234 --region us-east-1 ssm send-command \
//!   --instance-ids i-00000000000000001 --document-name AWS-RunShellScript \
//!   --parameters commands='echo hi'
//! ```
//!
//! From a test:
//!
//! ```no_run
//! # async fn demo() -> Result<(), ssm_emulator::Error> {
//! use ssm_emulator::{Config, Emulator, Faults};
//!
//! let emulator = Emulator::start(Config::default()).await?;
//! let endpoint = emulator.endpoint_url(); // give this to aws_sdk_ssm's endpoint_url
//! emulator.set_faults(Faults { error_rate: 0.2, ..Faults::default() })?;
//! assert_eq!(emulator.calls("SendCommand"), 0);
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Requests must be signed with a configured key; by default that is
//! [`DEFAULT_ACCESS_KEY_ID`] / [`DEFAULT_SECRET_ACCESS_KEY`] in
//! [`DEFAULT_REGION`]. Faults can also be changed while running with
//! `POST /_emulator/faults` and a JSON object of [`Faults`] fields, e.g.
//! `{"error_rate": 0.1, "throttle": {"SendCommand": {"rate": 5, "burst": 10}}}`;
//! `GET /_emulator/faults` and `GET /_emulator/calls` report the current state.

mod agent;
mod config;
mod emulator;
mod exec;
mod faults;
mod listing;
mod ops;
mod output;
mod protocol;
mod server;
mod sigv4;
mod store;
mod timefmt;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use config::{
    Config, Credentials, DEFAULT_ACCESS_KEY_ID, DEFAULT_AGENT_VERSION, DEFAULT_REGION,
    DEFAULT_SECRET_ACCESS_KEY, Instance, PingStatus, PlatformType, load_instances,
};
pub use emulator::{Emulator, EmulatorHandle};
pub use faults::{ANY_OPERATION, Faults, LatencyRange, Throttle};
pub use server::ADMIN_PREFIX;

/// Failures to configure or start an emulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The listen address could not be bound.
    #[error("failed to bind {addr}")]
    Bind {
        /// The address that was requested.
        addr: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The temporary directory for instance working directories could not be made.
    #[error("failed to create run directory {}", path.display())]
    RunDir {
        /// The directory that could not be created.
        path: PathBuf,
        /// Why creating it failed.
        source: std::io::Error,
    },
    /// An instances file could not be read.
    #[error("failed to read instances file {}", path.display())]
    ReadInstances {
        /// The file.
        path: PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// An instances file is not valid JSON or TOML of the expected shape.
    #[error("failed to parse instances file {}: {message}", path.display())]
    ParseInstances {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        message: String,
    },
}
