//! Template build requests, in both their forms, turned into one [`BuildPlan`]:
//!
//! - hutch's TOML spec (`templates/README.md` documents it; `templates/*.toml` are examples),
//!   sent by `hutch template build` to `POST /v1/templates/builds`;
//! - the HopX SDK's build request (`spec` §6.11): a base image and Dockerfile-like steps, mapped
//!   onto what hutch can make from Debian packages.
//!
//! Everything a request can get wrong is found here, before a build is queued, and reported
//! with the field it concerns (a 400 at the API).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use hutch_runtime::template::bootstrap::BaseSpec;
use hutch_types::wire::HopxBuildRequest;
use hutch_types::Resources;
use serde::{Deserialize, Serialize};

/// Default Debian suite (the host's, and the only one whose packages match its kernels' needs).
pub const DEFAULT_SUITE: &str = "bookworm";
/// Default mmdebstrap variant: essential packages plus apt, so build commands can install more.
pub const DEFAULT_VARIANT: &str = "apt";
/// Default time limit of one build command.
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Longest a build command may be given.
const MAX_RUN_TIMEOUT: u64 = 6 * 3600;
/// Most steps in one build.
const MAX_STEPS: usize = 256;
/// Names a template cannot take: they are routes under `/v1/templates/`.
const RESERVED_NAMES: &[&str] = &["build", "builds", "files"];

/// What a built template is, besides its root: shown by the API and applied to every sandbox
/// created from it. Stored as JSON with the template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateMeta {
    /// Human name.
    pub display_name: String,
    /// What it is for.
    pub description: String,
    /// Category (`development`).
    pub category: String,
    /// Main language (`python`, `javascript`, `bash`).
    pub language: String,
    /// What it offers.
    #[serde(default)]
    pub features: Vec<String>,
    /// Environment of every sandbox process (below the sandbox's own `env_vars`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Default working directory; `/workspace` when None.
    #[serde(default)]
    pub workdir: Option<String>,
    /// Started in the background when a sandbox is created.
    #[serde(default)]
    pub start_cmd: Option<String>,
    /// The user build commands ran as (`root` or `user`).
    #[serde(default)]
    pub user: Option<String>,
    /// Limits sandboxes get unless the create request says otherwise.
    pub resources: Resources,
    /// The base, as text (`bookworm (apt) + python3`).
    #[serde(default)]
    pub base: String,
}

/// Who a build command runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunAs {
    /// Sandbox root.
    Root,
    /// The unprivileged `user` (uid 1000).
    User,
}

impl RunAs {
    fn parse(s: &str, field: &str) -> Result<Self, String> {
        match s.trim() {
            "root" | "0" => Ok(Self::Root),
            "user" | "1000" => Ok(Self::User),
            other => Err(format!(
                "{field}: unknown user {other:?}; templates know \"root\" and \"user\""
            )),
        }
    }
}

/// One step of a build, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildStep {
    /// Write a file (created with its parent directories).
    Write {
        /// Absolute path inside the template.
        dest: String,
        /// Content.
        data: Vec<u8>,
        /// Permission bits.
        mode: u32,
        /// Owner uid inside the sandbox (0 or 1000).
        owner: u32,
    },
    /// Unpack an uploaded tar.gz (HopX COPY).
    Copy {
        /// Sources as the client named them (decide how members map to `dest`).
        sources: Vec<String>,
        /// Absolute destination inside the template.
        dest: String,
        /// The upload's hash.
        files_hash: String,
    },
    /// Run a shell command in a sandbox of the template so far.
    Run {
        /// `/bin/sh -c` text.
        command: String,
        /// Its environment (template env at that point).
        env: BTreeMap<String, String>,
        /// Its working directory.
        workdir: String,
        /// Its user.
        user: RunAs,
        /// Its time limit.
        timeout: Duration,
    },
}

impl BuildStep {
    /// A one-line description for logs and error messages.
    pub fn describe(&self) -> String {
        let short = |s: &str| {
            let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
            if one.chars().count() > 80 {
                format!("{}…", one.chars().take(79).collect::<String>())
            } else {
                one
            }
        };
        match self {
            BuildStep::Write { dest, data, .. } => format!("FILE {dest} ({} bytes)", data.len()),
            BuildStep::Copy { sources, dest, .. } => format!("COPY {} {dest}", sources.join(",")),
            BuildStep::Run { command, user, .. } => match user {
                RunAs::Root => format!("RUN {}", short(command)),
                RunAs::User => format!("RUN (as user) {}", short(command)),
            },
        }
    }

    /// True for steps that need a running sandbox.
    pub fn is_run(&self) -> bool {
        matches!(self, BuildStep::Run { .. })
    }
}

/// Everything needed to build a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    /// Metadata the template gets.
    pub meta: TemplateMeta,
    /// The Debian base.
    pub base: BaseSpec,
    /// Steps after the base, in order.
    pub steps: Vec<BuildStep>,
    /// Rebuild the base even if it is cached.
    pub skip_cache: bool,
}

/// What this host can give a sandbox (the bounds of `resources`).
#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    /// CPUs.
    pub cpus: u32,
    /// Memory, MiB.
    pub memory_mb: u64,
}

/// Checks a template name: a slug that can name a directory and never an id or a route.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if !ok {
        return Err(format!(
            "invalid template name {name:?}: 1–63 of lower-case letters, digits, '-', '_' and \
             '.', starting with a letter"
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(format!(
            "{name:?} is reserved; choose another template name"
        ));
    }
    Ok(())
}

// ---- the TOML spec ----

/// A template spec as written in TOML (see `templates/README.md`). Unknown keys are errors, so
/// a misspelt key never silently builds something else.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// Human name (defaults to the template name).
    #[serde(default)]
    pub display_name: Option<String>,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Category (default `development`).
    #[serde(default)]
    pub category: Option<String>,
    /// Main language (default `python` when python3 is installed, else `bash`).
    #[serde(default)]
    pub language: Option<String>,
    /// Feature labels.
    #[serde(default)]
    pub features: Vec<String>,
    /// The Debian base.
    #[serde(default)]
    pub base: BaseSection,
    /// Files to put in, in order, before the commands run.
    #[serde(default)]
    pub files: Vec<FileSection>,
    /// Shell commands run in order in a sandbox of the new root (with internet access).
    #[serde(default)]
    pub run: Vec<String>,
    /// Time limit of each command, seconds (default 1800).
    #[serde(default)]
    pub run_timeout: Option<u64>,
    /// Environment of every sandbox process, and of the commands.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Default working directory (created; default `/workspace`); the commands run there too.
    #[serde(default)]
    pub workdir: Option<String>,
    /// Command started in the background when a sandbox is created.
    #[serde(default)]
    pub start_cmd: Option<String>,
    /// Who the commands run as: `root` (default) or `user`.
    #[serde(default)]
    pub user: Option<String>,
    /// Default limits of sandboxes.
    #[serde(default)]
    pub resources: ResourcesSection,
}

/// `[base]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BaseSection {
    /// Debian suite (default `bookworm`).
    #[serde(default)]
    pub suite: Option<String>,
    /// mmdebstrap variant (default `apt`).
    #[serde(default)]
    pub variant: Option<String>,
    /// Debian packages to install.
    #[serde(default)]
    pub packages: Vec<String>,
}

/// `[[files]]`: exactly one of `content`, `content_base64`, `source`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSection {
    /// Absolute path inside the template.
    pub dest: String,
    /// Text content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Binary content, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_base64: Option<String>,
    /// A file beside the spec; clients inline it ([`inline_sources`]) — the server never reads
    /// host paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Permission bits: `"0755"` or an integer (TOML's `0o755`). Default 0644.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ModeValue>,
    /// `root` (default), `user`, or a uid inside the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<OwnerValue>,
}

/// A file mode, as text or a number.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ModeValue {
    /// `0o644` in TOML, or a decimal number.
    Number(u32),
    /// `"0644"` or `"644"` (octal).
    Text(String),
}

/// A file owner, by name or id.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OwnerValue {
    /// A uid inside the sandbox.
    Id(u32),
    /// `root` or `user`.
    Name(String),
}

/// `[resources]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesSection {
    /// CPUs.
    #[serde(default)]
    pub vcpu: Option<u32>,
    /// Memory, MiB.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Disk, GiB (reported, not enforced).
    #[serde(default)]
    pub disk_gb: Option<u64>,
}

fn parse_mode(v: &ModeValue, field: &str) -> Result<u32, String> {
    let m = match v {
        ModeValue::Number(n) => *n,
        ModeValue::Text(s) => u32::from_str_radix(s.trim().trim_start_matches("0o"), 8)
            .map_err(|_| format!("{field}: mode {s:?} is not octal (e.g. \"0644\")"))?,
    };
    if m > 0o7777 {
        return Err(format!("{field}: mode {m:o} has bits beyond 07777"));
    }
    Ok(m)
}

fn parse_owner(v: &OwnerValue, field: &str) -> Result<u32, String> {
    match v {
        OwnerValue::Id(id) if *id < 65_536 => Ok(*id),
        OwnerValue::Id(id) => Err(format!("{field}: uid {id} is outside 0..65536")),
        OwnerValue::Name(n) => match RunAs::parse(n, field)? {
            RunAs::Root => Ok(0),
            RunAs::User => Ok(1000),
        },
    }
}

/// An absolute, clean path inside the template (no `..`, no NUL).
fn check_abs_path(p: &str, field: &str) -> Result<(), String> {
    if !p.starts_with('/') || p.contains('\0') || p.split('/').any(|c| c == "..") {
        return Err(format!(
            "{field}: {p:?} must be an absolute path inside the template, without '..'"
        ));
    }
    if p.len() > 4096 {
        return Err(format!("{field}: path longer than 4096 bytes"));
    }
    Ok(())
}

fn check_resources(r: &Resources, host: HostLimits) -> Result<(), String> {
    r.validate(host.cpus, host.memory_mb)
        .map_err(|e| format!("resources: {e}"))
}

fn check_env(env: &BTreeMap<String, String>) -> Result<(), String> {
    crate::lifecycle::validate_env(env).map_err(|e| format!("env: {e}"))
}

fn default_language(packages: &[String]) -> String {
    let has = |p: &str| {
        packages
            .iter()
            .any(|x| x == p || x.starts_with(&format!("{p}=")))
    };
    if has("python3") {
        "python".into()
    } else if has("nodejs") {
        "javascript".into()
    } else {
        "bash".into()
    }
}

/// Parses and checks a TOML spec for template `name`.
pub fn parse_toml(name: &str, text: &str, host: HostLimits) -> Result<BuildPlan, String> {
    validate_name(name)?;
    let spec: TemplateSpec =
        toml::from_str(text).map_err(|e| format!("invalid template spec: {e}"))?;
    let base = BaseSpec {
        suite: spec
            .base
            .suite
            .clone()
            .unwrap_or_else(|| DEFAULT_SUITE.into()),
        variant: spec
            .base
            .variant
            .clone()
            .unwrap_or_else(|| DEFAULT_VARIANT.into()),
        packages: spec.base.packages.clone(),
    };
    base.validate().map_err(|e| format!("base: {e}"))?;
    check_env(&spec.env)?;
    let workdir = spec.workdir.clone();
    if let Some(w) = &workdir {
        check_abs_path(w, "workdir")?;
    }
    let user = match &spec.user {
        Some(u) => RunAs::parse(u, "user")?,
        None => RunAs::Root,
    };
    let timeout = match spec.run_timeout {
        Some(0) => return Err("run_timeout must be at least 1 second".into()),
        Some(t) if t > MAX_RUN_TIMEOUT => {
            return Err(format!(
                "run_timeout must be at most {MAX_RUN_TIMEOUT} seconds"
            ))
        }
        Some(t) => Duration::from_secs(t),
        None => DEFAULT_RUN_TIMEOUT,
    };
    if spec.files.len() + spec.run.len() > MAX_STEPS {
        return Err(format!("more than {MAX_STEPS} files and commands"));
    }
    let mut steps = Vec::new();
    for (i, f) in spec.files.iter().enumerate() {
        let field = format!("files[{i}]");
        check_abs_path(&f.dest, &format!("{field}.dest"))?;
        if f.dest.ends_with('/') {
            return Err(format!(
                "{field}.dest: {:?} names a directory, not a file",
                f.dest
            ));
        }
        let data = match (&f.content, &f.content_base64, &f.source) {
            (Some(c), None, None) => c.clone().into_bytes(),
            (None, Some(b), None) => base64::engine::general_purpose::STANDARD
                .decode(b.split_whitespace().collect::<String>())
                .map_err(|e| format!("{field}.content_base64: {e}"))?,
            (None, None, Some(s)) => {
                return Err(format!(
                    "{field}.source ({s:?}): the server never reads files from its host; send \
                     the content inline (content or content_base64) — `hutch template build` \
                     does this for sources next to the spec"
                ))
            }
            _ => {
                return Err(format!(
                    "{field}: give exactly one of content, content_base64 or source"
                ))
            }
        };
        let mode = match &f.mode {
            Some(m) => parse_mode(m, &format!("{field}.mode"))?,
            None => 0o644,
        };
        let owner = match &f.owner {
            Some(o) => parse_owner(o, &format!("{field}.owner"))?,
            None => 0,
        };
        steps.push(BuildStep::Write {
            dest: f.dest.clone(),
            data,
            mode,
            owner,
        });
    }
    let run_dir = workdir.clone().unwrap_or_else(|| "/workspace".into());
    for (i, cmd) in spec.run.iter().enumerate() {
        if cmd.trim().is_empty() || cmd.contains('\0') {
            return Err(format!("run[{i}]: empty command"));
        }
        steps.push(BuildStep::Run {
            command: cmd.clone(),
            env: spec.env.clone(),
            workdir: run_dir.clone(),
            user,
            timeout,
        });
    }
    let defaults = Resources::default();
    let resources = Resources {
        vcpu: spec.resources.vcpu.unwrap_or(defaults.vcpu),
        memory_mb: spec.resources.memory_mb.unwrap_or(defaults.memory_mb),
        disk_mb: spec
            .resources
            .disk_gb
            .map_or(defaults.disk_mb, |g| g.saturating_mul(1024)),
        pids: defaults.pids,
    };
    check_resources(&resources, host)?;
    if let Some(c) = &spec.start_cmd {
        if c.trim().is_empty() {
            return Err("start_cmd is empty".into());
        }
    }
    let meta = TemplateMeta {
        display_name: spec
            .display_name
            .clone()
            .unwrap_or_else(|| name.to_string()),
        description: spec
            .description
            .clone()
            .unwrap_or_else(|| format!("Debian {}", base.describe())),
        category: spec
            .category
            .clone()
            .unwrap_or_else(|| "development".into()),
        language: spec
            .language
            .clone()
            .unwrap_or_else(|| default_language(&base.packages)),
        features: spec.features.clone(),
        env: spec.env.clone(),
        workdir,
        start_cmd: spec.start_cmd.clone(),
        user: spec.user.clone(),
        resources,
        base: base.normalised().describe(),
    };
    Ok(BuildPlan {
        meta,
        base: base.normalised(),
        steps,
        skip_cache: false,
    })
}

/// Replaces every `source = "path"` of a spec's `[[files]]` with the file's content
/// (`content_base64`), reading paths relative to `base_dir` (the spec's directory). For
/// clients: the server refuses `source`, since it never reads files from its host.
pub fn inline_sources(text: &str, base_dir: &Path) -> Result<String, String> {
    let mut spec: TemplateSpec =
        toml::from_str(text).map_err(|e| format!("invalid template spec: {e}"))?;
    let mut changed = false;
    for (i, f) in spec.files.iter_mut().enumerate() {
        if let Some(src) = f.source.take() {
            let path = base_dir.join(&src);
            let data = std::fs::read(&path)
                .map_err(|e| format!("files[{i}].source: cannot read {}: {e}", path.display()))?;
            f.content_base64 = Some(base64::engine::general_purpose::STANDARD.encode(data));
            changed = true;
        }
    }
    if !changed {
        return Ok(text.to_string());
    }
    toml::to_string(&spec).map_err(|e| format!("cannot write the spec back: {e}"))
}

// ---- the HopX build request ----

/// What a HopX base image becomes here.
struct ImageBase {
    packages: &'static [&'static str],
    /// Shell run first, to make the root look like the image where it matters.
    setup: Option<&'static str>,
    language: &'static str,
}

/// The images hutch can make, for the error message.
pub const SUPPORTED_IMAGES: &str = "debian:bookworm (also debian:12, debian), python:3.11 (also \
    python:3, python) and node:18 (also node, ubuntu/node:18-*), each optionally with -slim or \
    -bookworm";

/// Python images put `python3`/`pip3` in `/usr/local/bin` (the SDK's `pip_install` calls
/// `/usr/local/bin/pip3`) and let pip install system-wide.
const PYTHON_SETUP: &str = "set -e; for p in python python3; do ln -sf /usr/bin/python3 \
    /usr/local/bin/$p; done; for p in pip pip3; do ln -sf /usr/bin/pip3 /usr/local/bin/$p; \
    done; rm -f /usr/lib/python3*/EXTERNALLY-MANAGED";

fn map_image(image: &str) -> Result<ImageBase, String> {
    let unsupported = || {
        format!("cannot build from image {image:?}: hutch makes templates from Debian packages and can build {SUPPORTED_IMAGES}")
    };
    let lower = image.trim().to_ascii_lowercase();
    let lower = lower
        .strip_prefix("docker.io/")
        .unwrap_or(&lower)
        .to_string();
    let lower = lower.strip_prefix("library/").unwrap_or(&lower).to_string();
    let (name, tag) = lower.split_once(':').unwrap_or((lower.as_str(), "latest"));
    let mut tag = tag;
    for suffix in ["-slim-bookworm", "-bookworm", "-slim"] {
        if let Some(t) = tag.strip_suffix(suffix) {
            tag = t;
            break;
        }
    }
    match (name, tag) {
        ("debian", "latest" | "bookworm" | "12") => Ok(ImageBase {
            packages: &[],
            setup: None,
            language: "bash",
        }),
        ("python", "latest" | "3" | "3.11") => Ok(ImageBase {
            packages: &["python3", "python3-pip", "python3-venv"],
            setup: Some(PYTHON_SETUP),
            language: "python",
        }),
        ("node", "latest" | "18" | "lts") => Ok(ImageBase {
            packages: &["nodejs", "npm"],
            setup: None,
            language: "javascript",
        }),
        ("ubuntu/node", t) if t.starts_with("18-") => Ok(ImageBase {
            packages: &["nodejs", "npm"],
            setup: None,
            language: "javascript",
        }),
        _ => Err(unsupported()),
    }
}

/// Expands `$NAME` and `${NAME}` against `env` (unknown names expand to nothing), as Docker's
/// `ENV` does, so `PATH=/opt/venv/bin:$PATH` works.
fn expand(value: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                chars.next();
            } else {
                break;
            }
        }
        if braced && chars.peek() == Some(&'}') {
            chars.next();
        }
        if name.is_empty() {
            out.push('$');
            if braced {
                out.push('{');
            }
        } else {
            out.push_str(env.get(&name).map(String::as_str).unwrap_or(""));
        }
    }
    out
}

/// The PATH every sandbox process starts with (the agent's), for `$PATH` in ENV steps.
const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Maps a HopX build request onto a plan. `has_upload` says whether a COPY step's files were
/// uploaded.
pub fn from_hopx(
    req: &HopxBuildRequest,
    host: HostLimits,
    has_upload: &dyn Fn(&str) -> bool,
) -> Result<BuildPlan, String> {
    validate_name(&req.name)?;
    if req.registry_credentials.is_some() {
        return Err(format!(
            "registry_credentials given, but hutch pulls no images: it can build {SUPPORTED_IMAGES}"
        ));
    }
    let image = map_image(&req.from_image)?;
    if req.steps.len() > MAX_STEPS {
        return Err(format!("more than {MAX_STEPS} steps"));
    }
    let base = BaseSpec {
        suite: DEFAULT_SUITE.into(),
        variant: DEFAULT_VARIANT.into(),
        packages: image.packages.iter().map(|p| p.to_string()).collect(),
    };
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    // What `$PATH` means before any ENV step, and what the agent uses anyway.
    let lookup = |env: &BTreeMap<String, String>| {
        let mut all = BTreeMap::from([("PATH".to_string(), BASE_PATH.to_string())]);
        all.extend(env.clone());
        all
    };
    let mut workdir: Option<String> = None;
    let mut user = RunAs::Root;
    let mut start_cmd: Option<String> = None;
    let mut steps = Vec::new();
    if let Some(setup) = image.setup {
        steps.push(BuildStep::Run {
            command: setup.into(),
            env: BTreeMap::new(),
            workdir: "/".into(),
            user: RunAs::Root,
            timeout: Duration::from_secs(120),
        });
    }
    // Relative paths are taken from the current WORKDIR, as Docker does; `.` components go.
    // A trailing `/` (or a bare `.`) keeps meaning "into this directory".
    let abs = |p: &str, workdir: &Option<String>| -> String {
        let joined = if p.starts_with('/') {
            p.to_string()
        } else {
            format!("{}/{p}", workdir.as_deref().unwrap_or("/workspace"))
        };
        let parts: Vec<&str> = joined
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let mut out = format!("/{}", parts.join("/"));
        let dir_like = p.ends_with('/') || p == "." || p.ends_with("/.");
        if dir_like && out != "/" {
            out.push('/');
        }
        out
    };
    for (i, s) in req.steps.iter().enumerate() {
        let field = format!("steps[{i}] ({})", s.kind);
        let arg = |n: usize| -> Result<&str, String> {
            s.args
                .get(n)
                .map(String::as_str)
                .ok_or_else(|| format!("{field}: needs {} argument(s)", n + 1))
        };
        match s.kind.to_ascii_uppercase().as_str() {
            "ENV" => {
                let (k, v) = match s.args.len() {
                    2 => (s.args[0].clone(), s.args[1].clone()),
                    1 => match s.args[0].split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => return Err(format!("{field}: expected [KEY, value]")),
                    },
                    _ => return Err(format!("{field}: expected [KEY, value]")),
                };
                let v = expand(&v, &lookup(&env));
                env.insert(k, v);
                check_env(&env).map_err(|e| format!("{field}: {e}"))?;
            }
            "WORKDIR" => {
                let w = abs(arg(0)?, &workdir);
                let w = if w.len() > 1 {
                    w.trim_end_matches('/').to_string()
                } else {
                    w
                };
                check_abs_path(&w, &field)?;
                workdir = Some(w);
            }
            "USER" => user = RunAs::parse(arg(0)?, &field)?,
            "CMD" => start_cmd = Some(s.args.join(" ")),
            "RUN" => {
                let cmd = s.args.join(" ");
                if cmd.trim().is_empty() {
                    return Err(format!("{field}: empty command"));
                }
                steps.push(BuildStep::Run {
                    command: cmd,
                    env: env.clone(),
                    workdir: workdir.clone().unwrap_or_else(|| "/workspace".into()),
                    user,
                    timeout: DEFAULT_RUN_TIMEOUT,
                });
            }
            "COPY" => {
                let sources: Vec<String> = arg(0)?.split(',').map(str::to_string).collect();
                let dest = abs(arg(1)?, &workdir);
                check_abs_path(&dest, &field)?;
                let hash = s
                    .files_hash
                    .clone()
                    .ok_or_else(|| format!("{field}: filesHash is missing"))?;
                if !is_hash(&hash) {
                    return Err(format!(
                        "{field}: filesHash {hash:?} is not a sha256 hex digest"
                    ));
                }
                if !has_upload(&hash) {
                    return Err(format!(
                        "{field}: files {hash} were not uploaded (POST \
                         /v1/templates/files/upload-link, then PUT the archive)"
                    ));
                }
                steps.push(BuildStep::Copy {
                    sources,
                    dest,
                    files_hash: hash,
                });
            }
            other => {
                return Err(format!(
                    "steps[{i}]: unknown step type {other:?} (COPY, RUN, ENV, WORKDIR, USER, CMD)"
                ))
            }
        }
    }
    if let Some(c) = &req.start_cmd {
        if !c.trim().is_empty() {
            start_cmd = Some(c.clone());
        }
    }
    let defaults = Resources::default();
    let resources = Resources {
        vcpu: req.cpu.unwrap_or(defaults.vcpu).min(host.cpus.max(1)),
        memory_mb: req
            .memory
            .unwrap_or(defaults.memory_mb)
            .min(host.memory_mb.max(Resources::MIN_MEMORY_MB)),
        disk_mb: req
            .disk_gb
            .map_or(defaults.disk_mb, |g| g.saturating_mul(1024)),
        pids: defaults.pids,
    };
    check_resources(&resources, host)?;
    let meta = TemplateMeta {
        display_name: req.name.clone(),
        description: format!(
            "Built from {} as Debian {}",
            req.from_image,
            base.normalised().describe()
        ),
        category: "development".into(),
        language: image.language.into(),
        features: Vec::new(),
        env,
        workdir,
        start_cmd,
        user: Some(match user {
            RunAs::Root => "root".into(),
            RunAs::User => "user".into(),
        }),
        resources,
        base: base.normalised().describe(),
    };
    Ok(BuildPlan {
        meta,
        base: base.normalised(),
        steps,
        skip_cache: req.skip_cache || req.steps.iter().any(|s| s.skip_cache),
    })
}

/// A sha256 hex digest (what the SDK sends as `filesHash`; it names a file on disk).
pub fn is_hash(s: &str) -> bool {
    s.len() == 64
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use hutch_types::wire::HopxBuildStep;

    use super::*;

    const HOST: HostLimits = HostLimits {
        cpus: 2,
        memory_mb: 4096,
    };

    #[test]
    fn a_full_spec_parses() {
        let text = r#"
display_name = "Demo"
language = "python"

[base]
suite = "bookworm"
variant = "essential"
packages = ["python3", "curl"]

[[files]]
dest = "/etc/motd"
content = "hello\n"

[[files]]
dest = "/usr/local/bin/tool"
content_base64 = "IyEvYmluL3NoCg=="
mode = 0o755
owner = "user"

[env]
GREETING = "hi"

workdir_is_not_here = 1
"#;
        // An unknown key is reported by name.
        let err = parse_toml("demo", text, HOST).unwrap_err();
        assert!(err.contains("workdir_is_not_here"), "{err}");

        let text = text.replace("workdir_is_not_here = 1", "");
        let text = format!(
            "workdir = \"/srv/app\"\nrun = [\"echo $GREETING > /etc/greeting\"]\nrun_timeout = 60\n\
             start_cmd = \"python3 -m http.server\"\n{text}\n[resources]\nvcpu = 2\nmemory_mb = 512\n"
        );
        let plan = parse_toml("demo", &text, HOST).unwrap();
        assert_eq!(plan.base.variant, "essential");
        assert_eq!(plan.base.packages, vec!["curl", "python3"]);
        assert_eq!(plan.meta.env["GREETING"], "hi");
        assert_eq!(plan.meta.workdir.as_deref(), Some("/srv/app"));
        assert_eq!(plan.meta.resources.vcpu, 2);
        assert_eq!(plan.meta.resources.memory_mb, 512);
        assert_eq!(plan.steps.len(), 3);
        match &plan.steps[1] {
            BuildStep::Write {
                data, mode, owner, ..
            } => {
                assert_eq!(data, b"#!/bin/sh\n");
                assert_eq!((*mode, *owner), (0o755, 1000));
            }
            s => panic!("{s:?}"),
        }
        match &plan.steps[2] {
            BuildStep::Run {
                workdir,
                timeout,
                env,
                ..
            } => {
                assert_eq!(workdir, "/srv/app");
                assert_eq!(*timeout, Duration::from_secs(60));
                assert_eq!(env["GREETING"], "hi");
            }
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn mistakes_name_the_field() {
        let bad = [
            ("[base]\npackages = [\"a,b\"]\n", "base"),
            ("[base]\nvariant = \"huge\"\n", "variant"),
            (
                "[[files]]\ndest = \"etc/x\"\ncontent = \"\"\n",
                "files[0].dest",
            ),
            ("[[files]]\ndest = \"/x\"\n", "files[0]"),
            (
                "[[files]]\ndest = \"/x\"\nsource = \"x\"\n",
                "files[0].source",
            ),
            (
                "[[files]]\ndest = \"/x\"\ncontent = \"\"\nmode = \"9\"\n",
                "mode",
            ),
            ("[env]\n\"1X\" = \"a\"\n", "env"),
            ("user = \"admin\"\n", "user"),
            ("[resources]\nvcpu = 64\n", "vcpu"),
            ("run = [\"\"]\n", "run[0]"),
            ("this is not toml", "invalid template spec"),
        ];
        for (text, want) in bad {
            let err = parse_toml("t", text, HOST).unwrap_err();
            assert!(err.contains(want), "{text:?} → {err}");
        }
        assert!(parse_toml("Bad Name", "", HOST).is_err());
        assert!(parse_toml("builds", "", HOST).is_err());
        assert!(parse_toml("1abc", "", HOST).is_err());
        // The empty spec is a valid bookworm + apt root.
        let plan = parse_toml("empty", "", HOST).unwrap();
        assert_eq!(plan.base.suite, "bookworm");
        assert_eq!(plan.base.variant, "apt");
        assert_eq!(plan.meta.language, "bash");
    }

    #[test]
    fn shipped_specs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
        for name in ["minimal", "code-interpreter", "nodejs"] {
            let text = std::fs::read_to_string(dir.join(format!("{name}.toml"))).unwrap();
            parse_toml(name, &text, HOST).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn sources_are_inlined_by_clients() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.py"), b"print(1)\n").unwrap();
        let text = "[[files]]\ndest = \"/app.py\"\nsource = \"app.py\"\n";
        let inlined = inline_sources(text, dir.path()).unwrap();
        let plan = parse_toml("t", &inlined, HOST).unwrap();
        assert_eq!(
            plan.steps[0],
            BuildStep::Write {
                dest: "/app.py".into(),
                data: b"print(1)\n".to_vec(),
                mode: 0o644,
                owner: 0
            }
        );
        assert!(inline_sources("[[files]]\ndest=\"/x\"\nsource=\"nope\"\n", dir.path()).is_err());
    }

    fn step(kind: &str, args: &[&str]) -> HopxBuildStep {
        HopxBuildStep {
            kind: kind.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn hopx_requests_map_onto_debian() {
        let hash = "a".repeat(64);
        let req = HopxBuildRequest {
            name: "py-app".into(),
            from_image: "python:3.11-slim".into(),
            steps: vec![
                step("ENV", &["PATH", "/opt/venv/bin:$PATH"]),
                step("WORKDIR", &["/app"]),
                HopxBuildStep {
                    files_hash: Some(hash.clone()),
                    ..step("COPY", &["src/,main.py", "."])
                },
                step("USER", &["user"]),
                step("RUN", &["echo hi"]),
                step("CMD", &["python3 main.py"]),
            ],
            cpu: Some(2),
            memory: Some(2048),
            disk_gb: Some(5),
            ..Default::default()
        };
        let plan = from_hopx(&req, HOST, &|h| h == hash).unwrap();
        assert_eq!(
            plan.base.packages,
            vec!["python3", "python3-pip", "python3-venv"]
        );
        assert_eq!(plan.base.variant, "apt");
        assert_eq!(plan.meta.env["PATH"], format!("/opt/venv/bin:{BASE_PATH}"));
        assert_eq!(plan.meta.workdir.as_deref(), Some("/app"));
        assert_eq!(plan.meta.start_cmd.as_deref(), Some("python3 main.py"));
        assert_eq!(plan.meta.resources.disk_mb, 5 * 1024);
        // image setup, COPY, RUN
        assert_eq!(plan.steps.len(), 3);
        assert!(matches!(&plan.steps[1], BuildStep::Copy { dest, .. } if dest == "/app/"));
        assert!(matches!(
            &plan.steps[2],
            BuildStep::Run { user: RunAs::User, workdir, .. } if workdir == "/app"
        ));
        // The minimal spec shares the python image's base (one bootstrap for both).
        let minimal = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/minimal.toml"),
        )
        .unwrap();
        assert_eq!(
            parse_toml("minimal", &minimal, HOST).unwrap().base,
            plan.base
        );

        let err = from_hopx(&req, HOST, &|_| false).unwrap_err();
        assert!(err.contains("not uploaded"), "{err}");
        for bad in ["ubuntu:22.04", "python:3.12", "node:20", "alpine"] {
            let r = HopxBuildRequest {
                from_image: bad.into(),
                ..req.clone()
            };
            let err = from_hopx(&r, HOST, &|_| true).unwrap_err();
            assert!(
                err.contains("debian:bookworm") && err.contains(bad),
                "{err}"
            );
        }
        for good in [
            "debian",
            "debian:12",
            "node",
            "node:18-slim",
            "ubuntu/node:18-22.04_edge",
        ] {
            let r = HopxBuildRequest {
                from_image: good.into(),
                steps: vec![step("RUN", &["true"])],
                ..req.clone()
            };
            from_hopx(&r, HOST, &|_| true).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        let r = HopxBuildRequest {
            steps: vec![step("USER", &["nobody"])],
            ..req.clone()
        };
        assert!(from_hopx(&r, HOST, &|_| true)
            .unwrap_err()
            .contains("nobody"));
    }

    #[test]
    fn env_references_expand() {
        let env = BTreeMap::from([("A".to_string(), "1".to_string())]);
        assert_eq!(expand("x$A-${A}y$B$", &env), "x1-1y$");
        assert_eq!(expand("${A}", &env), "1");
    }
}
