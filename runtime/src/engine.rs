//! The process-wide wasmtime engine, linker and epoch ticker.
//!
//! A process creates one [`Runtime`]; every transport is compiled by its
//! engine and instantiated through its linker, which is built once. The
//! ticker thread advances the engine's epoch so that guests stuck in a loop
//! are interrupted.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, Result};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::cache::CodeCache;
use crate::limits::Limits;
use crate::session::SessionState;

/// How often the epoch advances; the granularity of CPU limits.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How instances are allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocation {
    /// Allocate each instance's memory when it is created; best for a CLI
    /// that runs one session.
    OnDemand,
    /// Pre-reserve slots for this many live sessions; best for processes
    /// that hold many sessions and instantiate often. Each session's memory
    /// is capped at 64 MiB, the size of one slot.
    Pooling {
        /// Maximum number of sessions alive at once.
        sessions: u32,
    },
}

/// Settings for a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Instance allocation strategy.
    pub allocation: Allocation,
    /// Where compiled code is cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Resource limits applied to every session.
    pub limits: Limits,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            allocation: Allocation::OnDemand,
            cache_dir: crate::cache::default_dir(),
            limits: Limits::default(),
        }
    }
}

/// The engine, linker and code cache shared by every transport and session.
pub struct Runtime {
    engine: Engine,
    linker: Linker<SessionState>,
    cache: Option<CodeCache>,
    limits: Limits,
    ticker: Ticker,
}

impl Runtime {
    /// Build the engine and linker and start the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Arc<Runtime>> {
        let engine = Engine::new(&engine_config(&config)).map_err(anyhow::Error::from)?;
        let linker = crate::linker::build(&engine)
            .map_err(anyhow::Error::from)
            .context("failed to build the host linker")?;
        let cache = match config.cache_dir {
            Some(dir) => Some(CodeCache::open(dir, &engine)?),
            None => None,
        };
        let ticker = Ticker::start(&engine);
        Ok(Arc::new(Runtime {
            engine,
            linker,
            cache,
            limits: config.limits,
            ticker,
        }))
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker holding every capability the host provides.
    pub fn linker(&self) -> &Linker<SessionState> {
        &self.linker
    }

    /// The compiled-code cache, if enabled.
    pub fn cache(&self) -> Option<&CodeCache> {
        self.cache.as_ref()
    }

    /// Limits applied to each session.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker.stop();
    }
}

fn engine_config(config: &RuntimeConfig) -> Config {
    let mut c = Config::new();
    c.epoch_interruption(true);
    c.wasm_component_model(true);
    c.max_wasm_stack(config.limits.wasm_stack_bytes);
    c.async_stack_size(config.limits.wasm_stack_bytes + HOST_STACK_BYTES);
    c.async_stack_zeroing(true);
    c.memory_init_cow(true);
    // Code is cached per engine; these settings must not depend on the
    // allocation strategy so that both share one cache entry.
    c.memory_reservation(MEMORY_RESERVATION);
    c.memory_guard_size(MEMORY_GUARD);
    c.memory_reservation_for_growth(0);
    if let Allocation::Pooling { sessions } = config.allocation {
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(
            sessions,
            &config.limits,
        )));
    }
    c
}

/// Stack left for host functions beyond the guest's own stack.
const HOST_STACK_BYTES: usize = 1 << 20;

/// Virtual memory reserved per linear memory. Small reservations keep
/// thousands of live sessions within the address space; guests that grow
/// past it are moved, not refused.
const MEMORY_RESERVATION: u64 = 64 << 20;

/// Guard region after each linear memory.
const MEMORY_GUARD: u64 = 64 << 10;

fn pooling_config(sessions: u32, limits: &Limits) -> PoolingAllocationConfig {
    // A Rust component has a handful of core instances, memories and tables.
    let mut p = PoolingAllocationConfig::new();
    p.total_component_instances(sessions);
    p.total_core_instances(sessions.saturating_mul(limits.instances as u32));
    p.total_memories(sessions.saturating_mul(limits.memories as u32));
    p.total_tables(sessions.saturating_mul(limits.tables as u32));
    p.total_stacks(sessions);
    // A pool slot cannot be larger than the reservation compiled code
    // assumes, so pooled sessions get at most that much memory.
    p.max_memory_size(limits.memory_bytes.min(MEMORY_RESERVATION as usize));
    p.max_core_instances_per_component(limits.instances as u32);
    p.max_memories_per_component(limits.memories as u32);
    p.max_tables_per_component(limits.tables as u32);
    p.table_elements(limits.table_elements);
    p
}

/// A thread that advances the engine's epoch every [`EPOCH_TICK`].
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: &Engine) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("railbox-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawning the epoch thread");
        Ticker {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
