//! Helpers for railbox's end-to-end tests: the guest programs built for the
//! tests, the `railbox` binary, a runtime with a private cache, and small
//! loopback servers that record what reaches them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use railbox::connect::{self, Request};
use railbox::limits::Limits;
use railbox::{Runtime, RuntimeConfig, Session};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

pub mod vm;

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// The `railbox` binary built alongside the tests.
pub fn railbox_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("tests run from target/<profile>/deps");
    dir.join("railbox")
}

/// A `railbox` command isolated from the user's environment: its own cache,
/// no installed transports, no AWS configuration or metadata service.
pub fn railbox(cache: &Path) -> Command {
    let mut cmd = Command::new(railbox_bin());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", cache)
        .env("RAILBOX_CACHE_DIR", cache.join("cache"))
        .env("RAILBOX_TRANSPORT_PATH", cache.join("none"))
        .env("XDG_DATA_HOME", cache.join("data"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", cache.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            cache.join("no-aws-credentials"),
        );
    cmd
}

/// A runtime with its own code cache in `dir`.
pub fn runtime_in(dir: &Path, limits: Limits) -> Arc<Runtime> {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.join("cache")),
        limits,
        ..RuntimeConfig::default()
    })
    .expect("runtime")
}

/// Open a session on the probe guest.
pub async fn open_probe(
    runtime: &Arc<Runtime>,
    url: &str,
) -> Result<Session, connect::ConnectError> {
    let request = Request {
        url: url.to_string(),
        transports: vec![PathBuf::from(PROBE)],
        ..Request::default()
    };
    connect::connect(runtime, &request, None)
        .await
        .map(|(_, s)| s)
}

/// One request a [`Recorder`] received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request line and headers, as text.
    pub head: String,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// A loopback HTTP server that records every request and answers 200 with
/// the request head as its body.
pub struct Recorder {
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Recorder {
    /// Start on 127.0.0.1, port 0.
    pub async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut sock).await else {
                        return;
                    };
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                        req.head.len(),
                        req.head
                    );
                    log.lock().expect("log").push(req);
                    let _ = sock.write_all(reply.as_bytes()).await;
                });
            }
        });
        Recorder { addr, received }
    }

    /// Requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("log").clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received { head, body })
}

/// A loopback TCP server that records the bytes it receives and sends
/// `greeting` to each connection.
pub struct StreamPeer {
    /// The address it listens on.
    pub addr: std::net::SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
}

impl StreamPeer {
    /// Start on 127.0.0.1, port 0.
    pub async fn start(greeting: &'static [u8]) -> StreamPeer {
        StreamPeer::serve(greeting, false).await
    }

    /// Start one that also echoes back what it receives, as a console with
    /// echo on does.
    pub async fn start_echoing(greeting: &'static [u8]) -> StreamPeer {
        StreamPeer::serve(greeting, true).await
    }

    async fn serve(greeting: &'static [u8], echo: bool) -> StreamPeer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let _ = sock.write_all(greeting).await;
                    let mut chunk = [0; 4096];
                    while let Ok(n) = sock.read(&mut chunk).await {
                        if n == 0 {
                            break;
                        }
                        log.lock().expect("log").extend_from_slice(&chunk[..n]);
                        if echo && sock.write_all(&chunk[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        StreamPeer { addr, received }
    }

    /// Bytes received so far.
    pub fn received(&self) -> Vec<u8> {
        self.received.lock().expect("log").clone()
    }
}

/// `len` bytes that no compressor shrinks (xorshift from `seed`), the same
/// for the same seed.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}
