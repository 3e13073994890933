//! The component's [`Host`]: wasi:http for SSM requests, WASI clocks and
//! randomness, and the railbox logging import.
//!
//! This is the only module that calls WASI; it is exercised end to end by the
//! host's tests against the SSM emulator, while everything above it is tested
//! natively with a fake [`Host`]. The host signs each request and decides
//! whether it may go out, so no credential ever passes through here.

use std::time::Duration;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

use crate::bindings::railbox::transport::logging;
use crate::error::Error;
use crate::http::{Host, Level, NetError, NetFailure, Reply};

/// Where SSM requests go, split for wasi:http.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `true` for https.
    pub https: bool,
    /// Host and port.
    pub authority: String,
    /// Path requests are posted to, `/` unless the endpoint has a prefix.
    pub path: String,
}

impl Endpoint {
    /// Split an endpoint URL such as `https://ssm.eu-west-1.amazonaws.com`.
    pub fn parse(url: &str) -> Result<Endpoint, Error> {
        let bad = || Error::InvalidTarget(format!("SSM endpoint {url:?} is not an http(s) URL"));
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return Err(bad()),
        };
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') || path.contains(['?', '#']) {
            return Err(bad());
        }
        let path = format!("{}/", path.trim_end_matches('/'));
        Ok(Endpoint {
            https,
            authority: authority.to_string(),
            path,
        })
    }
}

/// The real outside world of the component.
pub struct WasiHost {
    endpoint: Endpoint,
}

impl WasiHost {
    /// A host posting to `endpoint`.
    pub fn new(endpoint: Endpoint) -> WasiHost {
        WasiHost { endpoint }
    }

    fn request(&self, action: &str) -> Result<OutgoingRequest, NetError> {
        let headers = Fields::from_list(&[
            (
                "content-type".to_string(),
                b"application/x-amz-json-1.1".to_vec(),
            ),
            ("x-amz-target".to_string(), action.as_bytes().to_vec()),
        ])
        .map_err(|e| fatal(format!("building headers: {e:?}")))?;
        let request = OutgoingRequest::new(headers);
        let scheme = if self.endpoint.https {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let ok = request.set_method(&Method::Post).is_ok()
            && request.set_scheme(Some(&scheme)).is_ok()
            && request
                .set_authority(Some(&self.endpoint.authority))
                .is_ok()
            && request
                .set_path_with_query(Some(&self.endpoint.path))
                .is_ok();
        if !ok {
            return Err(fatal(format!(
                "endpoint {:?} is not a valid URL",
                self.endpoint
            )));
        }
        Ok(request)
    }
}

fn fatal(detail: String) -> NetError {
    NetError {
        kind: NetFailure::Fatal,
        detail,
    }
}

fn options() -> RequestOptions {
    let options = RequestOptions::new();
    let secs = |s: u64| Some(s * 1_000_000_000);
    // The host clamps these to its own maximum; a refusal leaves its default.
    let _ = options.set_connect_timeout(secs(10));
    let _ = options.set_first_byte_timeout(secs(30));
    let _ = options.set_between_bytes_timeout(secs(30));
    options
}

/// What a wasi:http error code says about the request.
pub fn classify(code: &ErrorCode) -> NetFailure {
    use ErrorCode as E;
    match code {
        E::DnsTimeout
        | E::DnsError(_)
        | E::DestinationNotFound
        | E::DestinationUnavailable
        | E::DestinationIpUnroutable
        | E::ConnectionRefused
        | E::ConnectionTimeout
        | E::ConnectionLimitReached
        | E::TlsProtocolError
        | E::TlsCertificateError
        | E::TlsAlertReceived(_) => NetFailure::NotSent,
        E::HttpRequestDenied | E::DestinationIpProhibited => NetFailure::Denied,
        E::HttpRequestLengthRequired
        | E::HttpRequestBodySize(_)
        | E::HttpRequestMethodInvalid
        | E::HttpRequestUriInvalid
        | E::HttpRequestUriTooLong
        | E::HttpRequestHeaderSectionSize(_)
        | E::HttpRequestHeaderSize(_)
        | E::HttpRequestTrailerSectionSize(_)
        | E::HttpRequestTrailerSize(_)
        | E::HttpResponseBodySize(_)
        | E::LoopDetected
        | E::ConfigurationError
        | E::InternalError(_) => NetFailure::Fatal,
        _ => NetFailure::Ambiguous,
    }
}

fn net(code: ErrorCode) -> NetError {
    NetError {
        kind: classify(&code),
        detail: format!("{code:?}"),
    }
}

impl Host for WasiHost {
    fn post(&self, action: &str, body: &[u8]) -> Result<Reply, NetError> {
        let request = self.request(action)?;
        let outgoing = request
            .body()
            .map_err(|()| fatal("request body taken twice".into()))?;
        let future = outgoing_handler::handle(request, Some(options())).map_err(net)?;
        if let Ok(stream) = outgoing.write() {
            // A failed write means the request failed; the response says how.
            for chunk in body.chunks(4096) {
                if stream.blocking_write_and_flush(chunk).is_err() {
                    break;
                }
            }
        }
        let _ = OutgoingBody::finish(outgoing, None);

        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(net(code)),
            Some(Err(())) | None => return Err(fatal("response already taken".into())),
        };
        let status = response.status();
        let error_type = response
            .headers()
            .get("x-amzn-errortype")
            .first()
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let incoming = response
            .consume()
            .map_err(|()| fatal("response body taken".into()))?;
        let mut data = Vec::new();
        {
            let stream = incoming
                .stream()
                .map_err(|()| fatal("response stream taken".into()))?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => data.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        return Err(NetError {
                            kind: NetFailure::Ambiguous,
                            detail: format!("reading the response: {}", e.to_debug_string()),
                        });
                    }
                }
            }
        }
        drop(IncomingBody::finish(incoming));
        Ok(Reply {
            status,
            error_type,
            body: data,
        })
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(wasip2::clocks::monotonic_clock::now())
    }

    fn wall_ms(&self) -> i64 {
        let now = wasip2::clocks::wall_clock::now();
        now.seconds as i64 * 1000 + i64::from(now.nanoseconds / 1_000_000)
    }

    fn sleep(&self, d: Duration) {
        if !d.is_zero() {
            let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            wasip2::clocks::monotonic_clock::subscribe_duration(ns).block();
        }
    }

    fn random(&self) -> u64 {
        wasip2::random::insecure::get_insecure_random_u64()
    }

    fn token(&self) -> String {
        wasip2::random::random::get_random_bytes(16)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Debug => logging::Level::Debug,
            Level::Info => logging::Level::Info,
            Level::Warn => logging::Level::Warn,
        };
        logging::log(level, message);
    }

    fn progress(&self, operation: &str, done: u64, total: u64) {
        logging::progress(operation, done, total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_split_into_scheme_authority_and_path() {
        let e = Endpoint::parse("https://ssm.eu-west-1.amazonaws.com").unwrap();
        assert_eq!(
            e,
            Endpoint {
                https: true,
                authority: "ssm.eu-west-1.amazonaws.com".into(),
                path: "/".into()
            }
        );
        let e = Endpoint::parse("http://127.0.0.1:4566/prefix/").unwrap();
        assert_eq!(
            (e.https, e.authority.as_str(), e.path.as_str()),
            (false, "127.0.0.1:4566", "/prefix/")
        );
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("http://user@x").is_err());
        assert!(Endpoint::parse("x").is_err());
    }

    #[test]
    fn error_codes_tell_whether_the_request_went_out() {
        assert_eq!(classify(&ErrorCode::ConnectionRefused), NetFailure::NotSent);
        assert_eq!(
            classify(&ErrorCode::ConnectionTerminated),
            NetFailure::Ambiguous
        );
        assert_eq!(
            classify(&ErrorCode::HttpResponseIncomplete),
            NetFailure::Ambiguous
        );
        assert_eq!(
            classify(&ErrorCode::ConnectionReadTimeout),
            NetFailure::Ambiguous
        );
        assert_eq!(classify(&ErrorCode::HttpRequestDenied), NetFailure::Denied);
        assert_eq!(classify(&ErrorCode::InternalError(None)), NetFailure::Fatal);
    }
}
