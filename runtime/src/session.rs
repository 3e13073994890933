//! A session: one transport instance connected to one target.
//!
//! Each session has its own `Store` with memory, table and instance limits.
//! Before every call into the guest the host resets its CPU budget (measured
//! in guest time only, so waiting on the network does not count) and wraps
//! the call in a wall-clock timeout, because epochs cannot interrupt a guest
//! blocked in a host call. A session whose guest trapped or timed out is
//! broken: later calls fail cleanly, and other sessions carry on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{ResourceAny, ResourceTable};
use wasmtime::{CallHook, Store, StoreContextMut, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::aws::Signers;
use crate::bindings::session_api::Guest;
use crate::bindings::types::{self, CommandOutput};
use crate::engine::Runtime;
use crate::guest_output::GuestOutput;
use crate::net::HttpGate;
use crate::policy::Policy;
use crate::target::{Resolved, Secrets};
use crate::transport::Transport;

/// Reports progress of a long operation: name, bytes done, bytes total.
pub type ProgressFn = Arc<dyn Fn(&str, u64, u64) + Send + Sync>;

/// The host state of one session, owned by its `Store`.
pub struct SessionState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    http: WasiHttpCtx,
    hooks: HttpGate,
    limits: StoreLimits,
    cpu: CpuMeter,
    pub(crate) policy: Arc<Policy>,
    pub(crate) secrets: Secrets,
    pub(crate) transport_name: String,
    pub(crate) progress: Option<ProgressFn>,
}

impl SessionState {
    /// State for a session of `transport_name` under `policy`.
    pub fn new(
        transport_name: &str,
        policy: Arc<Policy>,
        secrets: Secrets,
        signers: Signers,
        progress: Option<ProgressFn>,
    ) -> SessionState {
        let limits = &policy.limits;
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_bytes)
            .memories(limits.memories)
            .tables(limits.tables)
            .table_elements(limits.table_elements)
            .instances(limits.instances)
            .trap_on_grow_failure(true)
            .build();
        let wasi = WasiCtx::builder()
            .stdout(GuestOutput::new(transport_name, "stdout"))
            .stderr(GuestOutput::new(transport_name, "stderr"))
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(RESOURCE_CAPACITY);
        SessionState {
            wasi,
            table,
            http: WasiHttpCtx::new(),
            hooks: HttpGate::new(policy.clone(), signers),
            limits: store_limits,
            cpu: CpuMeter::new(limits.cpu_per_call),
            policy,
            secrets,
            transport_name: transport_name.to_string(),
            progress,
        }
    }
}

impl SessionState {
    /// The store limits, for `Store::limiter`.
    pub(crate) fn limiter(&mut self) -> &mut StoreLimits {
        &mut self.limits
    }
}

/// Most resources (streams, requests, connections) a session may hold.
const RESOURCE_CAPACITY: usize = 10_000;

impl WasiView for SessionState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for SessionState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Guest CPU time spent in the current call: time in wasm, not in host calls.
struct CpuMeter {
    budget: Duration,
    used: Duration,
    in_wasm_since: Option<Instant>,
}

impl CpuMeter {
    fn new(budget: Duration) -> CpuMeter {
        CpuMeter {
            budget,
            used: Duration::ZERO,
            in_wasm_since: None,
        }
    }

    fn reset(&mut self) {
        self.used = Duration::ZERO;
        self.in_wasm_since = None;
    }

    fn enter_wasm(&mut self) {
        self.in_wasm_since = Some(Instant::now());
    }

    fn leave_wasm(&mut self) {
        if let Some(since) = self.in_wasm_since.take() {
            self.used += since.elapsed();
        }
    }

    fn used_now(&self) -> Duration {
        self.used + self.in_wasm_since.map_or(Duration::ZERO, |s| s.elapsed())
    }
}

/// The guest used up its CPU budget for one call.
#[derive(Debug, thiserror::Error)]
#[error("exceeded its CPU limit of {0:?} for one call")]
pub struct CpuLimitExceeded(Duration);

fn call_hook(mut ctx: StoreContextMut<'_, SessionState>, hook: CallHook) -> wasmtime::Result<()> {
    let cpu = &mut ctx.data_mut().cpu;
    match hook {
        CallHook::CallingWasm | CallHook::ReturningFromHost => cpu.enter_wasm(),
        CallHook::ReturningFromWasm | CallHook::CallingHost => cpu.leave_wasm(),
    }
    Ok(())
}

fn epoch_reached(ctx: StoreContextMut<'_, SessionState>) -> wasmtime::Result<UpdateDeadline> {
    let cpu = &ctx.data().cpu;
    if cpu.used_now() > cpu.budget {
        return Err(CpuLimitExceeded(cpu.budget).into());
    }
    // Yield so that a busy guest does not hold an executor thread.
    Ok(UpdateDeadline::Yield(1))
}

/// Why a session call failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The transport reported an expected failure.
    #[error("{}", crate::bindings::describe_error(.0))]
    Transport(types::Error),
    /// The transport misbehaved: it trapped, panicked or ran out of a limit.
    #[error("transport {transport} failed: {reason}")]
    Failed {
        /// The transport's name.
        transport: String,
        /// What went wrong.
        reason: String,
    },
    /// The transport did not return within the wall-clock limit.
    #[error("transport {transport} did not answer within {limit:?}")]
    Unresponsive {
        /// The transport's name.
        transport: String,
        /// The limit that passed.
        limit: Duration,
    },
    /// The session was closed.
    #[error("the session is closed")]
    Closed,
    /// An earlier failure left the session unusable.
    #[error("the session is unusable after an earlier failure: {0}")]
    Broken(String),
}

impl SessionError {
    /// Whether the transport said it does not implement the operation.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, SessionError::Transport(types::Error::Unsupported(_)))
    }

    /// Whether this is the transport's own timeout error.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SessionError::Transport(types::Error::Timeout(_)))
    }
}

enum State {
    Open(ResourceAny),
    Closed,
    Broken(String),
}

/// An open session to one target.
pub struct Session {
    store: Store<SessionState>,
    api: Guest,
    state: State,
    transport: String,
    call_timeout: Duration,
    command_grace: Duration,
}

impl Session {
    /// Instantiate `transport` and open a session to the resolved target.
    pub async fn open(
        runtime: &Runtime,
        transport: &Transport,
        resolved: Resolved,
        policy: Policy,
        signers: Signers,
        progress: Option<ProgressFn>,
    ) -> Result<Session, SessionError> {
        let name = transport.name().to_string();
        let call_timeout = policy.limits.call_timeout;
        let command_grace = policy.limits.command_grace;
        let state = SessionState::new(&name, Arc::new(policy), resolved.secrets, signers, progress);
        let mut store = Store::new(runtime.engine(), state);
        store.limiter(|s| &mut s.limits);
        store.call_hook(call_hook);
        store.epoch_deadline_callback(epoch_reached);
        store.set_epoch_deadline(1);

        let failed = |reason: String| SessionError::Failed {
            transport: name.clone(),
            reason,
        };
        let instance =
            tokio::time::timeout(call_timeout, transport.pre().instantiate_async(&mut store))
                .await
                .map_err(|_| failed("instantiation timed out".into()))?
                .map_err(|e| failed(describe_trap(&e)))?;
        let api = instance.railbox_transport_session_api().clone();
        let mut session = Session {
            store,
            api,
            state: State::Closed,
            transport: name,
            call_timeout,
            command_grace,
        };
        session.arm();
        let target = resolved.target;
        let opened = tokio::time::timeout(
            call_timeout,
            session.api.session().call_open(&mut session.store, &target),
        )
        .await;
        let handle = session.settle(call_timeout, opened)?;
        session.state = State::Open(handle);
        Ok(session)
    }

    /// Run a shell command on the target.
    pub async fn run(
        &mut self,
        command: &str,
        timeout: Duration,
    ) -> Result<CommandOutput, SessionError> {
        let handle = self.live()?;
        self.arm();
        let wall = timeout + self.command_grace;
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let result = tokio::time::timeout(
            wall,
            self.api
                .session()
                .call_run(&mut self.store, handle, command, ms),
        )
        .await;
        self.settle(wall, result)
    }

    /// Write a file on the target with the transport's native transfer.
    pub async fn upload(
        &mut self,
        path: &str,
        data: &[u8],
        mode: Option<u32>,
    ) -> Result<(), SessionError> {
        let handle = self.live()?;
        self.arm();
        let wall = self.call_timeout;
        let result = tokio::time::timeout(
            wall,
            self.api
                .session()
                .call_upload(&mut self.store, handle, path, data, mode),
        )
        .await;
        self.settle(wall, result)
    }

    /// Read a file from the target with the transport's native transfer.
    pub async fn download(&mut self, path: &str) -> Result<Vec<u8>, SessionError> {
        let handle = self.live()?;
        self.arm();
        let wall = self.call_timeout;
        let result = tokio::time::timeout(
            wall,
            self.api
                .session()
                .call_download(&mut self.store, handle, path),
        )
        .await;
        self.settle(wall, result)
    }

    /// Close the session; later calls fail with [`SessionError::Closed`].
    pub async fn close(&mut self) -> Result<(), SessionError> {
        let handle = self.live()?;
        self.arm();
        let wall = self.call_timeout;
        let result =
            tokio::time::timeout(wall, self.api.session().call_close(&mut self.store, handle))
                .await;
        let closed = self.settle(wall, result);
        if let State::Open(handle) = std::mem::replace(&mut self.state, State::Closed) {
            let _ = handle.resource_drop_async(&mut self.store).await;
        }
        closed
    }

    /// The transport's name.
    pub fn transport(&self) -> &str {
        &self.transport
    }

    fn live(&self) -> Result<ResourceAny, SessionError> {
        match &self.state {
            State::Open(handle) => Ok(*handle),
            State::Closed => Err(SessionError::Closed),
            State::Broken(why) => Err(SessionError::Broken(why.clone())),
        }
    }

    /// Reset the CPU budget and epoch deadline before a call.
    fn arm(&mut self) {
        self.store.data_mut().cpu.reset();
        self.store.set_epoch_deadline(1);
    }

    /// Turn a guarded call's outcome into a result, breaking the session on
    /// traps and timeouts.
    fn settle<R>(
        &mut self,
        limit: Duration,
        outcome: Result<wasmtime::Result<Result<R, types::Error>>, tokio::time::error::Elapsed>,
    ) -> Result<R, SessionError> {
        let err = match outcome {
            Ok(Ok(Ok(value))) => return Ok(value),
            Ok(Ok(Err(error))) => return Err(SessionError::Transport(error)),
            Ok(Err(trap)) => SessionError::Failed {
                transport: self.transport.clone(),
                reason: describe_trap(&trap),
            },
            Err(_) => SessionError::Unresponsive {
                transport: self.transport.clone(),
                limit,
            },
        };
        tracing::debug!(transport = %self.transport, error = %err, "session broken");
        self.state = State::Broken(err.to_string());
        Err(err)
    }
}

/// Say in one line why a guest call trapped.
pub fn describe_trap(err: &wasmtime::Error) -> String {
    if let Some(cpu) = err.downcast_ref::<CpuLimitExceeded>() {
        return cpu.to_string();
    }
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::StackOverflow => "overflowed its stack".into(),
            wasmtime::Trap::UnreachableCodeReached => "panicked or aborted".into(),
            wasmtime::Trap::Interrupt => "was interrupted".into(),
            wasmtime::Trap::MemoryOutOfBounds => "accessed memory out of bounds".into(),
            other => format!("trapped: {other}"),
        };
    }
    let text = format!("{err:#}");
    if text.contains("forcing trap when growing memory") {
        return "exceeded its memory limit".into();
    }
    if text.contains("forcing trap when growing table") {
        return "exceeded its table limit".into();
    }
    text.lines().next().unwrap_or("trapped").to_string()
}
