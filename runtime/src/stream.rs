//! The byte-stream capability: the one serial device or TCP endpoint that
//! the target URL names.
//!
//! The transport cannot pick an address; it asks to open "the" stream, and the
//! host opens what the policy grants. Secrets such as a console password are
//! written into the stream by the host, so the transport never reads them.
//!
//! A console may echo what it is sent, so once a secret has been written,
//! every copy of it in what the stream returns is replaced by `*`s, and
//! bytes that could be the start of one are held back until what follows
//! shows they are not. That stops the plain echo. It cannot stop a
//! transport that has a shell print the secret transformed (reversed,
//! encoded); the only defence there is that a transport is audited and
//! pinned, and the policy names what it may reach.

use std::io::{Read as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::bindings::byte_stream::{FlowControl, LineSettings, Parity};
use crate::bindings::types::Error;
use crate::policy::StreamGrant;

/// Largest single read a transport may ask for.
const MAX_READ: u32 = 1 << 20;

/// Longest a single read may wait.
const MAX_READ_WAIT: Duration = Duration::from_secs(600);

/// An open byte stream, held in the session's resource table.
pub struct Connection {
    backend: Backend,
    /// Secrets written into this stream, to be scrubbed from its echo.
    written_secrets: Vec<zeroize::Zeroizing<Vec<u8>>>,
    /// Bytes read that may begin a secret, not yet given to the transport.
    held: zeroize::Zeroizing<Vec<u8>>,
}

enum Backend {
    Tcp(TcpStream),
    Serial(Arc<Mutex<Box<dyn serialport::SerialPort>>>),
}

impl Connection {
    /// Open the stream the policy grants.
    pub async fn open(grant: &StreamGrant, settings: Option<LineSettings>) -> Result<Self, Error> {
        let backend = match grant {
            StreamGrant::Tcp { host, port } => {
                let stream = tokio::time::timeout(
                    Duration::from_secs(30),
                    TcpStream::connect((host.as_str(), *port)),
                )
                .await
                .map_err(|_| Error::Timeout(format!("connecting to {host}:{port}")))?
                .map_err(|e| Error::Io(format!("cannot connect to {host}:{port}: {e}")))?;
                let _ = stream.set_nodelay(true);
                Backend::Tcp(stream)
            }
            StreamGrant::Device { path } => {
                let port = open_serial(path, settings).await?;
                Backend::Serial(Arc::new(Mutex::new(port)))
            }
        };
        tracing::info!(stream = %grant, "byte stream opened");
        Ok(Connection {
            backend,
            written_secrets: Vec::new(),
            held: Default::default(),
        })
    }

    /// Write a secret's value, and scrub it from what the stream returns
    /// from now on.
    pub async fn write_secret(&mut self, secret: &[u8]) -> Result<(), Error> {
        self.write(secret.to_vec()).await?;
        if !secret.is_empty() && !self.written_secrets.iter().any(|s| s.as_slice() == secret) {
            self.written_secrets
                .push(zeroize::Zeroizing::new(secret.to_vec()));
        }
        Ok(())
    }

    /// Read up to `max` bytes, waiting at most `wait` for the first, with
    /// written secrets scrubbed.
    pub async fn read(&mut self, max: u32, wait: Duration) -> Result<Vec<u8>, Error> {
        let data = self.read_raw(max, wait).await?;
        if self.written_secrets.is_empty() {
            return Ok(data);
        }
        let mut buf = std::mem::take(&mut *self.held);
        buf.extend_from_slice(&data);
        let keep = scrub(&mut buf, &self.written_secrets);
        *self.held = buf.split_off(buf.len() - keep);
        Ok(buf)
    }

    async fn read_raw(&mut self, max: u32, wait: Duration) -> Result<Vec<u8>, Error> {
        let max = max.clamp(1, MAX_READ) as usize;
        let wait = wait.min(MAX_READ_WAIT);
        match &mut self.backend {
            Backend::Tcp(stream) => {
                let mut buf = vec![0; max];
                match tokio::time::timeout(wait, stream.read(&mut buf)).await {
                    Err(_) => Ok(Vec::new()),
                    Ok(Ok(0)) => Err(Error::Io("the stream was closed by the other end".into())),
                    Ok(Ok(n)) => {
                        buf.truncate(n);
                        Ok(buf)
                    }
                    Ok(Err(e)) => Err(Error::Io(format!("read failed: {e}"))),
                }
            }
            Backend::Serial(port) => {
                let port = port.clone();
                blocking(move || {
                    let mut port = port.lock().map_err(|_| poisoned())?;
                    port.set_timeout(wait)
                        .map_err(|e| Error::Io(e.to_string()))?;
                    let mut buf = vec![0; max];
                    match port.read(&mut buf) {
                        Ok(n) => {
                            buf.truncate(n);
                            Ok(buf)
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Ok(Vec::new()),
                        Err(e) => Err(Error::Io(format!("read failed: {e}"))),
                    }
                })
                .await
            }
        }
    }

    /// Write all of `data`.
    pub async fn write(&mut self, data: Vec<u8>) -> Result<(), Error> {
        match &mut self.backend {
            Backend::Tcp(stream) => stream
                .write_all(&data)
                .await
                .map_err(|e| Error::Io(format!("write failed: {e}"))),
            Backend::Serial(port) => {
                let port = port.clone();
                blocking(move || {
                    let mut port = port.lock().map_err(|_| poisoned())?;
                    port.write_all(&data)
                        .and_then(|()| port.flush())
                        .map_err(|e| Error::Io(format!("write failed: {e}")))
                })
                .await
            }
        }
    }

    /// Send a break condition on a serial line; nothing on TCP.
    pub async fn send_break(&mut self) -> Result<(), Error> {
        match &mut self.backend {
            Backend::Tcp(_) => Ok(()),
            Backend::Serial(port) => {
                let port = port.clone();
                blocking(move || {
                    let port = port.lock().map_err(|_| poisoned())?;
                    port.set_break().map_err(|e| Error::Io(e.to_string()))?;
                    std::thread::sleep(Duration::from_millis(250));
                    port.clear_break().map_err(|e| Error::Io(e.to_string()))
                })
                .await
            }
        }
    }
}

/// Replace every copy of a secret in `buf` with `*`s, and return how many
/// bytes at its end could be the start of one (to hold back).
fn scrub(buf: &mut [u8], secrets: &[zeroize::Zeroizing<Vec<u8>>]) -> usize {
    for secret in secrets {
        let mut at = 0;
        while let Some(i) = buf[at..]
            .windows(secret.len())
            .position(|w| w == secret.as_slice())
        {
            let start = at + i;
            buf[start..start + secret.len()].fill(b'*');
            at = start + secret.len();
        }
    }
    let longest = secrets.iter().map(|s| s.len()).max().unwrap_or(0);
    (1..longest.min(buf.len() + 1))
        .rev()
        .find(|&k| {
            let tail = &buf[buf.len() - k..];
            secrets.iter().any(|s| k < s.len() && s.starts_with(tail))
        })
        .unwrap_or(0)
}

async fn open_serial(
    path: &str,
    settings: Option<LineSettings>,
) -> Result<Box<dyn serialport::SerialPort>, Error> {
    let settings = settings.unwrap_or(LineSettings {
        baud: 115_200,
        data_bits: 8,
        parity: Parity::None,
        stop_bits: 1,
        flow_control: FlowControl::None,
    });
    let data_bits = match settings.data_bits {
        5 => serialport::DataBits::Five,
        6 => serialport::DataBits::Six,
        7 => serialport::DataBits::Seven,
        8 => serialport::DataBits::Eight,
        n => return Err(Error::InvalidTarget(format!("{n} data bits; use 5 to 8"))),
    };
    let stop_bits = match settings.stop_bits {
        1 => serialport::StopBits::One,
        2 => serialport::StopBits::Two,
        n => return Err(Error::InvalidTarget(format!("{n} stop bits; use 1 or 2"))),
    };
    let parity = match settings.parity {
        Parity::None => serialport::Parity::None,
        Parity::Odd => serialport::Parity::Odd,
        Parity::Even => serialport::Parity::Even,
    };
    let flow = match settings.flow_control {
        FlowControl::None => serialport::FlowControl::None,
        FlowControl::Software => serialport::FlowControl::Software,
        FlowControl::Hardware => serialport::FlowControl::Hardware,
    };
    let path = path.to_string();
    blocking(move || {
        serialport::new(&path, settings.baud)
            .data_bits(data_bits)
            .stop_bits(stop_bits)
            .parity(parity)
            .flow_control(flow)
            .timeout(Duration::from_millis(100))
            .open()
            .map_err(|e| match e.kind() {
                serialport::ErrorKind::NoDevice => Error::NotFound(format!("{path}: {e}")),
                _ => Error::Io(format!("cannot open {path}: {e}")),
            })
    })
    .await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io(format!("serial worker failed: {e}")))?
}

fn poisoned() -> Error {
    Error::Io("the serial port is unusable after an earlier failure".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(list: &[&str]) -> Vec<zeroize::Zeroizing<Vec<u8>>> {
        list.iter()
            .map(|s| zeroize::Zeroizing::new(s.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn echoed_secrets_are_masked() {
        let mut buf = b"Password: hunter2\r\nwelcome hunter2!".to_vec();
        assert_eq!(scrub(&mut buf, &secrets(&["hunter2"])), 0);
        assert_eq!(buf, b"Password: *******\r\nwelcome *******!");
    }

    #[test]
    fn a_possible_start_of_a_secret_is_held_back() {
        let s = secrets(&["hunter2"]);
        let mut buf = b"echo: hunt".to_vec();
        assert_eq!(
            scrub(&mut buf, &s),
            4,
            "\"hunt\" may go on to be the secret"
        );
        let mut buf = b"echo: hunt!".to_vec();
        assert_eq!(scrub(&mut buf, &s), 0, "\"hunt!\" cannot");
        let mut buf = b"plain text\n".to_vec();
        assert_eq!(scrub(&mut buf, &s), 0);
    }
}
