//! The `native` backend: Linux namespaces, an overlayfs root, cgroups, seccomp, Landlock.
//!
//! One request, process by process (see `docs/architecture.md`):
//!
//! ```text
//! server (child subreaper)
//!   └─ hutch __spawn        intermediate: joins cgroups, binds the agent socket, clones
//!        └─ hutch:[init]    new mnt/pid/uts/ipc/net/cgroup ns; builds the root as real root,
//!                           pivots, enters its user namespace, drops privileges, becomes PID 1
//!             └─ hutch:[agent]   the HopX agent API on the inherited socket
//! ```
//! The intermediate exits once the sandbox is up, so PID 1 is re-parented to the server, which
//! reaps it when the sandbox ends.

mod channel;
mod init;
mod intermediate;
mod spawn;
mod spawner;
mod state;

use std::fs;
use std::os::unix::fs::{lchown, DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use hutch_types::SandboxId;

pub use intermediate::{Pid1Context, Pid1Entry};
pub use spawner::spawner_main;

use crate::backend::{Backend, ResourceUsage, RuntimeStatus, SandboxSpec};
use crate::cgroup::{CgroupManager, SandboxCgroup};
use crate::error::RuntimeError;
use crate::net::{self, NetConfig};
use crate::sys;
use state::{ProcessRecord, StateFile};

/// Size of the uid/gid range each sandbox's user namespace maps.
pub const UID_COUNT: u32 = 65_536;

/// How the native backend is set up.
#[derive(Debug, Clone)]
pub struct NativeConfig {
    /// Sandboxes live in `<data_dir>/sandboxes/<id>`.
    pub data_dir: PathBuf,
    /// The program run as the spawner (the hutch binary; `/proc/self/exe` in the server).
    pub helper_exe: PathBuf,
    /// Arguments that select the spawner mode (`["__spawner"]`); the socket path is appended.
    pub helper_args: Vec<String>,
    /// Host uid (and gid) that root inside a sandbox maps to.
    pub uid_base: u32,
    /// The address pool for sandboxes with internet access.
    pub net: NetConfig,
    /// Distinguishes this server's cgroups from another's on the same host.
    pub instance: String,
}

/// The native backend.
pub struct NativeBackend {
    cfg: NativeConfig,
    cgroups: CgroupManager,
    spawner: spawner::SpawnerClient,
    /// Host firewall rules are installed on first use, since only internet sandboxes need them.
    rules: Mutex<bool>,
}

impl NativeBackend {
    /// Detects the host's cgroup layout and connects to (or starts) the data directory's spawner.
    pub fn new(cfg: NativeConfig) -> Result<Self, RuntimeError> {
        let cgroups = CgroupManager::detect(&cfg.instance)?;
        for (sub, mode) in [("sandboxes", 0o711), ("run", 0o700)] {
            let dir = cfg.data_dir.join(sub);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&dir)
                .map_err(RuntimeError::io("mkdir", &dir))?;
        }
        let spawner = spawner::SpawnerClient::ensure(
            &cfg.data_dir.join("run"),
            &cfg.helper_exe,
            &cfg.helper_args,
        )?;
        Ok(Self {
            cfg,
            cgroups,
            spawner,
            rules: Mutex::new(false),
        })
    }

    /// Stops the spawner (tests, `hutch purge`). Running sandboxes keep running but lose their
    /// reaper; call this only once none are left.
    pub fn shutdown_spawner(&self) -> Result<(), RuntimeError> {
        self.spawner.shutdown()
    }

    /// The backend's configuration.
    pub fn config(&self) -> &NativeConfig {
        &self.cfg
    }

    /// `unified`, `hybrid` or `legacy`.
    pub fn cgroup_layout(&self) -> &'static str {
        self.cgroups.layout().describe()
    }

    fn dir(&self, id: &SandboxId) -> PathBuf {
        self.cfg.data_dir.join("sandboxes").join(id.as_str())
    }

    /// The cgroups of a sandbox: those its state records; for older records, those its PID 1
    /// is in; failing both, the ones a sandbox of this id would get from this process.
    fn cgroup(&self, st: &StateFile) -> SandboxCgroup {
        match &st.process {
            Some(rec) if !rec.cgroup_dirs.is_empty() => self.cgroups.from_dirs(&rec.cgroup_dirs),
            Some(rec) if Self::alive(rec) => self
                .cgroups
                .of_process(rec.pid)
                .unwrap_or_else(|| self.cgroups.sandbox(st.spec.id.as_str())),
            _ => self.cgroups.sandbox(st.spec.id.as_str()),
        }
    }

    fn load(&self, id: &SandboxId) -> Result<StateFile, RuntimeError> {
        let dir = self.dir(id);
        if !dir.join(state::FILE).exists() {
            return Err(RuntimeError::NotFound(id.clone()));
        }
        StateFile::load(&dir)
    }

    fn ensure_rules(&self) -> Result<(), RuntimeError> {
        let mut done = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        if !*done {
            net::install_host_rules(&self.cfg.net)?;
            *done = true;
        }
        Ok(())
    }

    /// True if the recorded PID 1 is still that process and alive.
    fn alive(rec: &ProcessRecord) -> bool {
        sys::process_start_time(rec.pid) == Some(rec.start_time)
            && !matches!(sys::process_state(rec.pid), Some('Z') | Some('X') | None)
    }

    fn start_processes(&self, dir: &Path, st: &mut StateFile) -> Result<(), RuntimeError> {
        let id = &st.spec.id;
        let group = self.cgroups.create(id.as_str(), &st.spec.resources)?;
        let result = (|| {
            if st.spec.internet {
                self.ensure_rules()?;
            }
            let req = spawn::request(&self.cfg, dir, &st.spec, &group);
            spawn::run_helper(&self.spawner, req)
        })();
        match result {
            Ok(report) => {
                st.process = Some(ProcessRecord {
                    pid: report.pid,
                    start_time: report.start_time,
                    lease: report.lease,
                    cgroup_dirs: group.dirs(),
                });
                st.save(dir)
            }
            Err(e) => {
                let _ = group.kill(Duration::from_secs(5));
                let _ = group.remove();
                self.cgroups.remove_parent_if_empty();
                Err(e)
            }
        }
    }

    /// Ends the processes of a sandbox and releases its cgroups and network.
    fn end_processes(
        &self,
        dir: &Path,
        st: &mut StateFile,
        grace: Duration,
    ) -> Result<(), RuntimeError> {
        let group = self.cgroup(st);
        if let Some(rec) = &st.process {
            if group.any_exists() && group.is_frozen() {
                group.thaw()?;
            }
            if !grace.is_zero() && Self::alive(rec) {
                // PID 1 forwards SIGTERM to the agent, which stops its kernels cleanly.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(rec.pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
                let _ = group.wait_empty(grace);
            }
        }
        if group.any_exists() {
            group.kill(Duration::from_secs(10))?;
        }
        if let Some(rec) = st.process.take() {
            if !sys::wait_gone(rec.pid, rec.start_time, Duration::from_secs(2)) {
                tracing::warn!(pid = rec.pid, "sandbox init not reaped yet");
            }
            if let Some(lease) = rec.lease {
                // Deleting a veth waits for the kernel to quiesce the device (~20 ms). The
                // sandbox is already gone, so the caller need not wait: the pair is removed in
                // the background (and would go with the namespace anyway).
                std::thread::spawn(move || {
                    if let Err(e) = net::release(&lease.host_if) {
                        tracing::warn!(error = %e, "cannot delete veth {}", lease.host_if);
                    }
                });
            }
        }
        group.remove()?;
        self.cgroups.remove_parent_if_empty();
        let _ = fs::remove_file(dir.join(spawn::SOCKET));
        st.save(dir)
    }
}

impl Backend for NativeBackend {
    fn name(&self) -> &'static str {
        "native"
    }

    fn create(&self, spec: &SandboxSpec) -> Result<(), RuntimeError> {
        for layer in &spec.template.layers {
            if !layer.is_dir() {
                return Err(RuntimeError::MissingLayer(layer.clone()));
            }
        }
        let dir = self.dir(&spec.id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::AlreadyExists(spec.id.clone()))
            }
            Err(e) => return Err(RuntimeError::io("mkdir", &dir)(e)),
        }
        let result = (|| {
            for sub in ["upper", "work", "merged"] {
                let p = dir.join(sub);
                fs::create_dir(&p).map_err(RuntimeError::io("mkdir", &p))?;
            }
            // The upper dir's owner and mode become those of "/" inside the sandbox.
            let upper = dir.join("upper");
            fs::set_permissions(&upper, fs::Permissions::from_mode(0o755))
                .map_err(RuntimeError::io("chmod", &upper))?;
            lchown(&upper, Some(self.cfg.uid_base), Some(self.cfg.uid_base))
                .map_err(RuntimeError::io("chown", &upper))?;
            let mut st = StateFile {
                spec: spec.clone(),
                process: None,
            };
            st.save(&dir)?;
            self.start_processes(&dir, &mut st)
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        result
    }

    fn adopt(&self, warm: &SandboxId, spec: &SandboxSpec) -> Result<(), RuntimeError> {
        let old_dir = self.dir(warm);
        let new_dir = self.dir(&spec.id);
        let mut st = self.load(warm)?;
        let refuse = |why| {
            Err(RuntimeError::CannotAdopt {
                warm: warm.clone(),
                why,
            })
        };
        if st.spec.template != spec.template {
            return refuse("it was created from another template");
        }
        if st.spec.internet && !spec.internet {
            return refuse("it has internet access and the new sandbox must not");
        }
        let Some(mut rec) = st.process.clone().filter(Self::alive) else {
            return refuse("it is not running");
        };
        if new_dir.exists() {
            return Err(RuntimeError::AlreadyExists(spec.id.clone()));
        }
        let group = self.cgroup(&st);
        let old_limits = st.spec.resources;
        group.set_limits(&spec.resources)?;
        rec.cgroup_dirs = group.dirs();
        let mut new_lease = None;
        let result = (|| {
            if spec.internet && rec.lease.is_none() {
                self.ensure_rules()?;
                let hint = spawn::slot_hint(spec.id.as_str());
                let lease = net::attach_internet(&self.cfg.net, rec.pid, hint)?;
                new_lease = Some(lease.host_if.clone());
                rec.lease = Some(lease);
            }
            fs::rename(&old_dir, &new_dir).map_err(RuntimeError::io("rename", &new_dir))
        })();
        if let Err(e) = result {
            let _ = group.set_limits(&old_limits);
            if let Some(host_if) = new_lease {
                let _ = net::release(&host_if);
            }
            return Err(e);
        }
        st.spec = spec.clone();
        st.process = Some(rec);
        st.save(&new_dir)
    }

    fn start(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        let dir = self.dir(id);
        let mut st = self.load(id)?;
        if let Some(rec) = &st.process {
            if Self::alive(rec) {
                let status = self.status(id)?;
                return Err(RuntimeError::WrongState {
                    id: id.clone(),
                    status,
                    op: "start",
                });
            }
            // It died on its own (host reboot, PID 1 killed): clear what is left first.
            self.end_processes(&dir, &mut st, Duration::ZERO)?;
        }
        self.start_processes(&dir, &mut st)
    }

    fn stop(&self, id: &SandboxId, grace: Duration) -> Result<(), RuntimeError> {
        let dir = self.dir(id);
        let mut st = self.load(id)?;
        self.end_processes(&dir, &mut st, grace)
    }

    fn pause(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        match self.status(id)? {
            RuntimeStatus::Running => Ok(self.cgroup(&self.load(id)?).freeze()?),
            status => Err(RuntimeError::WrongState {
                id: id.clone(),
                status,
                op: "pause",
            }),
        }
    }

    fn resume(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        match self.status(id)? {
            RuntimeStatus::Paused => Ok(self.cgroup(&self.load(id)?).thaw()?),
            status => Err(RuntimeError::WrongState {
                id: id.clone(),
                status,
                op: "resume",
            }),
        }
    }

    fn kill(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        let dir = self.dir(id);
        if !dir.exists() {
            return Err(RuntimeError::NotFound(id.clone()));
        }
        match StateFile::load(&dir) {
            Ok(mut st) => self.end_processes(&dir, &mut st, Duration::ZERO)?,
            // No readable state: still make sure no process or cgroup named after it survives.
            Err(_) => {
                let group = self.cgroups.sandbox(id.as_str());
                if group.any_exists() {
                    group.kill(Duration::from_secs(10))?;
                    group.remove()?;
                }
            }
        }
        fs::remove_dir_all(&dir).map_err(RuntimeError::io("remove", &dir))
    }

    fn status(&self, id: &SandboxId) -> Result<RuntimeStatus, RuntimeError> {
        let st = self.load(id)?;
        Ok(match &st.process {
            Some(rec) if Self::alive(rec) => {
                if self.cgroup(&st).is_frozen() {
                    RuntimeStatus::Paused
                } else {
                    RuntimeStatus::Running
                }
            }
            _ => RuntimeStatus::Stopped,
        })
    }

    fn usage(&self, id: &SandboxId) -> Result<ResourceUsage, RuntimeError> {
        let st = self.load(id)?;
        let group = self.cgroup(&st);
        if st.process.is_none() || !group.any_exists() {
            return Ok(ResourceUsage {
                memory_limit_bytes: st.spec.resources.memory_mb * 1024 * 1024,
                ..ResourceUsage::default()
            });
        }
        let u = group.usage()?;
        Ok(ResourceUsage {
            memory_bytes: u.memory_bytes,
            memory_limit_bytes: u.memory_limit_bytes,
            cpu_usec: u.cpu_usec,
            pids: u.pids,
            oom_kills: u.oom_kills,
        })
    }

    fn agent_socket(&self, id: &SandboxId) -> PathBuf {
        self.dir(id).join(spawn::SOCKET)
    }

    fn connect_tcp(
        &self,
        id: &SandboxId,
        port: u16,
        timeout: Duration,
    ) -> Result<std::net::TcpStream, RuntimeError> {
        let st = self.load(id)?;
        let rec = match &st.process {
            Some(rec) if Self::alive(rec) => rec,
            _ => {
                return Err(RuntimeError::WrongState {
                    id: id.clone(),
                    status: RuntimeStatus::Stopped,
                    op: "connect to a port in",
                })
            }
        };
        let ns = net::SandboxNetns::open(rec.pid)?;
        // The namespace was opened by pid: had the sandbox ended and its pid been reused since
        // the check above, the namespace would be a stranger's. Checking again now that it is
        // held open closes that window.
        if !Self::alive(rec) {
            return Err(RuntimeError::NotFound(id.clone()));
        }
        match ns.connect_loopback(port, timeout)? {
            Ok(stream) => Ok(stream),
            Err(source) => Err(RuntimeError::PortUnreachable {
                id: id.clone(),
                port,
                source,
            }),
        }
    }

    fn upper_dir(&self, id: &SandboxId) -> Option<PathBuf> {
        Some(self.dir(id).join("upper"))
    }

    fn list(&self) -> Result<Vec<SandboxId>, RuntimeError> {
        let dir = self.cfg.data_dir.join("sandboxes");
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(RuntimeError::io("readdir", &dir))? {
            let entry = entry.map_err(RuntimeError::io("readdir", &dir))?;
            if let Ok(id) = SandboxId::parse(&entry.file_name().to_string_lossy()) {
                if entry.path().join(state::FILE).exists() {
                    ids.push(id);
                }
            }
        }
        ids.sort();
        Ok(ids)
    }
}
