//! The HTTP front: routes SSM requests through authentication, fault injection
//! and the operations, and serves the admin endpoints under `/_emulator/`.
//!
//! Every connection is its own task, so a malformed or stalled request only
//! ever affects the connection that sent it.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::emulator::Shared;
use crate::faults::Verdict;
use crate::ops;
use crate::protocol::{ApiError, CONTENT_TYPE, Operation, TARGET_PREFIX};
use crate::sigv4::Verifier;

/// Path prefix of the admin endpoints.
pub const ADMIN_PREFIX: &str = "/_emulator/";

/// How long a client may take to send headers or a body.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 64 * 1024;

type Body = Full<Bytes>;

/// Returned by the service to make hyper drop a connection unanswered.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped on purpose")]
struct DropConnection;

/// Accepts connections until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, Arc::clone(&shared), stop.clone()));
                }
                Err(e) => {
                    // Usually out of file descriptors; back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = stopped(&mut stop) => return,
        }
    }
}

async fn connection(stream: TcpStream, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    // A second descriptor for the socket, so a reset can set SO_LINGER after hyper owns it.
    let socket = stream.as_fd().try_clone_to_owned().ok().map(Arc::new);
    let service = service_fn(move |request| {
        let (shared, socket) = (Arc::clone(&shared), socket.clone());
        async move { route(shared, request, socket).await }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

async fn route(
    shared: Arc<Shared>,
    request: Request<Incoming>,
    socket: Option<Arc<OwnedFd>>,
) -> Result<Response<Body>, DropConnection> {
    if request.uri().path().starts_with(ADMIN_PREFIX) {
        return Ok(admin(&shared, request).await);
    }
    api(&shared, request, socket).await
}

async fn api(
    shared: &Arc<Shared>,
    request: Request<Incoming>,
    socket: Option<Arc<OwnedFd>>,
) -> Result<Response<Body>, DropConnection> {
    let (parts, body) = request.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok());
    let operation_name = target
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or("");
    if !operation_name.is_empty() {
        shared.calls.record(operation_name);
    }
    let body = match read_body(body, shared.config.max_body_bytes).await {
        BodyRead::Complete(body) => body,
        BodyRead::TooLarge => {
            let message = format!(
                "request body exceeds {} bytes",
                shared.config.max_body_bytes
            );
            let error = ApiError {
                status: 413,
                code: "RequestEntityTooLargeException",
                message,
            };
            return Ok(error_response(&error));
        }
        BodyRead::Failed => return Err(DropConnection),
    };
    let delay = shared.faults.get().response_delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }

    let outcome = answer(shared, &parts, &body, operation_name);
    match outcome {
        Ok(body) => Ok(json_response(StatusCode::OK, body)),
        Err(Answer::Error(error)) => {
            tracing::debug!(
                operation = operation_name,
                code = error.code,
                "request rejected"
            );
            Ok(error_response(&error))
        }
        Err(Answer::Reset) => {
            reset(socket.as_deref());
            Err(DropConnection)
        }
    }
}

/// Why a request got no normal answer.
enum Answer {
    Error(ApiError),
    Reset,
}

impl From<ApiError> for Answer {
    fn from(error: ApiError) -> Self {
        Answer::Error(error)
    }
}

fn answer(
    shared: &Arc<Shared>,
    parts: &http::request::Parts,
    body: &[u8],
    operation_name: &str,
) -> Result<Vec<u8>, Answer> {
    if parts.method != Method::POST || parts.uri.path() != "/" {
        return Err(ApiError::unknown_operation("the service only accepts POST /").into());
    }
    // Missing: the Content-Type is not checked. The service's answer to a
    // body sent as anything but application/x-amz-json-1.1 is not recorded
    // in what we know of it, so the emulator accepts any rather than invent
    // an error.
    let verifier = Verifier {
        region: &shared.config.region,
        credentials: &shared.config.credentials,
    };
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    verifier.verify(
        parts.method.as_str(),
        path_and_query,
        &parts.headers,
        body,
        SystemTime::now(),
    )?;

    let Some(operation) = Operation::from_name(operation_name) else {
        let shown = if operation_name.is_empty() {
            "(none)"
        } else {
            operation_name
        };
        return Err(
            ApiError::unknown_operation(format!("operation {shown} is not supported")).into(),
        );
    };
    match shared.faults.verdict(operation.name(), Instant::now()) {
        Verdict::Serve => {}
        Verdict::Throttle => return Err(ApiError::throttling().into()),
        Verdict::InternalError => {
            return Err(ApiError::internal("injected internal error").into());
        }
        Verdict::Reset => return Err(Answer::Reset),
    }
    Ok(ops::handle(shared, operation, body)?)
}

enum BodyRead {
    Complete(Bytes),
    TooLarge,
    Failed,
}

async fn read_body(body: Incoming, limit: usize) -> BodyRead {
    match tokio::time::timeout(READ_TIMEOUT, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => BodyRead::Complete(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => BodyRead::TooLarge,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "could not read request body");
            BodyRead::Failed
        }
        Err(_) => {
            tracing::debug!("request body not received in time");
            BodyRead::Failed
        }
    }
}

/// Makes the coming close of the socket send RST instead of FIN.
fn reset(socket: Option<&OwnedFd>) {
    let Some(socket) = socket else { return };
    if let Err(e) = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO)) {
        tracing::debug!(error = %e, "could not arm connection reset");
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    if let Ok(id) = header::HeaderValue::from_str(&ops::new_uuid()) {
        headers.insert("x-amzn-requestid", id);
    }
    response
}

fn error_response(error: &ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    json_response(status, error.body())
}

async fn admin(shared: &Shared, request: Request<Incoming>) -> Response<Body> {
    let path = &request.uri().path()[ADMIN_PREFIX.len()..];
    let reply = |status: StatusCode, value: serde_json::Value| {
        let mut response = json_response(status, serde_json::to_vec(&value).unwrap_or_default());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        response
    };
    let problem =
        |status, message: String| reply(status, serde_json::json!({ "message": message }));
    match (request.method().clone(), path) {
        (Method::GET, "faults") => reply(StatusCode::OK, faults_json(shared)),
        (Method::POST, "faults") => {
            let body = match read_body(request.into_body(), MAX_ADMIN_BODY).await {
                BodyRead::Complete(body) => body,
                _ => return problem(StatusCode::BAD_REQUEST, "could not read the body".into()),
            };
            let patch: serde_json::Value = match serde_json::from_slice(&body) {
                Ok(patch) => patch,
                Err(e) => return problem(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
            };
            match shared.faults.get().merged_with(&patch) {
                Ok(faults) => {
                    tracing::info!(?faults, "faults changed through the admin endpoint");
                    shared.faults.set(faults);
                    reply(StatusCode::OK, faults_json(shared))
                }
                Err(message) => problem(StatusCode::BAD_REQUEST, message),
            }
        }
        (Method::GET, "calls") => reply(
            StatusCode::OK,
            serde_json::to_value(shared.calls.snapshot()).unwrap_or_default(),
        ),
        _ => problem(
            StatusCode::NOT_FOUND,
            format!("no admin endpoint {ADMIN_PREFIX}{path}"),
        ),
    }
}

/// Resolves once the emulator is shutting down.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard returned by wait_for is not Send; drop it here.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

fn faults_json(shared: &Shared) -> serde_json::Value {
    serde_json::to_value(shared.faults.get()).unwrap_or_default()
}
