//! Files an execution produced: figures it showed, files it wrote under the workspace.
//!
//! An execution that asks for artifacts (`capture_artifacts`, and every session execution) has
//! the workspace scanned before and after it runs; files that appeared or changed are recorded
//! with the execution's id. Rich image outputs (`plt.show()`, figures left open, `display` of an
//! image) are written as files under `/workspace/artifacts/plots/` so they can be listed and
//! fetched like any other artifact instead of being inlined as base64 in every listing.
//!
//! The records are kept in a JSON file beside the agent's other state, so a stop/start of the
//! sandbox (which keeps its files) keeps them too.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine;
use serde_json::Value;

use crate::kernels::RichOutput;
use crate::process::lang::random_hex;

/// Where the records are kept.
const RECORDS: &str = "/var/lib/hutch-agent/artifacts.json";
/// Where figures are written.
pub const PLOTS_DIR: &str = "plots";
/// The artifacts directory, under the workspace.
pub const ARTIFACTS_DIR: &str = "/workspace/artifacts";
/// Directories never scanned (caches and tool state, not results).
const SKIP_DIRS: &[&str] = &[
    ".git",
    "node_modules",
    "__pycache__",
    ".cache",
    ".ipynb_checkpoints",
    ".venv",
];
/// A scan stops after this many entries: a workspace holding a dataset of a million files must
/// not make every execution walk it.
const MAX_SCAN_ENTRIES: usize = 20_000;
/// Nor descend deeper than this.
const MAX_SCAN_DEPTH: usize = 12;
/// Most records kept; the oldest are forgotten (not deleted) beyond it.
const MAX_RECORDS: usize = 10_000;

/// One recorded file: the wire type itself, so the agent and the control plane cannot disagree.
pub use hutch_types::sessions::ArtifactObject as Artifact;

/// Why an artifact operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// No record with this id.
    #[error("no artifact with id {0:?}")]
    NotFound(String),
    /// The file behind a record is gone or unreadable.
    #[error("artifact {id}: {path}: {source}")]
    Io {
        /// The record.
        id: String,
        /// Its path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What a workspace looked like before an execution: path → (modification time, size).
#[derive(Debug, Default)]
pub struct Snapshot {
    files: HashMap<PathBuf, (SystemTime, u64)>,
}

/// The sandbox's artifact records.
pub struct Artifacts {
    records: Mutex<Vec<Artifact>>,
    file: PathBuf,
}

impl Artifacts {
    /// Loads the records saved by an earlier agent process, if any.
    pub fn load() -> Self {
        Self::load_from(PathBuf::from(RECORDS))
    }

    fn load_from(file: PathBuf) -> Self {
        let records = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            records: Mutex::new(records),
            file,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Artifact>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Scans `root` (blocking).
    pub fn snapshot(root: &Path) -> Snapshot {
        let mut snap = Snapshot::default();
        walk(root, 0, &mut |path, meta| {
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            snap.files.insert(path.to_path_buf(), (mtime, meta.len()));
        });
        snap
    }

    /// Records the execution's outputs and changed files (blocking): image outputs are written
    /// under `artifacts_dir/plots/`, then every file under `root` that is new or changed since
    /// `before` is recorded. Returns the new records.
    pub fn capture(
        &self,
        root: &Path,
        before: &Snapshot,
        outputs: &[RichOutput],
        execution_id: &str,
    ) -> Vec<Artifact> {
        let mut written = Vec::new();
        let plots = Path::new(ARTIFACTS_DIR).join(PLOTS_DIR);
        for (n, out) in outputs.iter().enumerate() {
            let Some((ext, bytes)) = image_of(&out.data) else {
                continue;
            };
            let path = plots.join(format!("{execution_id}_{n}.{ext}"));
            let saved =
                std::fs::create_dir_all(&plots).and_then(|()| std::fs::write(&path, &bytes));
            match saved {
                Ok(()) => written.push(path),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot save figure"),
            }
        }
        let mut found: Vec<(PathBuf, u64)> = Vec::new();
        walk(root, 0, &mut |path, meta| {
            let now = (
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                meta.len(),
            );
            if before.files.get(path) != Some(&now) {
                found.push((path.to_path_buf(), meta.len()));
            }
        });
        // Figures outside the scanned root (a workdir elsewhere) still count.
        for path in written {
            if !found.iter().any(|(p, _)| *p == path) {
                let size = std::fs::metadata(&path).map_or(0, |m| m.len());
                found.push((path, size));
            }
        }
        found.sort();
        let created_at = hutch_types::now_rfc3339();
        let new: Vec<Artifact> = found
            .into_iter()
            .map(|(path, size)| record(&path, size, execution_id, &created_at))
            .collect();
        if !new.is_empty() {
            let mut all = self.lock();
            // A file rewritten by a later execution belongs to that one now.
            all.retain(|a| !new.iter().any(|n| n.path == a.path));
            all.extend(new.iter().cloned());
            let excess = all.len().saturating_sub(MAX_RECORDS);
            all.drain(..excess);
            self.save(&all);
        }
        new
    }

    /// Every record (of one execution when given), oldest first.
    pub fn list(&self, execution_id: Option<&str>) -> Vec<Artifact> {
        self.lock()
            .iter()
            .filter(|a| execution_id.is_none_or(|e| a.execution_id == e))
            .cloned()
            .collect()
    }

    /// The record and the file's bytes (blocking).
    pub fn read(&self, id: &str) -> Result<(Artifact, Vec<u8>), ArtifactError> {
        let artifact = self
            .lock()
            .iter()
            .find(|a| a.id == id)
            .cloned()
            .ok_or_else(|| ArtifactError::NotFound(id.to_string()))?;
        let bytes = std::fs::read(&artifact.path).map_err(|source| ArtifactError::Io {
            id: artifact.id.clone(),
            path: artifact.path.clone(),
            source,
        })?;
        Ok((artifact, bytes))
    }

    /// Deletes the files and records (one when `id` is given, else all); returns how many
    /// records went. A file already gone is fine.
    pub fn remove(&self, id: Option<&str>) -> Result<usize, ArtifactError> {
        let mut all = self.lock();
        let (gone, kept): (Vec<Artifact>, Vec<Artifact>) =
            all.drain(..).partition(|a| id.is_none_or(|id| a.id == id));
        *all = kept;
        if let (Some(id), true) = (id, gone.is_empty()) {
            return Err(ArtifactError::NotFound(id.to_string()));
        }
        for a in &gone {
            if let Err(e) = std::fs::remove_file(&a.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %a.path, error = %e, "cannot remove artifact");
                }
            }
        }
        self.save(&all);
        Ok(gone.len())
    }

    fn save(&self, records: &[Artifact]) {
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = self.file.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec(records)?)?;
            std::fs::rename(&tmp, &self.file)
        };
        if let Err(e) = write() {
            tracing::warn!(file = %self.file.display(), error = %e, "cannot save artifact records");
        }
    }
}

/// Visits every regular file under `dir` (not following symlinks), within the scan limits.
fn walk(dir: &Path, depth: usize, visit: &mut dyn FnMut(&Path, &std::fs::Metadata)) -> usize {
    let mut seen = 0;
    walk_inner(dir, depth, visit, &mut seen);
    seen
}

fn walk_inner(
    dir: &Path,
    depth: usize,
    visit: &mut dyn FnMut(&Path, &std::fs::Metadata),
    seen: &mut usize,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        *seen += 1;
        if *seen > MAX_SCAN_ENTRIES {
            return;
        }
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        let path = entry.path();
        if meta.is_dir() {
            let skip = entry
                .file_name()
                .to_str()
                .is_some_and(|n| SKIP_DIRS.contains(&n));
            if !skip && depth < MAX_SCAN_DEPTH {
                walk_inner(&path, depth + 1, visit, seen);
            }
        } else if meta.is_file() {
            visit(&path, &meta);
        }
    }
}

/// An image in a rich output: its extension and decoded bytes.
fn image_of(data: &serde_json::Map<String, Value>) -> Option<(&'static str, Vec<u8>)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    for (mime, ext) in [("image/png", "png"), ("image/jpeg", "jpg")] {
        if let Some(text) = data.get(mime).and_then(Value::as_str) {
            let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            if let Ok(bytes) = b64.decode(clean) {
                return Some((ext, bytes));
            }
        }
    }
    data.get("image/svg+xml")
        .and_then(Value::as_str)
        .map(|svg| ("svg", svg.as_bytes().to_vec()))
}

fn record(path: &Path, size: u64, execution_id: &str, created_at: &str) -> Artifact {
    let mime = mime_guess::from_path(path)
        .first_raw()
        .unwrap_or("application/octet-stream")
        .to_string();
    Artifact {
        id: format!("art_{}", random_hex(8)),
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: path.to_string_lossy().into_owned(),
        category: category(path, &mime).to_string(),
        mime,
        size,
        execution_id: execution_id.to_string(),
        created_at: created_at.to_string(),
    }
}

/// The seed's categories: figures under the plots directory are `plots`, otherwise by type.
fn category(path: &Path, mime: &str) -> &'static str {
    let plots = Path::new(ARTIFACTS_DIR).join(PLOTS_DIR);
    if path.starts_with(&plots) {
        return "plots";
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "csv" | "tsv" | "json" | "jsonl" | "parquet" | "xlsx" | "xls" | "npy" | "npz" | "pkl"
        | "pickle" | "h5" | "hdf5" | "feather" | "sqlite" | "db" | "xml" | "yaml" | "yml" => "data",
        "py" | "js" | "ts" | "go" | "rs" | "sh" | "c" | "cpp" | "h" | "java" | "rb" | "ipynb" => {
            "code"
        }
        "log" => "logs",
        _ if mime.starts_with("image/") => "images",
        _ if mime.starts_with("video/") => "videos",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories() {
        assert_eq!(
            category(Path::new("/workspace/artifacts/plots/a.png"), "image/png"),
            "plots"
        );
        assert_eq!(
            category(Path::new("/workspace/x.png"), "image/png"),
            "images"
        );
        assert_eq!(
            category(Path::new("/workspace/x.mp4"), "video/mp4"),
            "videos"
        );
        assert_eq!(category(Path::new("/workspace/x.CSV"), "text/csv"), "data");
        assert_eq!(
            category(Path::new("/workspace/x.py"), "text/x-python"),
            "code"
        );
        assert_eq!(
            category(Path::new("/workspace/run.log"), "text/plain"),
            "logs"
        );
        assert_eq!(
            category(Path::new("/workspace/x.bin"), "application/octet-stream"),
            "other"
        );
    }

    #[test]
    fn changed_files_are_recorded_and_removed() {
        let dir = std::env::temp_dir().join(format!("hutch-artifacts-{}", random_hex(4)));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("old.txt"), "old").unwrap();
        let arts = Artifacts::load_from(dir.join("records.json"));
        let before = Artifacts::snapshot(&dir);
        std::fs::write(dir.join("sub/new.csv"), "a,b\n").unwrap();
        let new = arts.capture(&dir, &before, &[], "exec_1");
        let names: Vec<&str> = new.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["new.csv"]);
        assert_eq!(new[0].category, "data");
        assert_eq!(new[0].size, 4);
        assert_eq!(arts.list(Some("exec_1")).len(), 1);
        assert!(arts.list(Some("exec_2")).is_empty());
        // Reloading finds the records again.
        let again = Artifacts::load_from(dir.join("records.json"));
        let (rec, bytes) = again.read(&new[0].id).unwrap();
        assert_eq!(rec.path, new[0].path);
        assert_eq!(bytes, b"a,b\n");
        assert!(matches!(
            again.remove(Some("art_nope")),
            Err(ArtifactError::NotFound(_))
        ));
        assert_eq!(again.remove(None).unwrap(), 1);
        assert!(!dir.join("sub/new.csv").exists());
        assert!(dir.join("old.txt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
