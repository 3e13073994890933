//! Starting, inspecting and stopping an emulator run.
//!
//! [`Emulator::start`] binds the listener, prepares a temporary directory with
//! one working directory per instance, and spawns the server on the current
//! tokio runtime. The [`EmulatorHandle`] it returns is how tests steer faults,
//! count calls and check that killed commands are really gone.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::Error;
use crate::config::{Config, Instance};
use crate::exec;
use crate::faults::{FaultState, Faults};
use crate::protocol::Operation;
use crate::server;
use crate::store::Store;

/// Starts emulator runs.
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// Binds `config.listen` and serves on the current tokio runtime until the
    /// handle is shut down or dropped.
    pub async fn start(config: Config) -> Result<EmulatorHandle, Error> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        raise_open_file_limit();
        let run_dir = make_run_dir()?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared::new(config, run_dir, shutdown));
        tracing::info!(%addr, instances = shared.config.instances.len(), "ssm emulator listening");
        let server = tokio::spawn(server::serve(listener, Arc::clone(&shared), shutdown_rx));
        Ok(EmulatorHandle {
            shared,
            addr,
            server: Some(server),
        })
    }
}

/// Lift this process's soft limit on open files to its hard limit: each
/// running command holds three pipes, and a thousand in flight need more
/// than the common default soft limit of 1,024 descriptors.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!(error = %e, "could not raise the open file limit");
        }
    }
}

/// A running emulator; dropping it stops the server and kills running commands.
#[derive(Debug)]
pub struct EmulatorHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Option<JoinHandle<()>>,
}

impl EmulatorHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint URL to give an SSM client, e.g. `http://127.0.0.1:41234`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The region requests must be signed for.
    pub fn region(&self) -> &str {
        &self.shared.config.region
    }

    /// The emulated instances.
    pub fn instances(&self) -> &[Instance] {
        &self.shared.config.instances
    }

    /// The fault settings in effect.
    pub fn faults(&self) -> Faults {
        self.shared.faults.get()
    }

    /// Replaces the fault settings; throttle buckets start full.
    pub fn set_faults(&self, faults: Faults) -> Result<(), Error> {
        faults.validate().map_err(Error::InvalidConfig)?;
        tracing::info!(?faults, "faults changed");
        self.shared.faults.set(faults);
        Ok(())
    }

    /// How many requests named `operation` (e.g. `"SendCommand"`) arrived, including
    /// rejected, throttled and failed ones, so retries count separately.
    pub fn calls(&self, operation: &str) -> u64 {
        self.shared.calls.get(operation)
    }

    /// Request counts of every operation that was called at least once.
    pub fn call_counts(&self) -> BTreeMap<String, u64> {
        self.shared.calls.snapshot()
    }

    /// How many script processes have been started (builtin answers start none).
    pub fn spawned_processes(&self) -> u64 {
        self.shared.spawned.load(Ordering::Relaxed)
    }

    /// Whether any process of this invocation's script is still alive, including
    /// background processes it started; false if it never started a process.
    pub fn processes_alive(&self, command_id: &str, instance_id: &str) -> bool {
        let Some(&instance) = self.shared.instance_index.get(instance_id) else {
            return false;
        };
        let pgid = {
            let store = self.shared.store();
            store
                .by_id(command_id)
                .and_then(|c| c.invocation(instance))
                .and_then(|i| i.pgid)
        };
        pgid.is_some_and(exec::group_alive)
    }

    /// The working directory of an instance's commands.
    pub fn instance_dir(&self, instance_id: &str) -> Option<PathBuf> {
        let &index = self.shared.instance_index.get(instance_id)?;
        Some(self.shared.instance_dir(index))
    }

    /// Stops serving, kills running commands and removes the temporary directory.
    pub async fn shutdown(mut self) {
        self.shared.begin_shutdown();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.shared.cleanup();
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.shared.begin_shutdown();
        if let Some(server) = self.server.take() {
            server.abort();
        }
        self.shared.cleanup();
    }
}

/// State shared by the server, the agent tasks and the handle.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) instance_index: HashMap<String, usize>,
    pub(crate) faults: FaultState,
    pub(crate) store: Mutex<Store>,
    pub(crate) calls: Calls,
    pub(crate) spawned: AtomicU64,
    run_dir: PathBuf,
    shutdown: watch::Sender<bool>,
    cleaned: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("run_dir", &self.run_dir)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn new(config: Config, run_dir: PathBuf, shutdown: watch::Sender<bool>) -> Shared {
        let instance_index = config
            .instances
            .iter()
            .enumerate()
            .map(|(i, inst)| (inst.id.clone(), i))
            .collect();
        Shared {
            faults: FaultState::new(config.faults.clone()),
            store: Mutex::new(Store::new(config.max_retained_invocations)),
            instance_index,
            calls: Calls::default(),
            spawned: AtomicU64::new(0),
            config,
            run_dir,
            shutdown,
            cleaned: AtomicBool::new(false),
        }
    }

    /// The command store; never held across an await.
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A receiver that turns true when the emulator stops.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// The working directory of instance `index`.
    pub(crate) fn instance_dir(&self, index: usize) -> PathBuf {
        self.run_dir
            .join("instances")
            .join(&self.config.instances[index].id)
    }

    /// The orchestration directory of `command_id` on instance `index`; the script
    /// is written below it and the whole directory goes when the script ends.
    pub(crate) fn command_dir(&self, index: usize, command_id: &str) -> PathBuf {
        self.run_dir
            .join("orchestration")
            .join(&self.config.instances[index].id)
            .join(command_id)
    }

    /// `seconds` of service time in real time, after the configured time scale.
    pub(crate) fn scaled(&self, seconds: u64) -> Duration {
        Duration::from_secs_f64(seconds as f64 * self.config.time_scale)
    }

    fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Kills running scripts and removes the run directory, once.
    fn cleanup(&self) {
        if self.cleaned.swap(true, Ordering::SeqCst) {
            return;
        }
        let groups = self.store().running_groups();
        groups.into_iter().for_each(exec::kill_group);
        if let Err(e) = std::fs::remove_dir_all(&self.run_dir) {
            tracing::warn!(dir = %self.run_dir.display(), error = %e, "could not remove run directory");
        }
        tracing::info!("ssm emulator stopped");
    }
}

/// Request counters per operation name.
#[derive(Default)]
pub(crate) struct Calls {
    known: [AtomicU64; Operation::ALL.len()],
    other: Mutex<BTreeMap<String, u64>>,
}

impl Calls {
    /// Counts one request for `name`.
    pub(crate) fn record(&self, name: &str) {
        match Operation::from_name(name) {
            Some(op) => {
                self.known[op as usize].fetch_add(1, Ordering::Relaxed);
            }
            None => {
                let mut other = self.other.lock().unwrap_or_else(|p| p.into_inner());
                // Unknown names come from clients; keep the map from growing without bound.
                if other.len() < 1000 || other.contains_key(name) {
                    *other.entry(name.to_owned()).or_default() += 1;
                }
            }
        }
    }

    fn get(&self, name: &str) -> u64 {
        match Operation::from_name(name) {
            Some(op) => self.known[op as usize].load(Ordering::Relaxed),
            None => {
                let other = self.other.lock().unwrap_or_else(|p| p.into_inner());
                other.get(name).copied().unwrap_or(0)
            }
        }
    }

    /// Non-zero counts by name.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        let mut all = self.other.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for op in Operation::ALL {
            let n = self.known[op as usize].load(Ordering::Relaxed);
            if n > 0 {
                all.insert(op.name().to_owned(), n);
            }
        }
        all
    }
}

fn make_run_dir() -> Result<PathBuf, Error> {
    let base = std::env::temp_dir();
    for _ in 0..16 {
        let path = base.join(format!(
            "ssm-emulator-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        match std::fs::create_dir(&path) {
            Ok(()) => {
                create_subdirs(&path)?;
                return Ok(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(Error::RunDir { path, source }),
        }
    }
    Err(Error::RunDir {
        path: base,
        source: std::io::ErrorKind::AlreadyExists.into(),
    })
}

fn create_subdirs(path: &Path) -> Result<(), Error> {
    for sub in ["instances", "orchestration"] {
        let dir = path.join(sub);
        std::fs::create_dir(&dir).map_err(|source| Error::RunDir { path: dir, source })?;
    }
    Ok(())
}
