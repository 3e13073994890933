//! Loading a transport: checking the wasm, compiling or fetching cached code,
//! checking the contract version and imports, and reading its description.
//!
//! Everything that can be checked before a session opens is checked here, so
//! a bad component is refused with a message that names the problem: not
//! wasm, not a component, an unsupported contract version, or an import the
//! host does not provide.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::aws::Signers;
use crate::bindings::types::Description;
use crate::bindings::{self, TransportPre};
use crate::engine::Runtime;
use crate::policy::Policy;
use crate::session::{SessionState, describe_trap};

/// Where a transport came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built into the railbox binary.
    Builtin,
    /// Loaded from a file.
    File(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Builtin => f.write_str("built-in"),
            Source::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A component that cannot be used as a transport.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not WebAssembly.
    #[error("{0} is not a WebAssembly file")]
    NotWasm(String),
    /// The bytes are a core module, not a component.
    #[error("{0} is a core WebAssembly module, not a component; build it for wasm32-wasip2")]
    NotComponent(String),
    /// The component does not compile.
    #[error("{source_name} is not a valid component: {reason}")]
    Invalid {
        /// The component.
        source_name: String,
        /// The compiler's message.
        reason: String,
    },
    /// The component does not export the transport interface.
    #[error("{0} is not a railbox transport: it does not export {iface}", iface = bindings::SESSION_INTERFACE)]
    NotTransport(String),
    /// The component was built for a contract version the host lacks.
    #[error("{source_name} is built for {found}; this railbox supports {supported}")]
    Version {
        /// The component.
        source_name: String,
        /// The version it exports.
        found: String,
        /// The versions the host supports.
        supported: String,
    },
    /// The component imports something the host does not provide.
    #[error("{source_name} imports {import}, which railbox does not provide")]
    MissingImport {
        /// The component.
        source_name: String,
        /// The import.
        import: String,
    },
    /// The component's description is unusable.
    #[error("{source_name} describes itself badly: {reason}")]
    BadDescription {
        /// The component.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// The component failed while describing itself.
    #[error("{source_name} failed while describing itself: {reason}")]
    Trapped {
        /// The component.
        source_name: String,
        /// What happened.
        reason: String,
    },
}

/// A loaded transport, ready to open sessions; clones share its compiled code.
#[derive(Clone)]
pub struct Transport {
    description: Description,
    digest: String,
    source: Source,
    contract: String,
    component: Component,
    pre: TransportPre<SessionState>,
}

impl Transport {
    /// Load a transport from its wasm bytes, using the code cache.
    pub async fn load(
        runtime: &Arc<Runtime>,
        wasm: &[u8],
        source: Source,
        label: &str,
    ) -> Result<Transport, LoadError> {
        check_header(wasm, label)?;
        let digest = hex::encode(Sha256::digest(wasm));
        let component = compile(runtime, wasm, &digest, label)?;
        let contract = contract_version(runtime, &component, label)?;
        check_imports(runtime, &component, label)?;
        let pre = runtime
            .linker()
            .instantiate_pre(&component)
            .and_then(TransportPre::new)
            .map_err(|e| LoadError::MissingImport {
                source_name: label.to_string(),
                import: format!("{e:#}"),
            })?;
        let description = describe(runtime, &pre, label).await?;
        crate::describe::validate(&description).map_err(|reason| LoadError::BadDescription {
            source_name: label.to_string(),
            reason,
        })?;
        Ok(Transport {
            description,
            digest,
            source,
            contract,
            component,
            pre,
        })
    }

    /// The transport's name.
    pub fn name(&self) -> &str {
        &self.description.name
    }

    /// What the transport says about itself.
    pub fn description(&self) -> &Description {
        &self.description
    }

    /// The sha256 of its wasm, in hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Where it came from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The contract version it was built for.
    pub fn contract(&self) -> &str {
        &self.contract
    }

    /// The compiled component.
    pub fn component(&self) -> &Component {
        &self.component
    }

    /// The pre-instantiated component.
    pub fn pre(&self) -> &TransportPre<SessionState> {
        &self.pre
    }
}

fn check_header(wasm: &[u8], label: &str) -> Result<(), LoadError> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(LoadError::NotWasm(label.to_string()));
    }
    // Core modules have layer 0 in bytes 6..8; components have layer 1.
    if wasm[6..8] == [0, 0] {
        return Err(LoadError::NotComponent(label.to_string()));
    }
    Ok(())
}

fn compile(
    runtime: &Runtime,
    wasm: &[u8],
    digest: &str,
    label: &str,
) -> Result<Component, LoadError> {
    if let Some(component) = runtime
        .cache()
        .and_then(|c| c.load(runtime.engine(), digest))
    {
        tracing::debug!(transport = label, "loaded compiled code from the cache");
        return Ok(component);
    }
    let component = Component::new(runtime.engine(), wasm).map_err(|e| LoadError::Invalid {
        source_name: label.to_string(),
        reason: format!("{e:#}")
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
    })?;
    if let Some(cache) = runtime.cache() {
        cache.store(digest, &component);
    }
    Ok(component)
}

/// The contract version a component's session interface export carries.
fn contract_version(
    runtime: &Runtime,
    component: &Component,
    label: &str,
) -> Result<String, LoadError> {
    let ty = component.component_type();
    let prefix = format!("{}@", bindings::SESSION_INTERFACE);
    let found = ty
        .exports(runtime.engine())
        .find_map(|(name, _)| name.strip_prefix(&prefix).map(str::to_string))
        .ok_or_else(|| LoadError::NotTransport(label.to_string()))?;
    if bindings::SUPPORTED_VERSIONS.contains(&found.as_str()) {
        Ok(found)
    } else {
        Err(LoadError::Version {
            source_name: label.to_string(),
            found: format!("{}@{found}", bindings::PACKAGE),
            supported: bindings::SUPPORTED_VERSIONS
                .iter()
                .map(|v| format!("{}@{v}", bindings::PACKAGE))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// Refuse a component importing an interface the linker lacks, naming it.
fn check_imports(runtime: &Runtime, component: &Component, label: &str) -> Result<(), LoadError> {
    for (name, item) in component.component_type().imports(runtime.engine()) {
        if !matches!(item.ty, ComponentItem::ComponentInstance(_)) || !is_provided(name) {
            return Err(LoadError::MissingImport {
                source_name: label.to_string(),
                import: name.to_string(),
            });
        }
    }
    Ok(())
}

/// Whether the host provides an import, by its name without version.
pub fn is_provided(import: &str) -> bool {
    let unversioned = import.split('@').next().unwrap_or(import);
    crate::linker::PROVIDED.contains(&unversioned)
}

async fn describe(
    runtime: &Arc<Runtime>,
    pre: &TransportPre<SessionState>,
    label: &str,
) -> Result<Description, LoadError> {
    let trapped = |reason: String| LoadError::Trapped {
        source_name: label.to_string(),
        reason,
    };
    let policy = Arc::new(Policy::deny_all());
    let state = SessionState::new(label, policy, Default::default(), Signers::default(), None);
    let mut store = wasmtime::Store::new(runtime.engine(), state);
    store.limiter(|s| s.limiter());
    store.set_epoch_deadline(DESCRIBE_TICKS);
    let timeout = runtime.limits().call_timeout.min(DESCRIBE_TIMEOUT);
    let call = async {
        let instance = pre.instantiate_async(&mut store).await?;
        let api = instance.railbox_transport_session_api();
        api.call_describe(&mut store).await
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(description)) => Ok(description),
        Ok(Err(e)) => Err(trapped(describe_trap(&e))),
        Err(_) => Err(trapped(format!("no answer within {timeout:?}"))),
    }
}

/// Epoch ticks a transport may spend describing itself.
const DESCRIBE_TICKS: u64 = 500;

/// Wall-clock time a transport may spend describing itself.
const DESCRIBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
