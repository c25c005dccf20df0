//! The template registry: which names and ids resolve to which root filesystem.
//!
//! For now the built-in templates, all backed by the host-based root (`hutch_runtime::template`):
//! `code-interpreter` (the name nearly every HopX example uses) and `base`.

use std::path::Path;

use hutch_runtime::template::{ensure_builtin, TemplateRootfs};
use hutch_runtime::RuntimeError;
use hutch_types::Resources;

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
    /// Its root filesystem.
    pub rootfs: TemplateRootfs,
}

/// Every template this server can start sandboxes from.
#[derive(Debug, Clone)]
pub struct Templates {
    all: Vec<TemplateInfo>,
}

impl Templates {
    /// Prepares the built-in templates under `<data_dir>/templates`.
    pub fn load(data_dir: &Path, uid_base: u32, defaults: Resources) -> Result<Self, RuntimeError> {
        let rootfs = ensure_builtin(&data_dir.join("templates").join("builtin"), uid_base)?;
        let features: Vec<String> = [
            "code_execution",
            "file_operations",
            "terminal",
            "rich_output",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let all = vec![
            TemplateInfo {
                id: "1".into(),
                name: "code-interpreter".into(),
                display_name: "Code Interpreter".into(),
                description: "Python, JavaScript, Bash and Go from the host's /usr, read-only, \
                              with a private writable workspace"
                    .into(),
                category: "development".into(),
                language: "python".into(),
                default_resources: defaults,
                builtin: true,
                features: features.clone(),
                rootfs: rootfs.clone(),
            },
            TemplateInfo {
                id: "2".into(),
                name: "base".into(),
                display_name: "Base".into(),
                description: "The same root as code-interpreter, under its HopX alias".into(),
                category: "development".into(),
                language: "bash".into(),
                default_resources: defaults,
                builtin: true,
                features,
                rootfs,
            },
        ];
        Ok(Self { all })
    }

    /// Finds a template by name or id.
    pub fn find(&self, name_or_id: &str) -> Option<&TemplateInfo> {
        self.all
            .iter()
            .find(|t| t.name == name_or_id || t.id == name_or_id)
    }

    /// Every template.
    pub fn all(&self) -> &[TemplateInfo] {
        &self.all
    }
}
