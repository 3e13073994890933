//! The on-disk cache of compiled transports.
//!
//! Compiling a component takes tens of milliseconds; loading its compiled
//! code takes microseconds. Entries are keyed by the wasm's sha256 and the
//! engine's compatibility hash, and live only in a private directory (mode
//! 0700, owned by the user) that railbox itself writes: loading compiled code
//! from anywhere else would let its author run native code in the host.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt,
};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Most entries kept; the least recently written are removed beyond it.
const MAX_ENTRIES: usize = 64;

/// The default cache directory: `RAILBOX_CACHE_DIR`, else the user's cache
/// directory joined with `railbox`.
pub fn default_dir() -> Option<PathBuf> {
    match std::env::var_os("RAILBOX_CACHE_DIR") {
        Some(dir) if dir.is_empty() => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => dirs::cache_dir().map(|d| d.join("railbox")),
    }
}

/// A private directory of compiled components.
pub struct CodeCache {
    dir: PathBuf,
    compat: String,
}

impl CodeCache {
    /// Open (creating if needed) the cache directory, refusing one that other
    /// users could write to.
    pub fn open(dir: PathBuf, engine: &Engine) -> Result<CodeCache> {
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("failed to create cache directory {}", dir.display()))?;
        }
        check_private_dir(&dir)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(CodeCache {
            dir,
            compat: format!("{:016x}", hasher.finish()),
        })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds (or would hold) the code for a wasm digest.
    pub fn entry_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.compat))
    }

    /// Load cached code for a wasm digest, if present and trustworthy.
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.entry_path(digest);
        let meta = fs::symlink_metadata(&path).ok()?;
        if !meta.is_file() || meta.uid() != current_uid() || meta.mode() & 0o022 != 0 {
            tracing::warn!(path = %path.display(), "ignoring a cache entry railbox did not write");
            return None;
        }
        // SAFETY: the entry was written by `store` below into a directory that
        // only this user can write (checked in `open`), under a name that
        // binds it to this engine's compatibility hash; it is regular, owned
        // by this user and not writable by others (checked above).
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "discarding a bad cache entry");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }

    /// Store compiled code for a wasm digest; failures are logged, not fatal.
    pub fn store(&self, digest: &str, component: &Component) {
        if let Err(err) = self.try_store(digest, component) {
            tracing::warn!(error = %err, "could not write the compiled-code cache");
        }
    }

    fn try_store(&self, digest: &str, component: &Component) -> Result<()> {
        let bytes = component.serialize().map_err(anyhow::Error::from)?;
        let path = self.entry_path(digest);
        let tmp = self
            .dir
            .join(format!(".{digest}.{}.tmp", std::process::id()));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("failed to create {}", tmp.display()))?;
        let written = file.write_all(&bytes).and_then(|()| file.sync_all());
        if let Err(err) = written.and_then(|()| fs::rename(&tmp, &path)) {
            let _ = fs::remove_file(&tmp);
            return Err(err.into());
        }
        self.prune();
        Ok(())
    }

    /// Remove the oldest entries beyond [`MAX_ENTRIES`].
    fn prune(&self) {
        let Ok(read) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<_> = read
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if entries.len() <= MAX_ENTRIES {
            return;
        }
        entries.sort();
        for (_, path) in &entries[..entries.len() - MAX_ENTRIES] {
            let _ = fs::remove_file(path);
        }
    }
}

/// Make sure `dir` is a directory owned by this user that nobody else can
/// write; tighten its mode if this user owns it.
fn check_private_dir(dir: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(dir)
        .with_context(|| format!("cannot read cache directory {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("cache path {} is not a directory", dir.display());
    }
    if meta.uid() != current_uid() {
        bail!("cache directory {} belongs to another user", dir.display());
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make cache directory {} private", dir.display()))?;
    }
    Ok(())
}

fn current_uid() -> u32 {
    rustix::process::getuid().as_raw()
}
