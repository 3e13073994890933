//! The outgoing-HTTP gate: every `wasi:http` request a transport makes.
//!
//! A request goes out only if the policy names its scheme, host and port. The
//! host resolves the name itself, refuses loopback, link-local and metadata
//! addresses unless the user named them, connects to the address it checked
//! (so DNS cannot be rebound between check and use), clamps the guest's
//! timeouts, caps the response body, and signs requests to AWS endpoints with
//! credentials the guest never sees.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use crate::aws::Signers;
use crate::policy::{HttpRule, Policy};

/// Headers a transport may not set: the host owns authentication.
const HOST_OWNED_HEADERS: &[&str] = &[
    "authorization",
    "x-amz-security-token",
    "x-amz-date",
    "x-amz-content-sha256",
    "proxy-authorization",
];

/// The hooks wasmtime-wasi-http calls for each outgoing request.
#[derive(Clone)]
pub struct HttpGate {
    policy: Arc<Policy>,
    signers: Signers,
    tls: Arc<rustls::ClientConfig>,
}

type IoFuture = Box<dyn Future<Output = Result<(), Error>> + Send>;
type SendFuture = Box<dyn Future<Output = Result<(Response<WasiBody>, IoFuture), Error>> + Send>;

impl HttpGate {
    /// A gate enforcing `policy`, signing with `signers`.
    pub fn new(policy: Arc<Policy>, signers: Signers) -> HttpGate {
        HttpGate {
            policy,
            signers,
            tls: tls_config(),
        }
    }

    async fn send(
        self,
        mut req: Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<(Response<WasiBody>, IoFuture), Error> {
        let dest = Destination::of(&req)?;
        let rule = self.check_allowed(&dest)?;
        let options = clamp(options, self.policy.http_max_timeout);
        if let Some(grant) = self.policy.aws_grant(&dest.scheme, &dest.host, dest.port) {
            req = self
                .signers
                .sign(grant, req, self.policy.http_max_request_bytes)
                .await?;
        }
        let addr = resolve(&dest, &rule).await?;
        tracing::debug!(%rule, %addr, method = %req.method(), path = req.uri().path(), "http request");
        let response = connect_and_send(&self.tls, &dest, addr, req, options).await?;
        let cap = self.policy.http_max_response_bytes;
        let response = response.map(|body| CappedBody::new(body, cap, options).boxed_unsync());
        Ok((response, Box::new(async { Ok(()) })))
    }

    fn check_allowed(&self, dest: &Destination) -> Result<HttpRule, Error> {
        let allowed = self
            .policy
            .http_rule(&dest.scheme, &dest.host, dest.port)
            .or_else(|| {
                self.policy
                    .aws_grant(&dest.scheme, &dest.host, dest.port)
                    .map(|g| &g.endpoint)
            });
        match allowed {
            Some(rule) => Ok(rule.clone()),
            None => {
                tracing::warn!(
                    scheme = %dest.scheme,
                    host = %dest.host,
                    port = dest.port,
                    "denied http request to an endpoint the policy does not allow"
                );
                Err(Error::HttpRequestDenied)
            }
        }
    }
}

impl WasiHttpHooks for HttpGate {
    fn is_forbidden_header(&mut self, name: &HeaderName) -> bool {
        HOST_OWNED_HEADERS.contains(&name.as_str())
            || wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
    }

    fn forbidden_header_filter(&mut self) -> wasmtime_wasi_http::ForbiddenHeaderFilter {
        Arc::new(|name| {
            HOST_OWNED_HEADERS.contains(&name.as_str())
                || wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
        })
    }

    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> SendFuture {
        drop(fut);
        Box::new(self.clone().send(request, options))
    }
}

/// Where a request goes, taken from its URI.
struct Destination {
    scheme: String,
    host: String,
    port: u16,
}

impl Destination {
    fn of<B>(req: &Request<B>) -> Result<Destination, Error> {
        let uri = req.uri();
        let authority = uri.authority().ok_or(Error::HttpRequestUriInvalid)?;
        if authority.as_str().contains('@') {
            tracing::warn!("denied http request whose URL carries a user name");
            return Err(Error::HttpRequestDenied);
        }
        let scheme = uri.scheme_str().ok_or(Error::HttpRequestUriInvalid)?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(Error::HttpRequestDenied),
        };
        let host = crate::policy::normalize_host(authority.host());
        Ok(Destination {
            port: authority.port_u16().unwrap_or(default_port),
            host,
            scheme,
        })
    }

    fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

fn clamp(options: Option<RequestOptions>, max: Duration) -> RequestOptions {
    let options = options.unwrap_or_default();
    let cap = |d: Option<Duration>| Some(d.map_or(max, |d| d.min(max)));
    RequestOptions {
        connect_timeout: cap(options.connect_timeout),
        first_byte_timeout: cap(options.first_byte_timeout),
        between_bytes_timeout: cap(options.between_bytes_timeout),
    }
}

/// Resolve the destination and pick the first address the rule allows.
async fn resolve(dest: &Destination, rule: &HttpRule) -> Result<SocketAddr, Error> {
    let addrs: Vec<SocketAddr> = match dest.bare_host().parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, dest.port)],
        Err(_) => tokio::net::lookup_host((dest.bare_host(), dest.port))
            .await
            .map_err(|e| Error::DnsError {
                rcode: Some(e.to_string()),
                info_code: None,
            })?
            .collect(),
    };
    let first = addrs.first().copied().ok_or(Error::DestinationNotFound)?;
    for addr in &addrs {
        if is_local(addr.ip()) && !rule.allows_local() {
            tracing::warn!(
                host = %dest.host,
                address = %addr.ip(),
                "denied http request: the name resolves to a local or metadata address"
            );
            return Err(Error::DestinationIpProhibited);
        }
    }
    Ok(first)
}

/// Whether an address is loopback, link-local, unspecified, multicast or an
/// instance-metadata address, including IPv4-mapped forms.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_local_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_local_v4(v4),
            None => is_local_v6(v6),
        },
    }
}

fn is_local_v4(ip: Ipv4Addr) -> bool {
    ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.octets()[0] == 0
}

fn is_local_v6(ip: Ipv6Addr) -> bool {
    const METADATA: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_unicast_link_local()
        || ip == METADATA
}

async fn connect_and_send(
    tls: &Arc<rustls::ClientConfig>,
    dest: &Destination,
    addr: SocketAddr,
    mut req: Request<WasiBody>,
    options: RequestOptions,
) -> Result<Response<hyper::body::Incoming>, Error> {
    let connect_timeout = options.connect_timeout.unwrap_or(Duration::from_secs(60));
    let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(Error::Connect)?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if dest.scheme == "https" {
        let name = server_name(dest)?;
        let connector = tokio_rustls::TlsConnector::from(tls.clone());
        let stream = tokio::time::timeout(connect_timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| Error::ConnectionTimeout)?
            .map_err(Error::Tls)?;
        Box::new(stream)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(Error::from)?;
    tokio::spawn(async move {
        if let Err(err) = conn.await {
            tracing::debug!(error = %err, "http connection ended with an error");
        }
    });
    // The request line carries only the path; the host goes in `Host`.
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    *req.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;
    let first_byte = options
        .first_byte_timeout
        .unwrap_or(Duration::from_secs(60));
    tokio::time::timeout(first_byte, sender.send_request(req))
        .await
        .map_err(|_| Error::ConnectionReadTimeout)?
        .map_err(Error::from)
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

fn server_name(dest: &Destination) -> Result<rustls::pki_types::ServerName<'static>, Error> {
    use rustls::pki_types::ServerName;
    if let Ok(ip) = dest.bare_host().parse::<IpAddr>() {
        return Ok(ServerName::from(ip));
    }
    ServerName::try_from(dest.host.clone()).map_err(|_| Error::HttpRequestUriInvalid)
}

/// The TLS client settings, built once per process and shared by every
/// session: the root store alone is some 15 KiB.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("the default protocol versions are supported")
                .with_root_certificates(roots)
                .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// A response body that fails once it exceeds the policy's byte cap or goes
/// quiet for longer than the between-bytes timeout.
struct CappedBody {
    inner: hyper::body::Incoming,
    remaining: u64,
    cap: u64,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl CappedBody {
    fn new(inner: hyper::body::Incoming, cap: u64, options: RequestOptions) -> CappedBody {
        let idle = options
            .between_bytes_timeout
            .unwrap_or(Duration::from_secs(60));
        CappedBody {
            inner,
            remaining: cap,
            cap,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > this.remaining {
                    tracing::warn!(
                        cap = this.cap,
                        "http response body exceeds the policy's cap"
                    );
                    return Poll::Ready(Some(Err(Error::HttpResponseBodySize(Some(this.cap)))));
                }
                this.remaining -= len;
                let deadline = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(Error::from(err)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_loopback_addresses_are_local() {
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "fe80::1",
        ] {
            assert!(is_local(ip.parse().unwrap()), "{ip} should be local");
        }
        for ip in ["10.0.0.5", "52.94.1.1", "2600:1f18::1"] {
            assert!(!is_local(ip.parse().unwrap()), "{ip} should not be local");
        }
    }

    #[test]
    fn guest_timeouts_are_clamped_to_the_policy() {
        let max = Duration::from_secs(5);
        let asked = RequestOptions {
            connect_timeout: Some(Duration::from_secs(600)),
            first_byte_timeout: Some(Duration::from_secs(1)),
            between_bytes_timeout: None,
        };
        let got = clamp(Some(asked), max);
        assert_eq!(got.connect_timeout, Some(max));
        assert_eq!(got.first_byte_timeout, Some(Duration::from_secs(1)));
        assert_eq!(got.between_bytes_timeout, Some(max));
    }
}
