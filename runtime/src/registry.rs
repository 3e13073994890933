//! Finding transports: built-in ones, and installed ones loaded from files.
//!
//! A target URL's scheme picks the transport. Candidates are searched in
//! order: a file given with `--transport`, the directories in
//! `RAILBOX_TRANSPORT_PATH`, the user's data directory, then the transports
//! built into the binary. The first that serves the scheme wins.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::Runtime;
use crate::transport::{LoadError, Source, Transport};

include!(concat!(env!("OUT_DIR"), "/builtin.rs"));

/// Why no transport could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No transport serves the scheme.
    #[error("unknown scheme {scheme:?}; known schemes: {known}")]
    UnknownScheme {
        /// The scheme asked for.
        scheme: String,
        /// Schemes that are served.
        known: String,
    },
    /// A transport file cannot be read.
    #[error("cannot read transport {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A transport cannot be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// A transport that could be loaded, not yet compiled.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Where it comes from.
    pub source: Source,
    /// Its name in messages.
    pub label: String,
    bytes: Option<&'static [u8]>,
}

impl Candidate {
    /// A transport file.
    pub fn file(path: &Path) -> Candidate {
        Candidate {
            source: Source::File(path.to_path_buf()),
            label: path.display().to_string(),
            bytes: None,
        }
    }

    /// Load and describe the candidate.
    pub async fn load(&self, runtime: &Arc<Runtime>) -> Result<Transport, RegistryError> {
        match (self.bytes, &self.source) {
            (Some(bytes), _) => {
                Ok(Transport::load(runtime, bytes, self.source.clone(), &self.label).await?)
            }
            (None, Source::File(path)) => {
                let bytes = std::fs::read(path).map_err(|e| RegistryError::Read {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                Ok(Transport::load(runtime, &bytes, self.source.clone(), &self.label).await?)
            }
            (None, Source::Builtin) => unreachable!("built-in candidates carry their bytes"),
        }
    }
}

/// The candidates in search order.
pub fn candidates(explicit: &[PathBuf]) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = explicit.iter().map(|p| Candidate::file(p)).collect();
    for dir in search_dirs() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
            .collect();
        files.sort();
        out.extend(files.iter().map(|p| Candidate::file(p)));
    }
    out.extend(BUILTIN.iter().map(|(file, bytes)| Candidate {
        source: Source::Builtin,
        label: builtin_label(file),
        bytes: Some(bytes),
    }));
    out
}

fn builtin_label(file: &str) -> String {
    let stem = file.trim_end_matches(".wasm");
    let name = stem.strip_prefix("railbox_transport_").unwrap_or(stem);
    format!("built-in {name}")
}

/// Directories searched for installed transports.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("RAILBOX_TRANSPORT_PATH")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(data) = dirs::data_dir() {
        dirs.push(data.join("railbox").join("transports"));
    }
    dirs
}

/// Load candidates in order until one serves `scheme`.
pub async fn find(
    runtime: &Arc<Runtime>,
    candidates: &[Candidate],
    scheme: &str,
) -> Result<Transport, RegistryError> {
    let mut known = Vec::new();
    for candidate in candidates {
        let transport = candidate.load(runtime).await?;
        if transport.description().schemes.iter().any(|s| s == scheme) {
            return Ok(transport);
        }
        known.extend(transport.description().schemes.iter().cloned());
    }
    known.sort();
    known.dedup();
    Err(RegistryError::UnknownScheme {
        scheme: scheme.to_string(),
        known: if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        },
    })
}
