//! Template builds: queue, run, record, recover.
//!
//! A build goes through five weighted steps, reported as `progress` and `current_step`:
//!
//! 1. **bootstrap / packages** (0–55 %): the Debian base from `mmdebstrap`, shifted to the
//!    sandbox uid range, taken from the base cache when an identical one was made before
//!    (`hutch_runtime::template::bootstrap`); then cloned into the build's staging directory
//!    with hard links and prepared (network files, `/workspace`, the `user` account);
//! 2. **files** and 3. **commands** (55–92 %), in the order the request gives them. File steps
//!    are applied from the host, resolving paths inside the root. Consecutive commands run in
//!    one *build sandbox* — an ordinary native sandbox over the staging root, with internet
//!    access so apt reaches the mirror — through its agent; afterwards the sandbox is stopped and
//!    its upper layer flattened into the root, so later steps and later sandboxes see one tree;
//! 4. **finalize** (92–100 %): generated files written again, metadata saved, and the staging
//!    directory renamed to `<data_dir>/templates/<name>/<version>` — the only step that makes
//!    anything visible, so a failed or killed build leaves nothing but its log and its status.
//!
//! One build runs at a time (a semaphore; the others wait as `queued`): this machine has two
//! cores, and two bootstraps at once would only slow both. A build that a restart interrupted
//! is marked failed and its staging removed by [`Manager::recover_templates`].

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use hutch_client::AgentClient;
use hutch_runtime::template::bootstrap::{self, BaseCache, BaseSpec};
use hutch_runtime::template::files::{self, Owner};
use hutch_runtime::template::{finalize, shift, tree, TemplateRootfs};
use hutch_runtime::SandboxSpec;
use hutch_store::{BuildRecord, TemplateRecord};
use hutch_types::wire::HopxBuildRequest;
use hutch_types::{AgentBoot, Resources, SandboxId};
use rand::Rng;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::spec::{self, BuildPlan, BuildStep, HostLimits, RunAs};
use crate::templates::TemplateStatus;
use crate::{Manager, ManagerError};

/// Environment variable naming a base cache shared beyond one data directory (tests use it so
/// reruns and parallel servers bootstrap each base once). Default: `<data_dir>/templates/.cache`.
pub const CACHE_ENV: &str = "HUTCH_TEMPLATE_CACHE";
/// Bases unused for this long are removed at start-up.
const CACHE_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Build logs older than this are removed at start-up.
const LOG_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Largest COPY upload accepted.
pub const MAX_UPLOAD_BYTES: u64 = 2 << 30;
/// How long an upload link stays valid.
const UPLOAD_LINK_TTL: i64 = 3600;
/// Most log bytes returned by one logs call.
const LOG_CHUNK: u64 = 1 << 20;
/// Changes of the build sandbox's own agent, never part of a template.
const AGENT_STATE: &str = "var/lib/hutch-agent";

/// Build state shared by the registry: the queue slot, upload tickets and where things live.
pub(crate) struct BuildState {
    slot: Arc<tokio::sync::Semaphore>,
    /// Serialises decisions about names (submit, delete).
    names: Mutex<()>,
    uploads: Mutex<HashMap<String, UploadTicket>>,
    tmp_dir: PathBuf,
    logs_dir: PathBuf,
    uploads_dir: PathBuf,
    cache: BaseCache,
}

#[derive(Debug, Clone)]
struct UploadTicket {
    token: String,
    expires_at: i64,
    length: u64,
}

impl BuildState {
    pub(crate) fn new(templates_dir: &Path) -> Self {
        let cache_dir = std::env::var_os(CACHE_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| templates_dir.join(".cache"));
        Self {
            slot: Arc::new(tokio::sync::Semaphore::new(1)),
            names: Mutex::new(()),
            uploads: Mutex::new(HashMap::new()),
            tmp_dir: templates_dir.join(".tmp"),
            logs_dir: templates_dir.join(".logs"),
            uploads_dir: templates_dir.join(".uploads"),
            cache: BaseCache::new(cache_dir),
        }
    }

    fn log_path(&self, build_id: &str) -> PathBuf {
        self.logs_dir.join(format!("{build_id}.log"))
    }

    fn upload_path(&self, hash: &str) -> PathBuf {
        self.uploads_dir.join(format!("{hash}.tar.gz"))
    }
}

/// A build request, in either form, ready to queue.
#[derive(Debug, Clone)]
pub struct BuildSubmission {
    /// Template name.
    pub name: String,
    /// What to build.
    pub plan: BuildPlan,
    /// Replace an existing template of this name.
    pub force: bool,
    /// The request as submitted, kept with the build.
    pub source: String,
}

/// A queued build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildStarted {
    /// Build id.
    pub build_id: String,
    /// Template id.
    pub template_id: String,
}

/// A piece of a build log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    /// Text from the requested offset.
    pub text: String,
    /// Offset to ask for next.
    pub offset: u64,
    /// The build's status.
    pub status: String,
    /// Finished and fully read.
    pub complete: bool,
}

/// The answer to an upload-link request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadLink {
    /// The files are here already.
    pub present: bool,
    /// One-time token for the upload URL (None when present).
    pub token: Option<String>,
    /// Unix seconds after which the token is refused.
    pub expires_at: Option<i64>,
}

/// Why a build failed: the step (as the status reports it) and what happened.
#[derive(Debug)]
struct BuildFailure {
    step: String,
    message: String,
}

impl BuildFailure {
    fn new(step: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Self {
            step: step.into(),
            message: message.to_string(),
        }
    }
}

/// A build's log file. Lines are appended as they come, so `GET …/logs` can follow.
struct BuildLog {
    file: Mutex<fs::File>,
}

impl BuildLog {
    fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            file: Mutex::new(file),
        })
    }

    fn line(&self, text: &str) {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let _ = f.write_all(text.as_bytes());
        let _ = f.write_all(b"\n");
    }
}

/// Kills a process group when dropped (a cancelled or failed bootstrap leaves no apt or dpkg).
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn now() -> i64 {
    Utc::now().timestamp()
}

fn random_id(prefix: &str) -> String {
    let mut rng = rand::thread_rng();
    let s: String = (0..20)
        .map(|_| {
            let n = rng.gen_range(0..36u32);
            char::from_digit(n, 36).unwrap_or('0')
        })
        .collect();
    format!("{prefix}{s}")
}

/// Runs blocking filesystem work off the async runtime.
async fn blocking<T: Send + 'static>(
    step: &str,
    f: impl FnOnce() -> Result<T, hutch_runtime::template::TemplateError> + Send + 'static,
) -> Result<T, BuildFailure> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(BuildFailure::new(step, error_chain(&e))),
        Err(e) => Err(BuildFailure::new(
            step,
            format!("internal task failed: {e}"),
        )),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Reports progress to the store (and so to the status route).
struct Progress<'a> {
    manager: &'a Manager,
    build_id: &'a str,
}

impl Progress<'_> {
    fn set(&self, pct: u8, step: &str) {
        if let Err(e) =
            self.manager
                .store
                .set_build_progress(self.build_id, i64::from(pct.min(99)), step)
        {
            tracing::warn!(build = %self.build_id, error = %e, "cannot record build progress");
        }
    }
}

impl Manager {
    /// What this host can give a sandbox.
    pub fn host_limits(&self) -> HostLimits {
        HostLimits {
            cpus: self.cfg.host_cpus,
            memory_mb: self.cfg.host_memory_mb,
        }
    }

    /// Parses a TOML template spec (400 on any mistake, naming it).
    pub fn plan_toml_build(&self, name: &str, text: &str) -> Result<BuildPlan, ManagerError> {
        spec::parse_toml(name, text, self.host_limits()).map_err(ManagerError::Invalid)
    }

    /// Maps a HopX build request (400 on an image hutch cannot make, naming those it can).
    pub fn plan_hopx_build(&self, req: &HopxBuildRequest) -> Result<BuildPlan, ManagerError> {
        let state = &self.templates.builds;
        spec::from_hopx(req, self.host_limits(), &|h| state.upload_path(h).is_file())
            .map_err(ManagerError::Invalid)
    }

    /// Queues a build. Fails at once (409) if the name is taken and `force` is false, or a build
    /// of it is running.
    pub fn submit_build(
        self: &Arc<Self>,
        sub: BuildSubmission,
    ) -> Result<BuildStarted, ManagerError> {
        spec::validate_name(&sub.name).map_err(ManagerError::Invalid)?;
        let state = &self.templates.builds;
        let meta = serde_json::to_string(&sub.plan.meta)
            .map_err(|e| ManagerError::Task(format!("cannot encode template metadata: {e}")))?;
        let (build, template) = {
            let _names = state.names.lock().unwrap_or_else(|e| e.into_inner());
            if self.templates.is_builtin_name(&sub.name) && !sub.force {
                let id = self
                    .templates
                    .builtins()
                    .iter()
                    .find(|t| t.name == sub.name)
                    .map(|t| t.id.clone())
                    .unwrap_or_default();
                return Err(ManagerError::Conflict(format!(
                    "template {:?} is built in; pass force to build one in its place (the \
                     built-in stays reachable as id {id})",
                    sub.name
                )));
            }
            let running = self.store.builds_with_status("building")?;
            let now = now();
            let existing = self.store.template_by_name(&sub.name)?;
            let template = match existing {
                Some(t) => {
                    if let Some(b) = running.iter().find(|b| b.template_id == t.id) {
                        return Err(ManagerError::Conflict(format!(
                            "template {:?} is being built (build {}); wait for it to finish",
                            sub.name, b.id
                        )));
                    }
                    if t.version.is_some() && !sub.force {
                        return Err(ManagerError::Conflict(format!(
                            "template {:?} exists; pass force to replace it",
                            sub.name
                        )));
                    }
                    t
                }
                None => {
                    let mut t = TemplateRecord {
                        id: 0,
                        name: sub.name.clone(),
                        status: TemplateStatus::Building.as_str().into(),
                        version: None,
                        meta: meta.clone(),
                        build_id: None,
                        created_at: now,
                        updated_at: now,
                    };
                    t.id = self.store.insert_template(&t)?;
                    t
                }
            };
            let build = BuildRecord {
                id: random_id("bld-"),
                template_id: template.id,
                version: self.store.next_template_version(template.id)?,
                status: "building".into(),
                progress: 0,
                current_step: Some("queued".into()),
                error_message: None,
                meta: meta.clone(),
                source: sub.source.clone(),
                started_at: now,
                completed_at: None,
                duration_ms: None,
            };
            self.store.insert_build(&build)?;
            let mut t = template;
            if t.version.is_none() {
                // No active version: the template shows this build's state and metadata.
                t.status = TemplateStatus::Building.as_str().into();
                t.meta = meta;
            }
            t.build_id = Some(build.id.clone());
            t.updated_at = now;
            self.store.update_template(&t)?;
            self.refresh_templates()?;
            (build, t)
        };
        let log = BuildLog::open(&state.log_path(&build.id))
            .map_err(|e| ManagerError::Task(format!("cannot create the build log: {e}")))?;
        log.line(&format!(
            "build {} of template {} (id {}, version {}): Debian {}, {} step(s)",
            build.id,
            template.name,
            template.id,
            build.version,
            sub.plan.base.describe(),
            sub.plan.steps.len()
        ));
        tracing::info!(build = %build.id, template = %template.name, "template build queued");
        let me = self.clone();
        let started = BuildStarted {
            build_id: build.id.clone(),
            template_id: template.id.to_string(),
        };
        tokio::spawn(async move { me.run_build(build, template.name, sub.plan, log).await });
        Ok(started)
    }

    /// Reloads the registry's snapshot of built templates from the store.
    fn refresh_templates(&self) -> Result<(), ManagerError> {
        let all = self.store.all_templates()?;
        self.templates.set_built(&all);
        Ok(())
    }

    async fn run_build(
        self: Arc<Self>,
        mut build: BuildRecord,
        name: String,
        plan: BuildPlan,
        log: BuildLog,
    ) {
        let state = &self.templates.builds;
        let permit = match state.slot.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return,
        };
        let started = Instant::now();
        log.line("build started");
        let staging = state.tmp_dir.join(&build.id);
        let result = self.execute(&build, &name, &plan, &staging, &log).await;
        let result = match result {
            Ok(()) => self.publish(&build, &name, &plan, &staging).await,
            Err(e) => Err(e),
        };
        let duration = started.elapsed();
        build.completed_at = Some(now());
        build.duration_ms = Some(duration.as_millis() as i64);
        match result {
            Ok(()) => {
                build.status = TemplateStatus::Active.as_str().into();
                build.progress = 100;
                build.current_step = Some("done".into());
                log.line(&format!(
                    "✅ template {name} version {} is active (built in {:.1} s)",
                    build.version,
                    duration.as_secs_f64()
                ));
                tracing::info!(build = %build.id, template = %name, ms = duration.as_millis() as u64, "template built");
            }
            Err(f) => {
                let message = format!("{} failed: {}", f.step, f.message);
                // Nothing half-made: only the log and this record remain.
                let s = staging.clone();
                let _ = tokio::task::spawn_blocking(move || tree::remove_tree(&s)).await;
                log.line(&format!("❌ ERROR: {message}"));
                // Keep the progress it reached: it says how far the build got.
                if let Ok(Some(cur)) = self.store.get_build(&build.id) {
                    build.progress = cur.progress;
                }
                tracing::warn!(build = %build.id, template = %name, error = %message, "template build failed");
                build.status = TemplateStatus::Failed.as_str().into();
                build.current_step = Some(f.step);
                build.error_message = Some(message);
            }
        }
        if let Err(e) = self.finish_records(&build) {
            tracing::error!(build = %build.id, error = %e, "cannot record the end of a build");
        }
        drop(permit);
    }

    /// Records a finished build and updates its template.
    fn finish_records(&self, build: &BuildRecord) -> Result<(), ManagerError> {
        let _names = self
            .templates
            .builds
            .names
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.store.update_build(build)?;
        if let Some(mut t) = self.store.get_template(build.template_id)? {
            if build.status == "active" {
                t.status = TemplateStatus::Active.as_str().into();
                t.version = Some(build.version);
                t.meta = build.meta.clone();
            } else if t.version.is_none() {
                t.status = TemplateStatus::Failed.as_str().into();
            }
            t.updated_at = now();
            self.store.update_template(&t)?;
            self.refresh_templates()?;
            if build.status == "active" {
                self.collect_old_versions(&t);
            }
        }
        Ok(())
    }

    /// Removes version directories of `t` other than its active one, unless a sandbox made from
    /// it may still use them (sandboxes keep the root they started from).
    fn collect_old_versions(&self, t: &TemplateRecord) {
        match self.store.count_sandboxes_of_template(&t.id.to_string()) {
            Ok(0) => {}
            _ => return,
        }
        let dir = self.templates.dir().join(&t.name);
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let keep = t
                .version
                .is_some_and(|v| e.file_name().to_string_lossy() == v.to_string());
            if !keep {
                if let Err(err) = tree::remove_tree(&e.path()) {
                    tracing::warn!(error = %err, "cannot remove an old template version");
                }
            }
        }
    }

    /// Steps 1–3 into `staging/rootfs`.
    async fn execute(
        &self,
        build: &BuildRecord,
        name: &str,
        plan: &BuildPlan,
        staging: &Path,
        log: &BuildLog,
    ) -> Result<(), BuildFailure> {
        let progress = Progress {
            manager: self,
            build_id: &build.id,
        };
        let uid_base = self.templates.uid_base();
        progress.set(1, "bootstrap");
        let base = self.ensure_base(plan, log, &progress).await?;
        let st = staging.to_path_buf();
        blocking("bootstrap", move || {
            tree::remove_tree(&st)?;
            fs::create_dir_all(&st).map_err(|e| hutch_runtime::template::TemplateError::Io {
                op: "mkdir",
                path: st.clone(),
                source: e,
            })
        })
        .await?;
        let rootfs = staging.join("rootfs");
        let t = Instant::now();
        let (b, r) = (base.clone(), rootfs.clone());
        let cloned = blocking("bootstrap", move || tree::clone_tree(&b, &r)).await?;
        log.line(&format!(
            "cloned the base: {} entries linked, {} copied, {} directories ({:.1} s)",
            cloned.linked,
            cloned.copied,
            cloned.dirs,
            t.elapsed().as_secs_f64()
        ));
        let mut dirs: Vec<String> = plan.meta.workdir.iter().cloned().collect();
        for s in &plan.steps {
            if let BuildStep::Run { workdir, .. } = s {
                dirs.push(workdir.clone());
            }
        }
        let r = rootfs.clone();
        blocking("bootstrap", move || {
            let d: Vec<&Path> = dirs.iter().map(Path::new).collect();
            finalize::prepare(&r, uid_base, &d)
        })
        .await?;
        progress.set(55, "files");

        let total = plan.steps.len();
        let mut i = 0;
        while i < total {
            if plan.steps[i].is_run() {
                let end = plan.steps[i..]
                    .iter()
                    .position(|s| !s.is_run())
                    .map_or(total, |n| i + n);
                self.run_commands(name, plan, &rootfs, i, end, log, &progress)
                    .await?;
                i = end;
            } else {
                let step = &plan.steps[i];
                let label = format!("files (step {}/{total}: {})", i + 1, step.describe());
                progress.set(step_progress(i, total), &label);
                log.line(&format!("==> [{}/{total}] {}", i + 1, step.describe()));
                self.apply_file_step(step, &rootfs, log)
                    .await
                    .map_err(|e| BuildFailure::new(label, e.message))?;
                i += 1;
            }
        }
        progress.set(92, "finalize");
        let r = rootfs.clone();
        let workdir = plan.meta.workdir.clone();
        blocking("finalize", move || {
            let d: Vec<&Path> = workdir.iter().map(Path::new).collect();
            finalize::prepare(&r, uid_base, &d)
        })
        .await?;
        let meta_path = staging.join("template.json");
        let meta = serde_json::json!({
            "name": name,
            "build_id": build.id,
            "version": build.version,
            "meta": serde_json::from_str::<serde_json::Value>(&build.meta).unwrap_or_default(),
            "hutch": env!("CARGO_PKG_VERSION"),
        });
        fs::write(&meta_path, meta.to_string())
            .map_err(|e| BuildFailure::new("finalize", format!("write {meta_path:?}: {e}")))?;
        if let Ok(size) = bootstrap::tree_size(&rootfs) {
            log.line(&format!("root filesystem: {} MB", size / 1_000_000));
        }
        Ok(())
    }

    /// Step 4: the staging directory becomes `<templates>/<name>/<version>`.
    async fn publish(
        &self,
        build: &BuildRecord,
        name: &str,
        _plan: &BuildPlan,
        staging: &Path,
    ) -> Result<(), BuildFailure> {
        let target = self.templates.version_dir(name, build.version);
        let st = staging.to_path_buf();
        blocking("finalize", move || {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(|e| {
                    hutch_runtime::template::TemplateError::Io {
                        op: "mkdir",
                        path: parent.to_path_buf(),
                        source: e,
                    }
                })?;
            }
            tree::remove_tree(&target)?;
            fs::rename(&st, &target).map_err(|e| hutch_runtime::template::TemplateError::Io {
                op: "rename",
                path: target.clone(),
                source: e,
            })
        })
        .await
    }

    /// The shifted base of `plan`, from the cache or a fresh `mmdebstrap`.
    async fn ensure_base(
        &self,
        plan: &BuildPlan,
        log: &BuildLog,
        progress: &Progress<'_>,
    ) -> Result<PathBuf, BuildFailure> {
        let state = &self.templates.builds;
        let uid_base = self.templates.uid_base();
        let base: BaseSpec = plan.base.clone();
        let suite = base.suite.clone();
        let sources = blocking("bootstrap", move || bootstrap::host_sources(&suite)).await?;
        let key = bootstrap::cache_key(&base, &sources, uid_base);
        let short = &key[..12];
        if !plan.skip_cache {
            if let Some(root) = state.cache.get(&key) {
                log.line(&format!(
                    "==> base Debian {} (cached {short} in {})",
                    base.describe(),
                    state.cache.dir().display()
                ));
                return Ok(root);
            }
        }
        let cache = state.cache.clone();
        let k = key.clone();
        let lock = blocking("bootstrap", move || cache.lock(&k)).await?;
        if !plan.skip_cache {
            // Another builder may have made it while we waited for the lock.
            if let Some(root) = state.cache.get(&key) {
                log.line(&format!(
                    "==> base Debian {} (cached {short})",
                    base.describe()
                ));
                return Ok(root);
            }
        }
        if !bootstrap::mmdebstrap_available() {
            return Err(BuildFailure::new(
                "bootstrap",
                "mmdebstrap is not installed (apt-get install mmdebstrap, or scripts/deps.sh)",
            ));
        }
        let cache = state.cache.clone();
        let k = key.clone();
        let staging = blocking("bootstrap", move || cache.staging(&k)).await?;
        let target = staging.join("rootfs");
        log.line(&format!(
            "==> base Debian {} from {} (cache key {short})",
            base.describe(),
            sources.lines.join(" | ")
        ));
        let t = Instant::now();
        let mut cmd = tokio::process::Command::from(bootstrap::command(&base, &target, &sources));
        let run = self
            .run_logged(&mut cmd, log, |line| {
                if let Some((step, pct)) = bootstrap::stage(line) {
                    progress.set(1 + (u32::from(pct) * 50 / 100) as u8, step);
                }
            })
            .await;
        let fail = |message: String| {
            let _ = fs::remove_dir_all(&staging);
            BuildFailure::new("bootstrap", message)
        };
        match run {
            Ok(status) if status.success() => {}
            Ok(status) => {
                return Err(fail(format!(
                    "mmdebstrap {status} (the log shows its output)"
                )))
            }
            Err(e) => return Err(fail(format!("cannot run mmdebstrap: {e}"))),
        }
        log.line(&format!(
            "mmdebstrap took {:.1} s",
            t.elapsed().as_secs_f64()
        ));
        progress.set(52, "packages");
        let t = Instant::now();
        let r = target.clone();
        let shifted =
            match blocking("bootstrap", move || shift::shift_ownership(&r, uid_base)).await {
                Ok(s) => s,
                Err(e) => return Err(fail(e.message)),
            };
        log.line(&format!(
            "shifted ownership by {uid_base}: {} entries, {} set-id bits and {} capabilities \
             restored ({:.1} s)",
            shifted.entries,
            shifted.setid_restored,
            shifted.caps_restored,
            t.elapsed().as_secs_f64()
        ));
        let cache = state.cache.clone();
        let (k, st) = (key.clone(), staging.clone());
        let root = match blocking("bootstrap", move || cache.commit(&k, &st)).await {
            Ok(r) => r,
            Err(e) => return Err(fail(e.message)),
        };
        drop(lock);
        Ok(root)
    }

    /// Runs a command, appending its stdout and stderr to the log line by line.
    async fn run_logged(
        &self,
        cmd: &mut tokio::process::Command,
        log: &BuildLog,
        mut on_line: impl FnMut(&str),
    ) -> io::Result<std::process::ExitStatus> {
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = cmd.spawn()?;
        let mut guard = GroupGuard(child.id().and_then(|p| i32::try_from(p).ok()));
        let mut out = child.stdout.take().map(tokio::io::BufReader::new);
        let mut err = child.stderr.take().map(tokio::io::BufReader::new);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        loop {
            tokio::select! {
                n = async { match out.as_mut() { Some(r) => r.read_until(b'\n', &mut a).await, None => std::future::pending().await } } => {
                    if n.unwrap_or(0) == 0 { out = None; } else {
                        let line = String::from_utf8_lossy(&a).trim_end().to_string();
                        on_line(&line); log.line(&line); a.clear();
                    }
                }
                n = async { match err.as_mut() { Some(r) => r.read_until(b'\n', &mut b).await, None => std::future::pending().await } } => {
                    if n.unwrap_or(0) == 0 { err = None; } else {
                        let line = String::from_utf8_lossy(&b).trim_end().to_string();
                        on_line(&line); log.line(&line); b.clear();
                    }
                }
            }
            if out.is_none() && err.is_none() {
                break;
            }
        }
        let status = child.wait().await?;
        if status.success() {
            guard.0 = None;
        }
        Ok(status)
    }

    /// A file step, applied to the (unmounted) root from the host.
    async fn apply_file_step(
        &self,
        step: &BuildStep,
        rootfs: &Path,
        log: &BuildLog,
    ) -> Result<(), BuildFailure> {
        let uid_base = self.templates.uid_base();
        let root = rootfs.to_path_buf();
        match step.clone() {
            BuildStep::Write {
                dest,
                data,
                mode,
                owner,
            } => {
                blocking("files", move || {
                    files::write_in_root(
                        &root,
                        Path::new(&dest),
                        &data,
                        mode,
                        Owner::in_sandbox(uid_base, owner),
                        Owner::in_sandbox(uid_base, 0),
                    )
                })
                .await?;
            }
            BuildStep::Copy {
                sources,
                dest,
                files_hash,
            } => {
                let archive = self.templates.builds.upload_path(&files_hash);
                let stats = blocking("files", move || {
                    files::extract_archive(
                        &root,
                        &archive,
                        &sources,
                        &dest,
                        Owner::in_sandbox(uid_base, 0),
                    )
                })
                .await?;
                log.line(&format!(
                    "unpacked {} files, {} directories, {} symlinks ({} bytes{})",
                    stats.files,
                    stats.dirs,
                    stats.links,
                    stats.bytes,
                    if stats.skipped > 0 {
                        format!(", {} device or fifo members skipped", stats.skipped)
                    } else {
                        String::new()
                    }
                ));
            }
            BuildStep::Run { .. } => {}
        }
        Ok(())
    }

    /// Runs steps `from..to` (all commands) in one build sandbox over `rootfs`, then flattens
    /// the sandbox's changes into `rootfs`.
    #[allow(clippy::too_many_arguments)]
    async fn run_commands(
        &self,
        name: &str,
        plan: &BuildPlan,
        rootfs: &Path,
        from: usize,
        to: usize,
        log: &BuildLog,
        progress: &Progress<'_>,
    ) -> Result<(), BuildFailure> {
        let total = plan.steps.len();
        let first_label = format!(
            "commands (step {}/{total}: {})",
            from + 1,
            plan.steps[from].describe()
        );
        progress.set(step_progress(from, total), &first_label);
        let id = SandboxId::parse(&random_id("build-"))
            .map_err(|e| BuildFailure::new(first_label.clone(), e))?;
        let resources = Resources {
            vcpu: self.cfg.host_cpus.max(1),
            memory_mb: self
                .cfg
                .host_memory_mb
                .clamp(Resources::MIN_MEMORY_MB, 4096),
            disk_mb: plan.meta.resources.disk_mb,
            pids: 4096,
        };
        let boot = AgentBoot {
            sandbox_id: id.to_string(),
            template: name.to_string(),
            env_vars: BTreeMap::new(),
            resources: Some(resources),
            workdir: "/".into(),
        };
        let spec = SandboxSpec {
            id: id.clone(),
            template: TemplateRootfs {
                layers: vec![rootfs.to_path_buf()],
                binds: Vec::new(),
            },
            resources,
            internet: true,
            boot: serde_json::to_value(&boot).unwrap_or_default(),
        };
        log.line(&format!(
            "starting build sandbox {id} (internet on, for the mirror)"
        ));
        let created = self.backend_op(move |b| b.create(&spec)).await;
        if let Err(e) = created {
            return Err(BuildFailure::new(
                first_label,
                format!("cannot start the build sandbox: {e}"),
            ));
        }
        let result = async {
            self.wait_ready(&id).await.map_err(|e| {
                BuildFailure::new(first_label.clone(), format!("build sandbox: {e}"))
            })?;
            let client = AgentClient::new(self.backend.agent_socket(&id));
            for i in from..to {
                let step = &plan.steps[i];
                let label = format!("commands (step {}/{total}: {})", i + 1, step.describe());
                progress.set(step_progress(i, total), &label);
                log.line(&format!("==> [{}/{total}] {}", i + 1, step.describe()));
                run_one(&client, step, log)
                    .await
                    .map_err(|m| BuildFailure::new(label, m))?;
            }
            Ok(())
        }
        .await;
        let stop_id = id.clone();
        let stopped = self
            .backend_op(move |b| b.stop(&stop_id, Duration::from_secs(2)))
            .await;
        let merged = match (&result, stopped) {
            (Ok(()), Ok(())) => match self.backend.upper_dir(&id) {
                Some(upper) => {
                    let r = rootfs.to_path_buf();
                    let t = Instant::now();
                    let label = format!("commands (steps {}–{to})", from + 1);
                    match blocking(&label, move || {
                        tree::merge_upper(&upper, &r, &[AGENT_STATE])
                    })
                    .await
                    {
                        Ok(s) => {
                            log.line(&format!(
                                "flattened the build sandbox's changes: {} entries moved, {} \
                                 directories, {} removed ({:.1} s)",
                                s.moved,
                                s.dirs,
                                s.removed,
                                t.elapsed().as_secs_f64()
                            ));
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                None => Err(BuildFailure::new(
                    "commands",
                    "the sandbox backend keeps no upper layer to flatten",
                )),
            },
            (Ok(()), Err(e)) => Err(BuildFailure::new(
                "commands",
                format!("cannot stop the build sandbox: {e}"),
            )),
            (Err(_), _) => Ok(()),
        };
        let kill_id = id.clone();
        if let Err(e) = self.backend_op(move |b| b.kill(&kill_id)).await {
            tracing::warn!(sandbox = %id, error = %e, "cannot remove a build sandbox");
        }
        result?;
        merged
    }

    /// The status of a build.
    pub fn build(&self, build_id: &str) -> Result<BuildRecord, ManagerError> {
        self.store
            .get_build(build_id)?
            .ok_or_else(|| ManagerError::BuildNotFound(build_id.to_string()))
    }

    /// The build a logs request means: a build id, or a template (id or name) for its latest
    /// build — the SDK asks with the template id (`spec` §6.11 step 3).
    fn build_for(&self, id: &str) -> Result<BuildRecord, ManagerError> {
        if let Some(b) = self.store.get_build(id)? {
            return Ok(b);
        }
        let t = match id.parse::<i64>() {
            Ok(n) => self.store.get_template(n)?,
            Err(_) => self.store.template_by_name(id)?,
        };
        t.and_then(|t| t.build_id)
            .and_then(|b| self.store.get_build(&b).ok().flatten())
            .ok_or_else(|| ManagerError::BuildNotFound(id.to_string()))
    }

    /// The log of a build (or of a template's latest build) from byte `offset`.
    pub fn build_logs(&self, id: &str, offset: u64) -> Result<LogChunk, ManagerError> {
        let build = self.build_for(id)?;
        let path = self.templates.builds.log_path(&build.id);
        let mut text = String::new();
        let mut next = offset;
        let mut len = 0;
        if let Ok(mut f) = fs::File::open(&path) {
            len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if offset < len {
                let mut buf = Vec::new();
                let _ = f.seek(SeekFrom::Start(offset));
                let _ = f.take(LOG_CHUNK).read_to_end(&mut buf);
                // Stop before a character cut in half; it comes whole next time.
                let valid = match std::str::from_utf8(&buf) {
                    Ok(_) => buf.len(),
                    Err(e) if e.error_len().is_none() => e.valid_up_to(),
                    Err(_) => buf.len(),
                };
                text = String::from_utf8_lossy(&buf[..valid]).into_owned();
                next = offset + valid as u64;
            }
        }
        let finished = build.status != "building";
        Ok(LogChunk {
            text,
            offset: next.max(offset),
            status: build.status,
            complete: finished && next >= len,
        })
    }

    /// An upload link for a COPY step's files (`present` if they are here already).
    pub fn upload_link(&self, hash: &str, length: u64) -> Result<UploadLink, ManagerError> {
        if !spec::is_hash(hash) {
            return Err(ManagerError::Invalid(format!(
                "files_hash {hash:?} is not a lower-case sha256 hex digest"
            )));
        }
        if length > MAX_UPLOAD_BYTES {
            return Err(ManagerError::Invalid(format!(
                "content_length {length} is over the {MAX_UPLOAD_BYTES}-byte limit"
            )));
        }
        let state = &self.templates.builds;
        if state.upload_path(hash).is_file() {
            return Ok(UploadLink {
                present: true,
                token: None,
                expires_at: None,
            });
        }
        let mut bytes = [0u8; 24];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
        let ticket = UploadTicket {
            token: hex::encode(bytes),
            expires_at: now() + UPLOAD_LINK_TTL,
            length,
        };
        let mut uploads = state.uploads.lock().unwrap_or_else(|e| e.into_inner());
        let t = now();
        uploads.retain(|_, v| v.expires_at > t);
        uploads.insert(hash.to_string(), ticket.clone());
        Ok(UploadLink {
            present: false,
            token: Some(ticket.token),
            expires_at: Some(ticket.expires_at),
        })
    }

    /// Receives the tar.gz of an upload link: checks the token, streams the body to disk (at
    /// most the announced length), then makes it visible under its hash.
    pub async fn receive_upload(
        &self,
        hash: &str,
        token: &str,
        mut body: impl AsyncRead + Unpin + Send,
    ) -> Result<u64, ManagerError> {
        let state = &self.templates.builds;
        let ticket = {
            let uploads = state.uploads.lock().unwrap_or_else(|e| e.into_inner());
            uploads.get(hash).cloned()
        };
        let ticket = ticket
            .filter(|t| t.expires_at > now())
            .filter(|t| {
                t.token.len() == token.len()
                    && t.token
                        .bytes()
                        .zip(token.bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
            })
            .ok_or_else(|| {
                ManagerError::Forbidden(
                    "invalid or expired upload link; ask POST /v1/templates/files/upload-link \
                     for a new one"
                        .into(),
                )
            })?;
        let limit = if ticket.length > 0 {
            ticket.length
        } else {
            MAX_UPLOAD_BYTES
        };
        fs::create_dir_all(&state.uploads_dir)
            .map_err(|e| ManagerError::Task(format!("cannot create the upload directory: {e}")))?;
        let part = state
            .uploads_dir
            .join(format!(".{hash}.{}.part", random_id("")));
        let result = async {
            let mut f = tokio::fs::File::create(&part).await?;
            let mut total = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = body.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                if total > limit {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("upload is larger than the announced {limit} bytes"),
                    ));
                }
                f.write_all(&buf[..n]).await?;
            }
            f.flush().await?;
            f.sync_all().await?;
            Ok(total)
        }
        .await;
        let total = match result {
            Ok(t) => t,
            Err(e) => {
                let _ = fs::remove_file(&part);
                return Err(ManagerError::Invalid(format!("upload failed: {e}")));
            }
        };
        let mut magic = [0u8; 2];
        let is_gzip = fs::File::open(&part)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
            && magic == [0x1f, 0x8b];
        if !is_gzip {
            let _ = fs::remove_file(&part);
            return Err(ManagerError::Invalid(
                "the upload is not a gzip-compressed tar".into(),
            ));
        }
        fs::rename(&part, state.upload_path(hash))
            .map_err(|e| ManagerError::Task(format!("cannot store the upload: {e}")))?;
        state
            .uploads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(hash);
        Ok(total)
    }

    /// Deletes a built template (by name or id) and its files. Built-ins: 403. A template with
    /// sandboxes left, or a build running: 409 — delete those sandboxes first, so no sandbox
    /// ever loses the root it runs on.
    pub async fn delete_template(
        &self,
        name_or_id: &str,
    ) -> Result<crate::TemplateInfo, ManagerError> {
        let t = self
            .templates
            .find(name_or_id)
            .ok_or_else(|| ManagerError::TemplateNotFound(name_or_id.to_string()))?;
        if t.builtin {
            return Err(ManagerError::Protected(t.name.clone()));
        }
        let id: i64 =
            t.id.parse()
                .map_err(|_| ManagerError::TemplateNotFound(name_or_id.to_string()))?;
        {
            let _names = self
                .templates
                .builds
                .names
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(b) = self
                .store
                .builds_with_status("building")?
                .into_iter()
                .find(|b| b.template_id == id)
            {
                return Err(ManagerError::Conflict(format!(
                    "template {:?} is being built (build {}); delete it when the build ends",
                    t.name, b.id
                )));
            }
            let n = self.store.count_sandboxes_of_template(&t.id)?;
            if n > 0 {
                return Err(ManagerError::Conflict(format!(
                    "{n} sandbox(es) still use template {:?}; delete them first",
                    t.name
                )));
            }
            self.store.delete_template(id)?;
            self.refresh_templates()?;
        }
        let dir = self.templates.dir().join(&t.name);
        if let Err(e) = tokio::task::spawn_blocking(move || tree::remove_tree(&dir)).await {
            tracing::warn!(error = %e, "cannot remove a deleted template's files");
        }
        tracing::info!(template = %t.name, "template deleted");
        Ok(t)
    }

    /// Start-up: marks builds a restart interrupted as failed, removes their staging and other
    /// leftovers (orphaned version directories, partial uploads, stale logs and cache entries),
    /// and loads the built templates. Called by [`Manager::recover`].
    pub async fn recover_templates(&self) -> Result<(), ManagerError> {
        let state = &self.templates.builds;
        for mut b in self.store.builds_with_status("building")? {
            b.status = TemplateStatus::Failed.as_str().into();
            b.error_message = Some(format!(
                "{} failed: the server stopped during the build",
                b.current_step.as_deref().unwrap_or("build")
            ));
            b.completed_at = Some(now());
            if let Ok(log) = BuildLog::open(&state.log_path(&b.id)) {
                log.line("❌ ERROR: interrupted: the server stopped during the build");
            }
            self.finish_records(&b)?;
            tracing::warn!(build = %b.id, "template build interrupted by a restart; marked failed");
        }
        let templates = self.store.all_templates()?;
        let dir = self.templates.dir().to_path_buf();
        let tmp = state.tmp_dir.clone();
        let uploads = state.uploads_dir.clone();
        let logs = state.logs_dir.clone();
        let cache = state.cache.clone();
        let known: Vec<String> = templates.iter().map(|t| t.name.clone()).collect();
        tokio::task::spawn_blocking(move || {
            let _ = tree::remove_tree(&tmp);
            for (d, max_age) in [(&uploads, None), (&logs, Some(LOG_MAX_AGE))] {
                let Ok(entries) = fs::read_dir(d) else {
                    continue;
                };
                for e in entries.flatten() {
                    let partial = e.file_name().to_string_lossy().ends_with(".part");
                    let old = max_age.is_some_and(|age| {
                        e.metadata()
                            .and_then(|m| m.modified())
                            .ok()
                            .and_then(|t| t.elapsed().ok())
                            .is_some_and(|el| el > age)
                    });
                    if partial || old {
                        let _ = fs::remove_file(e.path());
                    }
                }
            }
            // Directories of templates that no longer exist (a delete interrupted midway).
            if let Ok(entries) = fs::read_dir(&dir) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') || name == "builtin" || known.contains(&name) {
                        continue;
                    }
                    let _ = tree::remove_tree(&e.path());
                }
            }
            cache.prune(CACHE_MAX_AGE);
        })
        .await
        .map_err(|e| ManagerError::Task(e.to_string()))?;
        for t in &templates {
            self.collect_old_versions(t);
        }
        self.refresh_templates()
    }
}

/// Progress of step `i` of `total` within the files-and-commands band (55–92 %).
fn step_progress(i: usize, total: usize) -> u8 {
    (55 + 37 * i / total.max(1)) as u8
}

/// Runs one command step through the build sandbox's agent; Err names what went wrong.
async fn run_one(client: &AgentClient, step: &BuildStep, log: &BuildLog) -> Result<(), String> {
    let BuildStep::Run {
        command,
        env,
        workdir,
        user,
        timeout,
    } = step
    else {
        return Ok(());
    };
    let mut env = env.clone();
    env.entry("DEBIAN_FRONTEND".into())
        .or_insert_with(|| "noninteractive".into());
    let body = match user {
        RunAs::Root => serde_json::json!({
            "command": command,
            "timeout": timeout.as_secs().max(1),
            "workdir": workdir,
            "env": env,
        }),
        RunAs::User => {
            for (k, v) in [
                ("HOME", "/home/user"),
                ("USER", "user"),
                ("LOGNAME", "user"),
            ] {
                env.insert(k.into(), v.into());
            }
            serde_json::json!({
                "command": "setpriv",
                "args": ["--reuid=1000", "--regid=1000", "--init-groups", "--", "/bin/sh", "-c", command],
                "timeout": timeout.as_secs().max(1),
                "workdir": workdir,
                "env": env,
            })
        }
    };
    let t = Instant::now();
    let (status, bytes) = client
        .request(
            hutch_client::Method::POST,
            "/commands/run",
            Some(body.to_string().into()),
            *timeout + Duration::from_secs(30),
        )
        .await
        .map_err(|e| format!("the build sandbox's agent failed: {e}"))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    // A timed-out command answers 408 with its output in `details`.
    let out = if status.is_success() {
        &v
    } else {
        v.get("details").unwrap_or(&v)
    };
    for key in ["stdout", "stderr"] {
        if let Some(text) = out.get(key).and_then(|s| s.as_str()) {
            for line in text.lines() {
                log.line(line);
            }
        }
    }
    if status.as_u16() == 408 {
        return Err(format!("timed out after {} s", timeout.as_secs()));
    }
    if !status.is_success() {
        let msg = v
            .get("error")
            .and_then(|e| e.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        return Err(format!("the agent answered {status}: {msg}"));
    }
    let code = v.get("exit_code").and_then(|c| c.as_i64()).unwrap_or(-1);
    log.line(&format!(
        "(exit code {code}, {:.1} s)",
        t.elapsed().as_secs_f64()
    ));
    if code != 0 {
        return Err(format!("command exited with code {code}"));
    }
    Ok(())
}
