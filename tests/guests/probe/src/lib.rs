//! A test transport that does what its command says, including attacks.
//!
//! railbox's tests drive the host through this guest: `run` takes a verb and
//! an argument (`echo hi`, `read-file /etc/passwd`, `spin`, `http URL`) and
//! either does it or tries to. Hostile verbs must fail for the guest and
//! leave the host serving other sessions.

// wit-bindgen generates the unsafe ABI glue; the code written here uses none.
#![allow(missing_docs, unsafe_code)]

use std::cell::RefCell;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "transport",
});

use exports::railbox::transport::session_api::{Guest, GuestSession, Session};
use railbox::transport::types::{
    AwsService, CommandOutput, Description, Error, Needs, OptionSpec, OptionType, OptionValue,
    StreamNeed, StreamSource, Target,
};
use railbox::transport::{aws, byte_stream, logging};

struct Probe;

struct ProbeSession {
    target: Target,
    stream: RefCell<Option<byte_stream::Connection>>,
    closed: RefCell<bool>,
}

fn option(name: &str, type_: OptionType, default: Option<&str>, secret: bool) -> OptionSpec {
    OptionSpec {
        name: name.into(),
        type_,
        default: default.map(str::to_string),
        doc: format!("the {name} option"),
        secret,
    }
}

impl Guest for Probe {
    type Session = ProbeSession;

    fn describe() -> Description {
        Description {
            name: "probe".into(),
            version: "1.0.0".into(),
            summary: "Does what its command says; for railbox's tests".into(),
            schemes: vec!["probe".into(), "probe+tcp".into()],
            options: vec![
                option("endpoint", OptionType::String, None, false),
                option("region", OptionType::String, None, false),
                option("count", OptionType::Integer, Some("1"), false),
                option("ratio", OptionType::Float, None, false),
                option("verbose", OptionType::Boolean, Some("false"), false),
                option("password", OptionType::String, None, true),
                option("fail_open", OptionType::Boolean, Some("false"), false),
            ],
            needs: Needs {
                http: vec!["{endpoint}".into()],
                aws: vec![AwsService {
                    signing_name: "ssm".into(),
                    endpoint_prefix: "ssm".into(),
                    endpoint_env_id: "SSM".into(),
                    actions: vec!["AmazonSSM.GetCommandInvocation".into()],
                    region_option: Some("region".into()),
                    profile_option: None,
                    endpoint_option: None,
                }],
                streams: vec![StreamNeed {
                    scheme: "probe+tcp".into(),
                    source: StreamSource::TcpAddress,
                }],
            },
        }
    }
}

impl GuestSession for ProbeSession {
    fn open(target: Target) -> Result<Session, Error> {
        let fail = target
            .options
            .iter()
            .any(|(k, v)| k == "fail_open" && matches!(v, OptionValue::Boolean(true)));
        if fail {
            return Err(Error::NotFound(format!(
                "no machine called {}",
                target.host.clone().unwrap_or_default()
            )));
        }
        logging::log(logging::Level::Info, "probe session opened");
        Ok(Session::new(ProbeSession {
            target,
            stream: RefCell::new(None),
            closed: RefCell::new(false),
        }))
    }

    fn run(&self, command: String, timeout_ms: u64) -> Result<CommandOutput, Error> {
        if *self.closed.borrow() {
            return Err(Error::Protocol("used after close".into()));
        }
        let (verb, arg) = command.split_once(' ').unwrap_or((&command, ""));
        let text = |s: String| Ok(out(s.into_bytes(), Vec::new(), 0));
        match verb {
            "echo" => text(format!("{arg}\n")),
            "stderr" => Ok(out(Vec::new(), format!("{arg}\n").into_bytes(), 0)),
            "exit" => Ok(out(Vec::new(), Vec::new(), arg.parse().unwrap_or(1))),
            "target" => text(format!("{:?}", self.target)),
            "timeout" => text(timeout_ms.to_string()),
            "fail" => Err(Error::Denied(arg.to_string())),
            "fail-timeout" => Err(Error::Timeout(arg.to_string())),
            "bytes" => Ok(out(vec![0xff; arg.parse().unwrap_or(0)], Vec::new(), 0)),
            "read-file" => std::fs::read(arg)
                .map(|b| out(b, Vec::new(), 0))
                .map_err(|e| Error::Io(e.to_string())),
            "list-dir" => std::fs::read_dir(arg)
                .map(|d| out(format!("{}", d.count()).into_bytes(), Vec::new(), 0))
                .map_err(|e| Error::Io(e.to_string())),
            "env" => text(format!(
                "{:?} {:?}",
                std::env::vars().collect::<Vec<_>>(),
                std::env::args().collect::<Vec<_>>()
            )),
            "stdin" => {
                let mut buf = String::new();
                let read = std::io::Read::read_to_string(&mut std::io::stdin(), &mut buf);
                text(format!("{read:?} {buf:?}"))
            }
            "print" => {
                println!("{arg}");
                eprintln!("{arg}");
                text(String::new())
            }
            "settings" => aws::settings(arg).map(|s| {
                out(
                    format!("{} {}", s.region, s.endpoint).into_bytes(),
                    Vec::new(),
                    0,
                )
            }),
            "http" => {
                http::get(arg, None).map(|(status, body)| out(body, Vec::new(), status.into()))
            }
            "aws" => {
                let (url, action) = arg.split_once(' ').unwrap_or((arg, ""));
                http::post_json(url, action)
                    .map(|(status, body)| out(body, Vec::new(), status.into()))
            }
            "header" => {
                let (url, header) = arg.split_once(' ').unwrap_or((arg, ""));
                http::get(url, Some(header))
                    .map(|(status, body)| out(body, Vec::new(), status.into()))
            }
            "stream-write" => self.with_stream(|s| {
                s.write(arg.as_bytes())
                    .map(|()| out(Vec::new(), Vec::new(), 0))
            }),
            "stream-secret" => {
                self.with_stream(|s| s.write_secret(arg).map(|()| out(Vec::new(), Vec::new(), 0)))
            }
            "stream-read" => {
                self.with_stream(|s| s.read(4096, 5000).map(|b| out(b, Vec::new(), 0)))
            }
            "log" => {
                logging::log(logging::Level::Warn, arg);
                logging::progress("probe", 1, 2);
                text(String::new())
            }
            "spin" => loop {
                std::hint::black_box(());
            },
            "sleep-host" => {
                let ns = arg
                    .parse::<u64>()
                    .unwrap_or(u64::MAX / 2)
                    .saturating_mul(1_000_000);
                wasip2::clocks::monotonic_clock::subscribe_duration(ns).block();
                text("woke".into())
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recurse" => text(recurse(u64::MAX).to_string()),
            "resources" => {
                let mut held = Vec::new();
                loop {
                    held.push(wasip2::http::types::Fields::new());
                }
            }
            "big-output" => {
                let mib: usize = arg.parse().unwrap_or(1024);
                Ok(out(vec![b'x'; mib << 20], Vec::new(), 0))
            }
            "panic" => panic!("the probe was asked to panic"),
            "trap" => trap(),
            _ => Err(Error::Unsupported(format!("unknown verb {verb:?}"))),
        }
    }

    fn upload(&self, path: String, data: Vec<u8>, mode: Option<u32>) -> Result<(), Error> {
        if path == "/unsupported" {
            return Err(Error::Unsupported("no native upload".into()));
        }
        logging::log(
            logging::Level::Debug,
            &format!("upload {path} {} bytes mode {mode:?}", data.len()),
        );
        Ok(())
    }

    fn download(&self, path: String) -> Result<Vec<u8>, Error> {
        Ok(path.into_bytes())
    }

    fn close(&self) -> Result<(), Error> {
        *self.closed.borrow_mut() = true;
        Ok(())
    }
}

impl ProbeSession {
    fn with_stream(
        &self,
        f: impl FnOnce(&byte_stream::Connection) -> Result<CommandOutput, Error>,
    ) -> Result<CommandOutput, Error> {
        let mut slot = self.stream.borrow_mut();
        if slot.is_none() {
            *slot = Some(byte_stream::open(None)?);
        }
        f(slot.as_ref().expect("opened above"))
    }
}

fn out(stdout: Vec<u8>, stderr: Vec<u8>, exit_status: i32) -> CommandOutput {
    CommandOutput {
        stdout,
        stderr,
        exit_status,
    }
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    let pad = std::hint::black_box([n; 64]);
    if n == 0 {
        pad[3]
    } else {
        recurse(n - 1).wrapping_add(pad[7])
    }
}

fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

/// A minimal blocking client over `wasi:http`.
mod http {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

    use crate::railbox::transport::types::Error;

    pub fn get(url: &str, header: Option<&str>) -> Result<(u16, Vec<u8>), Error> {
        let headers = Fields::new();
        if let Some((name, value)) = header.and_then(|h| h.split_once(':')) {
            headers
                .append(name, value.trim().as_bytes())
                .map_err(|e| Error::Denied(format!("header refused: {e:?}")))?;
        }
        send(url, Method::Get, headers, None)
    }

    pub fn post_json(url: &str, action: &str) -> Result<(u16, Vec<u8>), Error> {
        let headers = Fields::new();
        let _ = headers.append("content-type", b"application/x-amz-json-1.1");
        let _ = headers.append("x-amz-target", action.as_bytes());
        send(url, Method::Post, headers, Some(b"{}"))
    }

    fn send(
        url: &str,
        method: Method,
        headers: Fields,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), Error> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| Error::InvalidTarget(url.into()))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let req = OutgoingRequest::new(headers);
        let _ = req.set_method(&method);
        let scheme = if scheme == "https" {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let _ = req.set_scheme(Some(&scheme));
        req.set_authority(Some(authority))
            .map_err(|()| Error::InvalidTarget(format!("bad authority {authority:?}")))?;
        let _ = req.set_path_with_query(Some(path));
        let outgoing = req.body().expect("body taken once");
        let pending = outgoing_handler::handle(req, None).map_err(map)?;
        {
            let stream = outgoing.write().expect("stream taken once");
            if let Some(body) = body {
                let _ = stream.blocking_write_and_flush(body);
            }
        }
        OutgoingBody::finish(outgoing, None).map_err(map)?;
        pending.subscribe().block();
        let response = pending
            .get()
            .expect("ready after block")
            .expect("taken once")
            .map_err(map)?;
        let status = response.status();
        let incoming = response.consume().expect("body taken once");
        let stream = incoming.stream().expect("stream taken once");
        let mut data = Vec::new();
        while let Ok(chunk) = stream.blocking_read(64 << 10) {
            data.extend(chunk);
        }
        Ok((status, data))
    }

    fn map(e: ErrorCode) -> Error {
        match e {
            ErrorCode::HttpRequestDenied => Error::Denied("http request denied".into()),
            ErrorCode::DestinationIpProhibited => {
                Error::Denied("destination address prohibited".into())
            }
            other => Error::Io(format!("{other:?}")),
        }
    }
}

// Exported only in wasm: a native build (tests, clippy) cannot link symbol
// names that hold WIT package paths.
#[cfg(target_arch = "wasm32")]
export!(Probe);
