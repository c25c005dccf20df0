//! The template registry: which names and ids resolve to which root filesystem.
//!
//! Two sources. The built-in templates, backed by the host-based root
//! (`hutch_runtime::template::ensure_builtin`): `code-interpreter` (the name nearly every HopX
//! example uses) and `base`. And built templates (`builds.rs`), recorded in the store and kept
//! here as a snapshot that is replaced whenever a build finishes or a template is deleted.
//!
//! A built template may take a built-in's name (with `force`): it then answers to that name,
//! while the built-in stays reachable by its id and comes back when the built one is deleted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use hutch_runtime::template::{ensure_builtin, TemplateRootfs};
use hutch_runtime::RuntimeError;
use hutch_store::TemplateRecord;
use hutch_types::Resources;

use crate::builds::BuildState;
use crate::spec::TemplateMeta;

/// Where a template is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateStatus {
    /// Its first build is running.
    Building,
    /// Sandboxes can be created from it.
    Active,
    /// Its builds failed and none ever succeeded.
    Failed,
}

impl TemplateStatus {
    /// `building`, `active`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateStatus::Building => "building",
            TemplateStatus::Active => "active",
            TemplateStatus::Failed => "failed",
        }
    }

    /// The inverse of [`as_str`](Self::as_str); unknown text reads as failed.
    pub fn parse(s: &str) -> Self {
        match s {
            "building" => TemplateStatus::Building,
            "active" => TemplateStatus::Active,
            _ => TemplateStatus::Failed,
        }
    }
}

/// A template as the API describes it.
#[derive(Debug, Clone)]
pub struct TemplateInfo {
    /// Id (a string on the wire).
    pub id: String,
    /// Slug.
    pub name: String,
    /// Human name.
    pub display_name: String,
    /// What it is for.
    pub description: String,
    /// Category, e.g. `development`.
    pub category: String,
    /// Main language.
    pub language: String,
    /// Limits a sandbox gets unless the request says otherwise.
    pub default_resources: Resources,
    /// Whether it ships with hutch (and cannot be deleted).
    pub builtin: bool,
    /// What it offers.
    pub features: Vec<String>,
    /// Its root filesystem (no layers until a build succeeded).
    pub rootfs: TemplateRootfs,
    /// Building, active or failed (built-ins are always active).
    pub status: TemplateStatus,
    /// The most recent build.
    pub build_id: Option<String>,
    /// Environment of every sandbox process (below the sandbox's own variables).
    pub env: BTreeMap<String, String>,
    /// Default working directory (`/workspace` when None).
    pub workdir: Option<String>,
    /// Started in the background when a sandbox is created.
    pub start_cmd: Option<String>,
    /// Unix seconds.
    pub created_at: Option<i64>,
    /// Unix seconds.
    pub updated_at: Option<i64>,
}

impl TemplateInfo {
    /// Whether sandboxes can be created from it.
    pub fn is_active(&self) -> bool {
        self.status == TemplateStatus::Active
    }
}

/// Every template this server can start sandboxes from.
pub struct Templates {
    dir: PathBuf,
    uid_base: u32,
    builtin: Vec<TemplateInfo>,
    built: RwLock<Vec<TemplateInfo>>,
    pub(crate) builds: BuildState,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("dir", &self.dir)
            .field("builtin", &self.builtin.len())
            .finish_non_exhaustive()
    }
}

impl Templates {
    /// Prepares the built-in templates under `<data_dir>/templates`. Built templates are read
    /// from the store by `Manager::recover`.
    pub fn load(data_dir: &Path, uid_base: u32, defaults: Resources) -> Result<Self, RuntimeError> {
        let dir = data_dir.join("templates");
        let rootfs = ensure_builtin(&dir.join("builtin"), uid_base)?;
        let features: Vec<String> = [
            "code_execution",
            "file_operations",
            "terminal",
            "rich_output",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let builtin =
            |id: &str, name: &str, display: &str, description: &str, language: &str| TemplateInfo {
                id: id.into(),
                name: name.into(),
                display_name: display.into(),
                description: description.into(),
                category: "development".into(),
                language: language.into(),
                default_resources: defaults,
                builtin: true,
                features: features.clone(),
                rootfs: rootfs.clone(),
                status: TemplateStatus::Active,
                build_id: None,
                env: BTreeMap::new(),
                workdir: None,
                start_cmd: None,
                created_at: None,
                updated_at: None,
            };
        let all = vec![
            builtin(
                "1",
                "code-interpreter",
                "Code Interpreter",
                "Python, JavaScript, Bash and Go from the host's /usr, read-only, with a \
                 private writable workspace",
                "python",
            ),
            builtin(
                "2",
                "base",
                "Base",
                "The same root as code-interpreter, under its HopX alias",
                "bash",
            ),
        ];
        Ok(Self {
            builds: BuildState::new(&dir),
            dir,
            uid_base,
            builtin: all,
            built: RwLock::new(Vec::new()),
        })
    }

    /// A registry of exactly `builtin` and no files (tests, documents): nothing is prepared on
    /// disk, and builds cannot run.
    pub fn from_list(builtin: Vec<TemplateInfo>) -> Self {
        let dir = PathBuf::from("/nonexistent/hutch-templates");
        Self {
            builds: BuildState::new(&dir),
            dir,
            uid_base: 100_000,
            builtin,
            built: RwLock::new(Vec::new()),
        }
    }

    /// Finds a template by name or id. A built template answers to its name before a built-in
    /// of the same name does.
    pub fn find(&self, name_or_id: &str) -> Option<TemplateInfo> {
        let built = self.built.read().unwrap_or_else(|e| e.into_inner());
        built
            .iter()
            .find(|t| t.name == name_or_id)
            .or_else(|| self.builtin.iter().find(|t| t.name == name_or_id))
            .or_else(|| {
                built
                    .iter()
                    .chain(self.builtin.iter())
                    .find(|t| t.id == name_or_id)
            })
            .cloned()
    }

    /// Every template: the built-ins (unless a built template took the name), then the built
    /// ones by id.
    pub fn all(&self) -> Vec<TemplateInfo> {
        let built = self.built.read().unwrap_or_else(|e| e.into_inner());
        self.builtin
            .iter()
            .filter(|b| !built.iter().any(|t| t.name == b.name))
            .chain(built.iter())
            .cloned()
            .collect()
    }

    /// The built-in templates.
    pub fn builtins(&self) -> &[TemplateInfo] {
        &self.builtin
    }

    /// Whether `name` is a built-in's.
    pub fn is_builtin_name(&self, name: &str) -> bool {
        self.builtin.iter().any(|t| t.name == name)
    }

    /// `<data_dir>/templates`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Host uid of sandbox root (templates are shifted to it).
    pub fn uid_base(&self) -> u32 {
        self.uid_base
    }

    /// The root of version `version` of template `name`.
    pub fn version_dir(&self, name: &str, version: i64) -> PathBuf {
        self.dir.join(name).join(version.to_string())
    }

    /// Replaces the snapshot of built templates.
    pub(crate) fn set_built(&self, records: &[TemplateRecord]) {
        let list = records.iter().filter_map(|r| self.info(r)).collect();
        *self.built.write().unwrap_or_else(|e| e.into_inner()) = list;
    }

    fn info(&self, r: &TemplateRecord) -> Option<TemplateInfo> {
        let meta: TemplateMeta = match serde_json::from_str(&r.meta) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(template = %r.name, error = %e, "unreadable template metadata; skipped");
                return None;
            }
        };
        let status = TemplateStatus::parse(&r.status);
        let layers = match (status, r.version) {
            (TemplateStatus::Active, Some(v)) => {
                vec![self.version_dir(&r.name, v).join("rootfs")]
            }
            _ => Vec::new(),
        };
        Some(TemplateInfo {
            id: r.id.to_string(),
            name: r.name.clone(),
            display_name: meta.display_name,
            description: meta.description,
            category: meta.category,
            language: meta.language,
            default_resources: meta.resources,
            builtin: false,
            features: meta.features,
            rootfs: TemplateRootfs {
                layers,
                binds: Vec::new(),
            },
            status,
            build_id: r.build_id.clone(),
            env: meta.env,
            workdir: meta.workdir,
            start_cmd: meta.start_cmd,
            created_at: Some(r.created_at),
            updated_at: Some(r.updated_at),
        })
    }
}
