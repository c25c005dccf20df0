//! Recursive change watching with inotify, for the `/files/watch` WebSocket.
//!
//! One [`Watcher`] per socket owns one inotify instance in its own task; dropping the watcher
//! stops the task and closes the instance, which frees every watch in the kernel.
//!
//! What is reported, per path (like fsnotify, which HopX's Go agent builds on):
//! - `created`: a name appeared (create, mkdir, or moved in — then `old_path` says from where,
//!   if that was inside the watched tree). A new directory is watched at once and what was
//!   already created inside it before the watch existed is reported as `created` too.
//! - `modified`: contents or attributes changed. A stream of writes is reported at most once per
//!   [`DEBOUNCE`] per path, always after the last write (trailing edge), so a client that reads
//!   the file on the event sees the final contents.
//! - `deleted`: a name went away (or a watched root itself was deleted).
//! - `renamed`: a name was moved away (its new name, if still watched, follows as `created`).
//!
//! When the kernel's queue overflows, events were lost: a `modified` for the watched root with
//! `overflow: true` tells the client to rescan. Upload staging files ([`STAGING_PREFIX`]) are
//! hidden: an upload shows as the target being `created`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use inotify::{EventMask, EventOwned, EventStream, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ops::STAGING_PREFIX;
use super::paths::{display, is_protected};
use super::FsError;

/// Quiet time before a `modified` is reported.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// Directories watched per socket at most; deeper trees are watched partly.
pub const MAX_WATCHES: usize = 16_384;
/// Changes buffered towards a slow client before the watcher waits for it (and the kernel
/// queue, then, overflows).
const CHANNEL: usize = 1024;

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The name appeared.
    Created,
    /// Contents or attributes changed.
    Modified,
    /// The name went away.
    Deleted,
    /// The name was moved away.
    Renamed,
}

impl ChangeKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Modified => "modified",
            Self::Deleted => "deleted",
            Self::Renamed => "renamed",
        }
    }
}

/// One reported change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The path that changed.
    pub path: PathBuf,
    /// What happened.
    pub kind: ChangeKind,
    /// Whether the path is a directory.
    pub is_directory: bool,
    /// For a `created` by a move inside the watched tree: the old path.
    pub old_path: Option<PathBuf>,
    /// Events were lost; rescan `path`.
    pub overflow: bool,
}

impl Change {
    fn new(path: PathBuf, kind: ChangeKind, is_directory: bool) -> Self {
        Self {
            path,
            kind,
            is_directory,
            old_path: None,
            overflow: false,
        }
    }
}

/// A request to the watcher task.
enum Command {
    Watch {
        path: PathBuf,
        reply: oneshot::Sender<Result<(), FsError>>,
    },
}

/// The handle of one watcher task. Dropping it ends the task and frees the inotify instance.
pub struct Watcher {
    commands: mpsc::Sender<Command>,
    changes: mpsc::Receiver<Change>,
    task: JoinHandle<()>,
}

impl Watcher {
    /// Starts a watcher with nothing watched yet.
    pub fn start() -> Result<Self, FsError> {
        let io_err = |e| watch_error(Path::new("/"), e);
        let inotify = Inotify::init().map_err(io_err)?;
        let stream = inotify
            .into_event_stream(vec![0u8; 64 * 1024])
            .map_err(io_err)?;
        let (commands, command_rx) = mpsc::channel(8);
        let (change_tx, changes) = mpsc::channel(CHANNEL);
        let task = tokio::spawn(run(stream, command_rx, change_tx));
        Ok(Self {
            commands,
            changes,
            task,
        })
    }

    /// Watches `path` (recursively if it is a directory) in addition to what is watched.
    pub async fn watch(&self, path: PathBuf) -> Result<(), FsError> {
        let (reply, answer) = oneshot::channel();
        let gone = || FsError::Io {
            op: "watch",
            path: display(&path),
            source: std::io::Error::other("the watcher stopped"),
        };
        self.commands
            .send(Command::Watch {
                path: path.clone(),
                reply,
            })
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// The next change; `None` once the watcher has stopped. Cancel-safe.
    pub async fn next(&mut self) -> Option<Change> {
        self.changes.recv().await
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A watched directory (or file).
struct Watched {
    path: PathBuf,
    wd: WatchDescriptor,
    /// Added by a client request (not found by recursion): its own deletion is reported.
    root: bool,
}

/// The task's state.
struct State {
    watches: Watches,
    by_wd: HashMap<i32, Watched>,
    /// `modified` changes waiting for [`DEBOUNCE`] of quiet: path → (due, is_directory).
    pending: HashMap<PathBuf, (Instant, bool)>,
    /// Recent `MOVED_FROM` paths by cookie, to name the old path of the matching `MOVED_TO`.
    moves: HashMap<u32, PathBuf>,
    out: mpsc::Sender<Change>,
}

/// Events watched on directories.
fn dir_mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MODIFY
        | WatchMask::ATTRIB
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::EXCL_UNLINK
        | WatchMask::ONLYDIR
}

/// Events watched on a single file given as a root.
fn file_mask() -> WatchMask {
    WatchMask::MODIFY | WatchMask::ATTRIB | WatchMask::DELETE_SELF | WatchMask::MOVE_SELF
}

async fn run(
    mut stream: EventStream<Vec<u8>>,
    mut commands: mpsc::Receiver<Command>,
    out: mpsc::Sender<Change>,
) {
    let mut st = State {
        watches: stream.watches(),
        by_wd: HashMap::new(),
        pending: HashMap::new(),
        moves: HashMap::new(),
        out,
    };
    loop {
        let due = st.pending.values().map(|(t, _)| *t).min();
        let sleep = tokio::time::sleep_until(due.unwrap_or_else(Instant::now));
        let alive = tokio::select! {
            cmd = commands.recv() => match cmd {
                None => false,
                Some(Command::Watch { path, reply }) => {
                    let _ = reply.send(st.add_root(path).await);
                    true
                }
            },
            event = stream.next() => match event {
                Some(Ok(event)) => st.handle(event).await,
                Some(Err(e)) => {
                    tracing::warn!("inotify read failed: {e}");
                    false
                }
                None => false,
            },
            () = sleep, if due.is_some() => st.flush_due(Instant::now()).await,
        };
        if !alive {
            break;
        }
    }
}

impl State {
    /// Sends a change; false when the client is gone.
    async fn emit(&self, change: Change) -> bool {
        self.out.send(change).await.is_ok()
    }

    /// Reports every `modified` whose quiet time is over.
    async fn flush_due(&mut self, now: Instant) -> bool {
        let mut due: Vec<(Instant, PathBuf, bool)> = self
            .pending
            .iter()
            .filter(|(_, (t, _))| *t <= now)
            .map(|(p, (t, d))| (*t, p.clone(), *d))
            .collect();
        due.sort();
        for (_, path, is_dir) in due {
            self.pending.remove(&path);
            if !self
                .emit(Change::new(path, ChangeKind::Modified, is_dir))
                .await
            {
                return false;
            }
        }
        true
    }

    /// Reports a pending `modified` of `path` now, so it comes before what happens next to it.
    async fn flush_path(&mut self, path: &Path) -> bool {
        match self.pending.remove(path) {
            Some((_, is_dir)) => {
                self.emit(Change::new(
                    path.to_path_buf(),
                    ChangeKind::Modified,
                    is_dir,
                ))
                .await
            }
            None => true,
        }
    }

    async fn add_root(&mut self, path: PathBuf) -> Result<(), FsError> {
        let watches = self.watches.clone();
        let added = tokio::task::spawn_blocking(move || add_root_blocking(watches, &path))
            .await
            .map_err(|e| FsError::Io {
                op: "watch",
                path: String::new(),
                source: std::io::Error::other(e.to_string()),
            })??;
        for w in added {
            self.by_wd.insert(w.wd.get_watch_descriptor_id(), w);
        }
        Ok(())
    }

    /// Watches the tree under a new directory; with `scan`, reports what is already in it.
    async fn add_tree(&mut self, dir: PathBuf, scan: bool) -> bool {
        let watches = self.watches.clone();
        let budget = MAX_WATCHES.saturating_sub(self.by_wd.len());
        let res = tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            let added = walk(watches, &dir, budget, scan.then_some(&mut found));
            (added, found)
        })
        .await;
        let Ok((added, found)) = res else {
            return true;
        };
        for w in added {
            self.by_wd.insert(w.wd.get_watch_descriptor_id(), w);
        }
        for (path, is_dir) in found {
            if !self
                .emit(Change::new(path, ChangeKind::Created, is_dir))
                .await
            {
                return false;
            }
        }
        true
    }

    /// Stops watching `dir` and everything under it (it left the watched tree or was replaced).
    fn forget_tree(&mut self, dir: &Path) {
        let gone: Vec<i32> = self
            .by_wd
            .iter()
            .filter(|(_, w)| !w.root && w.path.starts_with(dir))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(w) = self.by_wd.remove(&id) {
                let _ = self.watches.remove(w.wd);
            }
        }
    }

    /// Turns one inotify event into changes; false when the client is gone.
    async fn handle(&mut self, ev: EventOwned) -> bool {
        if ev.mask.contains(EventMask::Q_OVERFLOW) {
            let roots: Vec<PathBuf> = self
                .by_wd
                .values()
                .filter(|w| w.root)
                .map(|w| w.path.clone())
                .collect();
            for root in roots {
                let mut c = Change::new(root, ChangeKind::Modified, true);
                c.overflow = true;
                if !self.emit(c).await {
                    return false;
                }
            }
            return true;
        }
        let id = ev.wd.get_watch_descriptor_id();
        if ev.mask.contains(EventMask::IGNORED) {
            self.by_wd.remove(&id);
            return true;
        }
        let Some(w) = self.by_wd.get(&id) else {
            return true;
        };
        let root = w.root;
        let path = match &ev.name {
            Some(name) if is_staging(name) => {
                return true;
            }
            Some(name) => w.path.join(name),
            None => w.path.clone(),
        };
        let is_dir = ev.mask.contains(EventMask::ISDIR);
        let m = ev.mask;

        if m.contains(EventMask::CREATE) {
            if !self.flush_path(&path).await
                || !self
                    .emit(Change::new(path.clone(), ChangeKind::Created, is_dir))
                    .await
            {
                return false;
            }
            if is_dir && !is_protected(&path) {
                return self.add_tree(path, true).await;
            }
        } else if m.intersects(EventMask::MODIFY | EventMask::ATTRIB) {
            self.pending
                .entry(path)
                .or_insert((Instant::now() + DEBOUNCE, is_dir));
        } else if m.contains(EventMask::DELETE) {
            return self.flush_path(&path).await
                && self
                    .emit(Change::new(path, ChangeKind::Deleted, is_dir))
                    .await;
        } else if m.contains(EventMask::MOVED_FROM) {
            if is_dir {
                self.forget_tree(&path);
            }
            if self.moves.len() > 64 {
                self.moves.clear();
            }
            self.moves.insert(ev.cookie, path.clone());
            return self.flush_path(&path).await
                && self
                    .emit(Change::new(path, ChangeKind::Renamed, is_dir))
                    .await;
        } else if m.contains(EventMask::MOVED_TO) {
            let mut c = Change::new(path.clone(), ChangeKind::Created, is_dir);
            c.old_path = self.moves.remove(&ev.cookie);
            if !self.flush_path(&path).await || !self.emit(c).await {
                return false;
            }
            if is_dir && !is_protected(&path) {
                self.forget_tree(&path);
                return self.add_tree(path, false).await;
            }
        } else if root && m.contains(EventMask::DELETE_SELF) {
            return self.flush_path(&path).await
                && self
                    .emit(Change::new(path, ChangeKind::Deleted, false))
                    .await;
        } else if root && m.contains(EventMask::MOVE_SELF) {
            return self.flush_path(&path).await
                && self
                    .emit(Change::new(path, ChangeKind::Renamed, false))
                    .await;
        }
        true
    }
}

/// Whether `name` is an upload's staging file.
fn is_staging(name: &OsStr) -> bool {
    name.to_string_lossy().starts_with(STAGING_PREFIX)
}

/// Watches a client-given root: a directory recursively, or a single file.
fn add_root_blocking(mut watches: Watches, path: &Path) -> Result<Vec<Watched>, FsError> {
    let meta = std::fs::metadata(path).map_err(|e| FsError::from_io("watch", path, e))?;
    if !meta.is_dir() {
        let wd = watches
            .add(path, file_mask())
            .map_err(|e| watch_error(path, e))?;
        return Ok(vec![Watched {
            path: path.to_path_buf(),
            wd,
            root: true,
        }]);
    }
    // The root itself must be watchable; failures deeper down only shrink the watched tree.
    let wd = watches
        .add(path, dir_mask())
        .map_err(|e| watch_error(path, e))?;
    let mut out = vec![Watched {
        path: path.to_path_buf(),
        wd,
        root: true,
    }];
    let mut sub = Vec::new();
    if let Ok(rd) = std::fs::read_dir(path) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) && !is_protected(&e.path()) {
                sub.push(e.path());
            }
        }
    }
    for dir in sub {
        let budget = MAX_WATCHES.saturating_sub(out.len());
        out.extend(walk(watches.clone(), &dir, budget, None));
    }
    Ok(out)
}

/// inotify reports its own limits as `ENOSPC` (watches) and `EMFILE` (instances), which are no
/// disk or descriptor shortage; name them for what they are.
fn watch_error(path: &Path, e: std::io::Error) -> FsError {
    match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EMFILE) => FsError::Io {
            op: "watch",
            path: display(path),
            source: std::io::Error::other(format!("the sandbox's inotify limit is reached ({e})")),
        },
        _ => FsError::from_io("watch", path, e),
    }
}

/// Watches `top` and every directory under it (not following links, skipping `/proc`, `/sys`
/// and `/dev`), at most `budget` of them. With `found`, also collects every entry below `top`
/// (path, is_directory), for reporting what was created before the watches existed.
fn walk(
    mut watches: Watches,
    top: &Path,
    budget: usize,
    mut found: Option<&mut Vec<(PathBuf, bool)>>,
) -> Vec<Watched> {
    let mut out = Vec::new();
    let mut stack = vec![top.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if out.len() >= budget {
            tracing::warn!(
                "watch limit of {MAX_WATCHES} directories reached; {} is not watched",
                dir.display()
            );
            break;
        }
        // Watch first, then list: whatever appears after the watch is an event, whatever was
        // there before is in the listing (a few may be both).
        let Ok(wd) = watches.add(&dir, dir_mask() | WatchMask::DONT_FOLLOW) else {
            continue;
        };
        out.push(Watched {
            path: dir.clone(),
            wd,
            root: false,
        });
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(STAGING_PREFIX) {
                continue;
            }
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let p = e.path();
            if let Some(f) = found.as_deref_mut() {
                f.push((p.clone(), is_dir));
            }
            if is_dir && !is_protected(&p) {
                stack.push(p);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next(w: &mut Watcher) -> Change {
        tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .expect("a change in time")
            .expect("watcher alive")
    }

    #[tokio::test]
    async fn reports_create_modify_delete_recursively() {
        let d = std::env::temp_dir().join(format!("hutch-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("sub")).unwrap();
        let mut w = Watcher::start().unwrap();
        w.watch(d.clone()).await.unwrap();

        std::fs::write(d.join("a.txt"), b"1").unwrap();
        let c = next(&mut w).await;
        assert_eq!(
            (c.path.clone(), c.kind),
            (d.join("a.txt"), ChangeKind::Created)
        );
        let c = next(&mut w).await;
        assert_eq!((c.path, c.kind), (d.join("a.txt"), ChangeKind::Modified));

        std::fs::write(d.join("sub/b.txt"), b"2").unwrap();
        let c = next(&mut w).await;
        assert_eq!((c.path, c.kind), (d.join("sub/b.txt"), ChangeKind::Created));
        let _ = next(&mut w).await;

        // A tree made faster than the watcher can add watches still shows up.
        std::fs::create_dir_all(d.join("x/y")).unwrap();
        std::fs::write(d.join("x/y/z"), b"3").unwrap();
        let mut seen = Vec::new();
        while !seen.contains(&d.join("x/y/z")) {
            let c = next(&mut w).await;
            if c.kind == ChangeKind::Created {
                seen.push(c.path);
            }
        }

        std::fs::remove_file(d.join("a.txt")).unwrap();
        loop {
            let c = next(&mut w).await;
            if c.kind == ChangeKind::Deleted {
                assert_eq!(c.path, d.join("a.txt"));
                break;
            }
        }
        drop(w);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn missing_root_is_not_found() {
        let w = Watcher::start().unwrap();
        let err = w
            .watch(PathBuf::from("/nonexistent/hutch-watch"))
            .await
            .unwrap_err();
        assert!(matches!(err, FsError::NotFound { .. }));
    }
}
