//! The capabilities railbox implements for its transports: logging, AWS
//! settings and the byte stream, on top of WASI with nothing granted.
//!
//! Each function checks the session's policy before doing anything; a denial
//! is an expected failure the transport sees as a WIT error, not a trap.

use std::time::Duration;

use wasmtime::component::Resource;

use crate::bindings::{aws, byte_stream, logging, types};
use crate::session::SessionState;
use crate::stream::Connection;

/// Longest log message kept; longer ones are cut.
const MAX_LOG_CHARS: usize = 4096;

impl types::Host for SessionState {}

impl logging::Host for SessionState {
    async fn log(&mut self, level: logging::Level, message: String) -> wasmtime::Result<()> {
        let message = truncate(&message, MAX_LOG_CHARS);
        let transport = self.transport_name.as_str();
        match level {
            logging::Level::Trace => tracing::trace!(transport, "{message}"),
            logging::Level::Debug => tracing::debug!(transport, "{message}"),
            logging::Level::Info => tracing::info!(transport, "{message}"),
            logging::Level::Warn => tracing::warn!(transport, "{message}"),
            logging::Level::Error => tracing::error!(transport, "{message}"),
        }
        Ok(())
    }

    async fn progress(&mut self, operation: String, done: u64, total: u64) -> wasmtime::Result<()> {
        if let Some(report) = &self.progress {
            report(&truncate(&operation, 200), done, total);
        }
        Ok(())
    }
}

impl aws::Host for SessionState {
    async fn settings(
        &mut self,
        signing_name: String,
    ) -> wasmtime::Result<Result<aws::ServiceSettings, types::Error>> {
        let grant = self
            .policy
            .aws
            .iter()
            .find(|g| g.signing_name == signing_name);
        Ok(match grant {
            Some(g) => Ok(aws::ServiceSettings {
                region: g.region.clone(),
                endpoint: g.endpoint.to_string(),
            }),
            None => Err(types::Error::Denied(format!(
                "the policy grants no access to AWS service {signing_name:?}"
            ))),
        })
    }
}

impl byte_stream::Host for SessionState {
    async fn open(
        &mut self,
        settings: Option<byte_stream::LineSettings>,
    ) -> wasmtime::Result<Result<Resource<Connection>, types::Error>> {
        let Some(grant) = self.policy.stream.clone() else {
            tracing::warn!("denied opening a byte stream the policy does not grant");
            return Ok(Err(types::Error::Denied(
                "the policy grants no byte stream".into(),
            )));
        };
        match Connection::open(&grant, settings).await {
            Ok(conn) => Ok(Ok(self.table.push(conn)?)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl byte_stream::HostConnection for SessionState {
    async fn read(
        &mut self,
        conn: Resource<Connection>,
        max: u32,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, types::Error>> {
        let conn = self.table.get_mut(&conn)?;
        Ok(conn
            .read(max, Duration::from_millis(timeout_ms.into()))
            .await)
    }

    async fn write(
        &mut self,
        conn: Resource<Connection>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let conn = self.table.get_mut(&conn)?;
        Ok(conn.write(data).await)
    }

    async fn write_secret(
        &mut self,
        conn: Resource<Connection>,
        name: String,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let Some(secret) = self.secrets.get(&name) else {
            return Ok(Err(types::Error::NotFound(format!(
                "no secret option {name:?} was given"
            ))));
        };
        let bytes = zeroize::Zeroizing::new(secret.as_bytes().to_vec());
        let conn = self.table.get_mut(&conn)?;
        let written = conn.write_secret(&bytes).await;
        tracing::debug!(option = %name, "wrote a secret into the stream");
        Ok(written)
    }

    async fn send_break(
        &mut self,
        conn: Resource<Connection>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let conn = self.table.get_mut(&conn)?;
        Ok(conn.send_break().await)
    }

    async fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(conn)?;
        Ok(())
    }
}

fn truncate(text: &str, max_chars: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]).into(),
        None => text.into(),
    }
}
