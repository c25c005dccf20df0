//! The sandbox's custom environment variables: create-time `env_vars`, changed by the `/env` API,
//! seen by every later execution, command, background job and terminal.
//!
//! Changes are persisted inside the sandbox ([`ENV_FILE`], replaced atomically) and loaded when
//! the agent starts, where they take the place of the create-time variables: a sandbox keeps its
//! variables across an agent restart and a stop/start, and a variable the client deleted stays
//! deleted. Every change is written to disk before it is made visible, so what processes see is
//! always what a restarted agent will load.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use hutch_types::AgentBoot;
use serde::{Deserialize, Serialize};

/// Where the variables are kept inside the sandbox.
pub const ENV_FILE: &str = "/var/lib/hutch-agent/env.json";

/// Longest `NAME=value` string the kernel passes to a new program (`MAX_ARG_STRLEN`, 32 pages,
/// counting the NUL). A longer one would make every later `execve` fail with `E2BIG`.
pub const MAX_ENTRY_LEN: usize = 128 * 1024 - 1;

/// Most bytes all custom variables may take together, well under the kernel's limit for
/// arguments plus environment, so commands keep room for their arguments.
pub const MAX_TOTAL_LEN: usize = 1024 * 1024;

/// Why a change to the variables was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A name that a shell could not use (`[A-Za-z_][A-Za-z0-9_]*` is required).
    #[error("invalid environment variable name {0:?}: names must match [A-Za-z_][A-Za-z0-9_]*")]
    InvalidName(String),
    /// A value that cannot be passed to a program.
    #[error("invalid value for environment variable {name}: {reason}")]
    InvalidValue {
        /// The variable.
        name: String,
        /// What is wrong with the value.
        reason: &'static str,
    },
    /// All variables together would be too big to start programs with.
    #[error(
        "environment variables would take {0} bytes, more than the {MAX_TOTAL_LEN}-byte limit"
    )]
    TooLarge(usize),
    /// The variables could not be saved; nothing was changed.
    #[error("cannot save the environment variables to {path}: {source}")]
    Persist {
        /// The file.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
}

/// The file's contents.
#[derive(Debug, Serialize, Deserialize)]
struct EnvFile {
    version: u32,
    env_vars: BTreeMap<String, String>,
}

/// The custom variables.
pub struct EnvStore {
    vars: RwLock<BTreeMap<String, String>>,
    /// Where changes are saved; `None` keeps them in memory only.
    file: Option<PathBuf>,
    /// Serialises changes, so two concurrent ones cannot save out of order.
    update: Mutex<()>,
}

impl EnvStore {
    /// The create-time variables, or those saved in [`ENV_FILE`] by an earlier agent.
    pub fn new(boot: &AgentBoot) -> Self {
        Self::with_file(boot, Some(PathBuf::from(ENV_FILE)))
    }

    /// Like [`Self::new`] with another file (or none).
    pub fn with_file(boot: &AgentBoot, file: Option<PathBuf>) -> Self {
        let saved = file.as_deref().and_then(load);
        Self {
            vars: RwLock::new(saved.unwrap_or_else(|| boot.env_vars.clone())),
            file,
            update: Mutex::new(()),
        }
    }

    /// A copy of the current variables.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.vars.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces all variables. Blocking (saves to disk).
    pub fn replace(
        &self,
        vars: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, EnvError> {
        validate(&vars)?;
        self.change(|cur| *cur = vars)
    }

    /// Adds or overwrites the given variables, keeping the others. Blocking.
    pub fn merge(
        &self,
        vars: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, EnvError> {
        validate(&vars)?;
        self.change(|cur| cur.extend(vars))
    }

    /// Removes one variable (absent is fine). Blocking.
    pub fn remove(&self, name: &str) -> Result<BTreeMap<String, String>, EnvError> {
        self.change(|cur| {
            cur.remove(name);
        })
    }

    /// Removes every variable. Blocking.
    pub fn clear(&self) -> Result<BTreeMap<String, String>, EnvError> {
        self.change(BTreeMap::clear)
    }

    /// Applies `f` to a copy, checks the total size, saves, then publishes the copy.
    fn change(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<BTreeMap<String, String>, EnvError> {
        let _guard = self.update.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = self.snapshot();
        f(&mut next);
        let total: usize = next.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        if total > MAX_TOTAL_LEN {
            return Err(EnvError::TooLarge(total));
        }
        if let Some(file) = &self.file {
            save(file, &next).map_err(|source| EnvError::Persist {
                path: file.clone(),
                source,
            })?;
        }
        *self.vars.write().unwrap_or_else(|e| e.into_inner()) = next.clone();
        Ok(next)
    }
}

/// Checks names and values before anything is changed.
pub fn validate(vars: &BTreeMap<String, String>) -> Result<(), EnvError> {
    for (name, value) in vars {
        if !valid_name(name) {
            return Err(EnvError::InvalidName(name.clone()));
        }
        if value.contains('\0') {
            return Err(EnvError::InvalidValue {
                name: name.clone(),
                reason: "it contains a NUL byte",
            });
        }
        if name.len() + 1 + value.len() > MAX_ENTRY_LEN {
            return Err(EnvError::InvalidValue {
                name: name.clone(),
                reason: "NAME=value is longer than 131071 bytes, the kernel's limit",
            });
        }
    }
    Ok(())
}

/// POSIX shell names: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The saved variables, if a valid file is there. A damaged file is reported and ignored (the
/// create-time variables apply), rather than keeping the agent from starting.
fn load(path: &Path) -> Option<BTreeMap<String, String>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("cannot read {}: {e}", path.display());
            return None;
        }
    };
    match serde_json::from_slice::<EnvFile>(&bytes) {
        Ok(f) if validate(&f.env_vars).is_ok() => Some(f.env_vars),
        Ok(_) => {
            tracing::warn!("{} holds invalid variables; ignoring it", path.display());
            None
        }
        Err(e) => {
            tracing::warn!("{} is not valid: {e}; ignoring it", path.display());
            None
        }
    }
}

/// Writes the variables atomically: a private temporary file, synced, renamed over the old one.
fn save(path: &Path, vars: &BTreeMap<String, String>) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let body = serde_json::to_vec_pretty(&EnvFile {
        version: 1,
        env_vars: vars.clone(),
    })
    .map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(vars: &[(&str, &str)]) -> AgentBoot {
        AgentBoot {
            env_vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..AgentBoot::default()
        }
    }

    fn map(vars: &[(&str, &str)]) -> BTreeMap<String, String> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_and_values_are_checked() {
        for ok in ["A", "_", "a_1", "PATH"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "É"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(validate(&map(&[("A", "x\0y")])).is_err());
        assert!(validate(&map(&[("A", &"x".repeat(MAX_ENTRY_LEN))])).is_err());
        assert!(validate(&map(&[("A", "any thing=ünïcode\n")])).is_ok());
    }

    #[test]
    fn changes_persist_and_override_boot_vars() {
        let dir = std::env::temp_dir().join(format!("hutch-env-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = dir.join("sub/env.json");
        let b = boot(&[("A", "1"), ("B", "2")]);

        let s = EnvStore::with_file(&b, Some(file.clone()));
        assert_eq!(s.snapshot(), map(&[("A", "1"), ("B", "2")]));
        assert!(!file.exists(), "nothing saved before a change");
        s.merge(map(&[("C", "3")])).unwrap();
        s.remove("A").unwrap();
        assert_eq!(s.snapshot(), map(&[("B", "2"), ("C", "3")]));

        // A new agent with the same boot configuration loads the saved set.
        let s2 = EnvStore::with_file(&b, Some(file.clone()));
        assert_eq!(s2.snapshot(), map(&[("B", "2"), ("C", "3")]));
        s2.replace(map(&[("X", "y")])).unwrap();
        assert!(s2.merge(map(&[("bad-name", "1")])).is_err());
        assert_eq!(
            EnvStore::with_file(&b, Some(file.clone())).snapshot(),
            map(&[("X", "y")])
        );
        s2.clear().unwrap();
        assert!(EnvStore::with_file(&b, Some(file.clone()))
            .snapshot()
            .is_empty());

        // A damaged file falls back to the boot variables.
        std::fs::write(&file, b"{not json").unwrap();
        assert_eq!(
            EnvStore::with_file(&b, Some(file.clone())).snapshot(),
            b.env_vars
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn total_size_is_capped() {
        let s = EnvStore::with_file(&boot(&[]), None);
        let big = "x".repeat(100 * 1024);
        for i in 0..10 {
            s.merge(map(&[(&format!("V{i}"), &big)])).unwrap();
        }
        assert!(matches!(
            s.merge(map(&[("V10", &big)])),
            Err(EnvError::TooLarge(_))
        ));
        assert_eq!(s.snapshot().len(), 10);
    }
}
