//! Assembling backend, store and manager from a data directory (shared by `serve` and `bench`).

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use hutch_manager::{Manager, ManagerConfig, Templates};
use hutch_runtime::{NativeBackend, NativeConfig};
use hutch_store::Store;
use sha2::{Digest, Sha256};

/// Host uid that root in a sandbox maps to.
pub const UID_BASE: u32 = 100_000;

/// Native sandboxes need root: namespaces, cgroups, overlayfs and nftables.
pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!("hutch needs root to create sandboxes (namespaces, cgroups, overlayfs); run it with sudo");
    }
    Ok(())
}

/// Creates the data directory (mode 0700) and returns its canonical path.
pub fn data_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    dir.canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))
}

/// A short stable name for this data directory, so two servers never share cgroups.
pub fn instance_name(data_dir: &Path) -> String {
    let digest = Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    hex::encode(&digest[..4])
}

/// The native backend for `data_dir`, spawning sandboxes through this very binary.
pub fn backend(data_dir: &Path) -> Result<Arc<NativeBackend>> {
    let cfg = NativeConfig {
        data_dir: data_dir.to_path_buf(),
        helper_exe: PathBuf::from("/proc/self/exe"),
        helper_args: vec!["__spawner".into()],
        uid_base: UID_BASE,
        net: Default::default(),
        instance: instance_name(data_dir),
    };
    Ok(Arc::new(
        NativeBackend::new(cfg).context("cannot set up the native sandbox backend")?,
    ))
}

/// The manager over the store in `data_dir` and `backend`.
pub fn manager(
    data_dir: &Path,
    backend: Arc<NativeBackend>,
    pool_size: usize,
) -> Result<Arc<Manager>> {
    let store = Store::open(&data_dir.join("hutch.db")).context("cannot open the database")?;
    let mut cfg = ManagerConfig::new(data_dir.to_path_buf());
    cfg.pool_size = pool_size;
    let templates = Templates::load(data_dir, UID_BASE, cfg.default_resources)
        .context("cannot prepare the built-in template")?;
    Ok(Manager::new(cfg, store, backend, templates))
}

/// The API key: given, or saved in the data dir, or generated and saved (0600) on first start.
/// Returns the key and whether it was just generated.
pub fn api_key(data_dir: &Path, given: Option<String>) -> Result<(String, bool)> {
    if let Some(k) = given.filter(|k| !k.is_empty()) {
        return Ok((k, false));
    }
    let path = data_dir.join("api_key");
    if let Ok(k) = std::fs::read_to_string(&path) {
        let k = k.trim().to_string();
        if !k.is_empty() {
            return Ok((k, false));
        }
    }
    let mut bytes = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
    let key = format!("hk_{}", hex::encode(bytes));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot save the API key to {}", path.display()))?;
    std::io::Write::write_all(&mut f, key.as_bytes())?;
    Ok((key, true))
}
