//! From a target URL to an open session: pick the transport, resolve the
//! target, build the policy, open.
//!
//! This is the path every command takes; tools embedding railbox as a library
//! take it too.

use std::path::PathBuf;
use std::sync::Arc;

use aws_credential_types::provider::SharedCredentialsProvider;
use url::Url;

use crate::aws::Signers;
use crate::engine::Runtime;
use crate::policy::{Policy, PolicyError, PolicyFile};
use crate::registry::{self, RegistryError};
use crate::session::{ProgressFn, Session, SessionError};
use crate::target::{self, Resolved, TargetError};
use crate::transport::Transport;

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL or an option is unusable.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// No transport serves the scheme, or one failed to load.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The policy cannot be built.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The transport failed to open the session.
    #[error(transparent)]
    Session(#[from] SessionError),
}

/// What to connect to and under which rules.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The target URL as typed.
    pub url: String,
    /// Extra options, `name=value`, as if in the URL's query.
    pub options: Vec<(String, String)>,
    /// Transport files to try before the installed and built-in ones.
    pub transports: Vec<PathBuf>,
    /// A policy file applied on top of the defaults.
    pub policy: Option<PolicyFile>,
    /// Credentials to sign AWS requests with, instead of the standard chain;
    /// for tools that hold their own.
    pub aws_credentials: Option<SharedCredentialsProvider>,
    /// Values for secret options that the URL and `options` leave unset,
    /// used only if the transport declares that secret: a way to keep a
    /// password off the command line.
    pub fallback_secrets: Vec<(String, String)>,
}

/// A transport with its resolved target and effective policy, not yet open;
/// clone it to open many sessions to one target.
#[derive(Clone)]
pub struct Prepared {
    /// The transport serving the URL's scheme.
    pub transport: Transport,
    /// The target, with options coerced.
    pub resolved: Resolved,
    /// The effective policy.
    pub policy: Policy,
    signers: Signers,
}

impl Prepared {
    /// Open the session.
    pub async fn open(
        self,
        runtime: &Arc<Runtime>,
        progress: Option<ProgressFn>,
    ) -> Result<(Transport, Session), ConnectError> {
        let session = Session::open(
            runtime,
            &self.transport,
            self.resolved,
            self.policy,
            self.signers,
            progress,
        )
        .await?;
        Ok((self.transport, session))
    }
}

/// Pick the transport for a URL and work out its target and policy.
pub async fn prepare(runtime: &Arc<Runtime>, request: &Request) -> Result<Prepared, ConnectError> {
    let url = target::parse_url(&request.url)?;
    let candidates = registry::candidates(&request.transports);
    let transport = registry::find(runtime, &candidates, url.scheme()).await?;
    prepare_with(runtime, transport, &url, request).await
}

/// Work out the target and policy for a transport already chosen.
pub async fn prepare_with(
    runtime: &Arc<Runtime>,
    transport: Transport,
    url: &Url,
    request: &Request,
) -> Result<Prepared, ConnectError> {
    let mut options = request.options.clone();
    for (name, value) in &request.fallback_secrets {
        let declared = transport
            .description()
            .options
            .iter()
            .any(|o| o.secret && o.name == *name);
        let given = options.iter().any(|(n, _)| n == name)
            || url.query_pairs().any(|(n, _)| n == name.as_str())
            || (name == "password" && url.password().is_some());
        if declared && !given {
            options.push((name.clone(), value.clone()));
        }
    }
    let resolved = target::resolve(url, transport.description(), &options)?;
    let mut policy = crate::describe::default_policy(transport.description(), &resolved.target)?;
    policy.limits = runtime.limits().clone();
    let mut signers = Signers::default();
    if !transport.description().needs.aws.is_empty() {
        let setup = crate::aws::resolve(
            &transport.description().needs.aws,
            &resolved.target,
            request.aws_credentials.clone(),
        )
        .await?;
        policy.aws = setup.grants;
        signers = setup.signers;
    }
    if let Some(file) = &request.policy {
        policy.apply(file)?;
    }
    tracing::debug!(transport = transport.name(), ?policy, "effective policy");
    Ok(Prepared {
        transport,
        resolved,
        policy,
        signers,
    })
}

/// Prepare and open a session in one step.
pub async fn connect(
    runtime: &Arc<Runtime>,
    request: &Request,
    progress: Option<ProgressFn>,
) -> Result<(Transport, Session), ConnectError> {
    prepare(runtime, request)
        .await?
        .open(runtime, progress)
        .await
}
