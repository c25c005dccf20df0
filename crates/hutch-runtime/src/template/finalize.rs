//! What a built root needs so sandboxes behave as they do on the built-in template: the
//! generated network files, the directories the agent and users expect (`/workspace`,
//! `/home/user`, a sticky `/tmp`) and the unprivileged account `user` (uid 1000).
//!
//! Run once on a fresh clone of the base (build commands then see a usable root: apt needs
//! `resolv.conf`, the agent a working directory) and again after the last step, in case a
//! command replaced any of it.

use std::fs;
use std::os::unix::fs::{lchown, PermissionsExt};
use std::path::Path;

use super::files::{replace_file, resolve_dir, Owner};
use super::{etc, io_err, TemplateError};

/// Sandbox uid (and gid) of the unprivileged account.
pub const USER_UID: u32 = 1000;

/// Directories made when missing: (path inside the sandbox, mode, owner id inside the sandbox).
const DIRS: &[(&str, u32, u32)] = &[
    ("/workspace", 0o755, 0),
    ("/root", 0o700, 0),
    ("/home", 0o755, 0),
    ("/home/user", 0o755, USER_UID),
    ("/tmp", 0o1777, 0),
    ("/var/tmp", 0o1777, 0),
];

/// Prepares `root` (already shifted to `uid_base`): network files, standard directories,
/// `extra_dirs` (e.g. the template's working directory) and the `user` account.
pub fn prepare(root: &Path, uid_base: u32, extra_dirs: &[&Path]) -> Result<(), TemplateError> {
    let sandbox_root = Owner::in_sandbox(uid_base, 0);
    let etc_dir = resolve_dir(root, Path::new("/etc"), Some(sandbox_root))?;
    etc::write_network_files(&etc_dir, uid_base)?;
    for (path, mode, id) in DIRS {
        let owner = Owner::in_sandbox(uid_base, *id);
        ensure_dir(root, Path::new(path), *mode, owner, sandbox_root)?;
    }
    for d in extra_dirs {
        resolve_dir(root, d, Some(sandbox_root))?;
    }
    let has_bash = fs::symlink_metadata(root.join("usr/bin/bash")).is_ok_and(|m| m.is_file());
    ensure_user(
        &etc_dir,
        uid_base,
        if has_bash { "/bin/bash" } else { "/bin/sh" },
    )
}

/// Creates `path` with `mode` and `owner` unless something is there already (left as it is).
fn ensure_dir(
    root: &Path,
    path: &Path,
    mode: u32,
    owner: Owner,
    parent_owner: Owner,
) -> Result<(), TemplateError> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let Some(name) = path.file_name() else {
        return Ok(());
    };
    let host = resolve_dir(root, parent, Some(parent_owner))?.join(name);
    if fs::symlink_metadata(&host).is_ok() {
        return Ok(());
    }
    fs::create_dir(&host).map_err(io_err("mkdir", &host))?;
    lchown(&host, Some(owner.uid), Some(owner.gid)).map_err(io_err("chown", &host))?;
    fs::set_permissions(&host, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", &host))
}

/// Adds `user` (uid/gid 1000, home `/home/user`) to `passwd` and `group` unless the id or the
/// name is taken.
fn ensure_user(etc_dir: &Path, uid_base: u32, shell: &str) -> Result<(), TemplateError> {
    let taken = |text: &str| {
        text.lines().any(|l| {
            let mut f = l.split(':');
            let name = f.next();
            let id = f.nth(1);
            name == Some("user") || id == Some("1000")
        })
    };
    let passwd = etc_dir.join("passwd");
    let text = fs::read_to_string(&passwd).unwrap_or_default();
    if !taken(&text) {
        let mut new = text.clone();
        if !new.is_empty() && !new.ends_with('\n') {
            new.push('\n');
        }
        new.push_str(&format!(
            "user:x:{USER_UID}:{USER_UID}:user:/home/user:{shell}\n"
        ));
        replace_file(&passwd, new.as_bytes(), 0o644, uid_base, uid_base)?;
    }
    let group = etc_dir.join("group");
    let text = fs::read_to_string(&group).unwrap_or_default();
    if !taken(&text) {
        let mut new = text.clone();
        if !new.is_empty() && !new.ends_with('\n') {
            new.push('\n');
        }
        new.push_str(&format!("user:x:{USER_UID}:\n"));
        replace_file(&group, new.as_bytes(), 0o644, uid_base, uid_base)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn a_bare_root_gets_what_sandboxes_need() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
        // Needs root (chown into the sandbox range).
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        prepare(root, 100_000, &[Path::new("/srv/app")]).unwrap();
        for f in ["hostname", "hosts", "resolv.conf"] {
            assert!(root.join("etc").join(f).is_file(), "{f}");
        }
        assert_eq!(
            fs::read_to_string(root.join("etc/hostname")).unwrap(),
            "sandbox\n"
        );
        assert!(fs::read_to_string(root.join("etc/passwd"))
            .unwrap()
            .contains("user:x:1000:1000"));
        assert_eq!(fs::metadata(root.join("home/user")).unwrap().uid(), 101_000);
        assert_eq!(
            fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
        assert!(root.join("srv/app").is_dir());
        assert!(root.join("workspace").is_dir());
        // Idempotent.
        prepare(root, 100_000, &[]).unwrap();
        let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert_eq!(passwd.lines().filter(|l| l.starts_with("user:")).count(), 1);
    }
}
