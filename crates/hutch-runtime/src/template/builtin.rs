//! The built-in template: the host's own `/usr` (read-only) under a small generated root.
//!
//! It needs no set-up and no network, which is what makes `hutch serve` work on a fresh machine.
//! The generated root holds the mount points, empty private directories (`/workspace`, `/tmp`,
//! `/home/user`, `/root`) and a curated `/etc`: an allowlist of what programs need to run
//! (dynamic linker cache, certificates, alternatives, Python's site config, time zone, …) plus
//! generated `passwd`, `group`, `hosts` and `resolv.conf`. Host secrets (`shadow`, ssh host keys,
//! `ssl/private`, credential helpers in `gitconfig`) are never copied, and nothing from host home
//! directories, `/var`, `/run` or `/work` is visible.
//!
//! Everything in the generated root is owned by the sandbox's mapped root (`uid_base`), so
//! root inside the sandbox owns its `/etc` and can change it (the change lands in its own upper
//! layer; the template is never written).

use std::fs;
use std::os::unix::fs::{lchown, symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{etc, io_err, TemplateError, TemplateRootfs};
use crate::rootfs::BindMount;

/// Bumped whenever the generated root changes, so running sandboxes keep the layer they were
/// created with while new ones get the new one.
const BUILTIN_VERSION: u32 = 1;

/// `/etc` entries copied from the host (files, symlinks or whole directories), when present.
const ETC_ALLOWLIST: &[&str] = &[
    "alternatives",
    "bash.bashrc",
    "ca-certificates.conf",
    "debian_version",
    "environment",
    "ethertypes",
    "fonts",
    "gai.conf",
    "host.conf",
    "ImageMagick-6",
    "inputrc",
    "issue",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "localtime",
    "login.defs",
    "magic",
    "magic.mime",
    "matplotlibrc",
    "mime.types",
    "networks",
    "npmrc",
    "os-release",
    "perl",
    "pip.conf",
    "profile",
    "profile.d",
    "protocols",
    "python3",
    "rpc",
    "services",
    "shells",
    "skel",
    "ssl/certs",
    "ssl/openssl.cnf",
    "terminfo",
    "timezone",
    "vim",
    "wgetrc",
    "xdg",
];

/// Prepares (once) and returns the built-in template under `dir`.
pub fn ensure_builtin(dir: &Path, uid_base: u32) -> Result<TemplateRootfs, TemplateError> {
    let root = dir.join(format!("rootfs-v{BUILTIN_VERSION}"));
    if !complete_marker(&root).exists() {
        build_builtin(dir, &root, uid_base)?;
    }
    Ok(TemplateRootfs {
        layers: vec![root],
        binds: host_binds(),
    })
}

/// `/usr`, plus `/bin`, `/sbin`, `/lib*` on hosts where they are real directories rather than
/// symlinks into `/usr`.
fn host_binds() -> Vec<BindMount> {
    let mut binds = vec![BindMount {
        source: "/usr".into(),
        target: "/usr".into(),
    }];
    for name in TOP_LEVEL_LINKS {
        let p = Path::new("/").join(name);
        if let Ok(m) = fs::symlink_metadata(&p) {
            if m.is_dir() {
                binds.push(BindMount {
                    source: p.clone(),
                    target: p,
                });
            }
        }
    }
    binds
}

/// Marks a finished layer; kept beside the layer, not in it, so the sandbox never sees it.
fn complete_marker(root: &Path) -> PathBuf {
    root.with_extension("complete")
}

const TOP_LEVEL_LINKS: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

fn build_builtin(dir: &Path, root: &Path, uid_base: u32) -> Result<(), TemplateError> {
    fs::create_dir_all(dir).map_err(io_err("mkdir", dir))?;
    let tmp = dir.join(format!(".build-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err("remove", &tmp))?;
    }
    let result = populate(&tmp, uid_base).and_then(|()| {
        if root.exists() {
            // An incomplete earlier attempt.
            fs::remove_dir_all(root).map_err(io_err("remove", root))?;
        }
        fs::rename(&tmp, root).map_err(io_err("rename", root))?;
        let marker = complete_marker(root);
        fs::write(&marker, b"").map_err(io_err("write", &marker))
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

fn populate(root: &Path, uid_base: u32) -> Result<(), TemplateError> {
    let dirs: &[(&str, u32, u32)] = &[
        ("", 0o755, 0),
        ("usr", 0o755, 0),
        ("etc", 0o755, 0),
        ("proc", 0o555, 0),
        ("sys", 0o555, 0),
        ("dev", 0o755, 0),
        ("run", 0o755, 0),
        ("tmp", 0o1777, 0),
        ("var", 0o755, 0),
        ("var/tmp", 0o1777, 0),
        ("var/log", 0o755, 0),
        ("var/cache", 0o755, 0),
        ("var/lib", 0o755, 0),
        ("opt", 0o755, 0),
        ("mnt", 0o755, 0),
        ("srv", 0o755, 0),
        ("media", 0o755, 0),
        ("root", 0o700, 0),
        ("home", 0o755, 0),
        ("home/user", 0o755, 1000),
        ("workspace", 0o755, 0),
    ];
    for (rel, mode, uid) in dirs {
        let p = root.join(rel);
        fs::create_dir_all(&p).map_err(io_err("mkdir", &p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode)).map_err(io_err("chmod", &p))?;
        lchown(&p, Some(uid_base + uid), Some(uid_base + uid)).map_err(io_err("chown", &p))?;
    }
    for name in TOP_LEVEL_LINKS {
        let host = Path::new("/").join(name);
        let Ok(m) = fs::symlink_metadata(&host) else {
            continue;
        };
        let p = root.join(name);
        if m.file_type().is_symlink() {
            let target = fs::read_link(&host).map_err(io_err("readlink", &host))?;
            symlink(&target, &p).map_err(io_err("symlink", &p))?;
        } else {
            fs::create_dir(&p).map_err(io_err("mkdir", &p))?;
        }
        lchown(&p, Some(uid_base), Some(uid_base)).map_err(io_err("chown", &p))?;
    }

    let etc = root.join("etc");
    for rel in ETC_ALLOWLIST {
        let src = Path::new("/etc").join(rel);
        if fs::symlink_metadata(&src).is_ok() {
            copy_tree(&src, &etc.join(rel), uid_base)?;
        }
    }
    // Every Python minor version's site config (python3.11, python3.12, …).
    if let Ok(entries) = fs::read_dir("/etc") {
        for e in entries.flatten() {
            let name = e.file_name();
            if name.to_string_lossy().starts_with("python3.") {
                copy_tree(&e.path(), &etc.join(&name), uid_base)?;
            }
        }
    }
    let generated: [(&str, &str); 3] = [
        (
            "passwd",
            "root:x:0:0:root:/root:/bin/bash\n\
             user:x:1000:1000:user:/home/user:/bin/bash\n\
             nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        ),
        (
            "group",
            "root:x:0:\ntty:x:5:\nusers:x:100:user\nuser:x:1000:\nnogroup:x:65534:\n",
        ),
        (
            "nsswitch.conf",
            "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n\
             protocols: files\nservices: files\nethers: files\nrpc: files\n",
        ),
    ];
    for (name, content) in generated {
        let p = etc.join(name);
        fs::write(&p, content).map_err(io_err("write", &p))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).map_err(io_err("chmod", &p))?;
        lchown(&p, Some(uid_base), Some(uid_base)).map_err(io_err("chown", &p))?;
    }
    etc::write_network_files(&etc, uid_base)
}

/// Copies files, directories and symlinks (not following them), shifting ownership by
/// `uid_base`. Sockets, fifos and devices are skipped.
fn copy_tree(src: &Path, dst: &Path, uid_base: u32) -> Result<(), TemplateError> {
    let m = fs::symlink_metadata(src).map_err(io_err("stat", src))?;
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).map_err(io_err("mkdir", parent))?;
    }
    let ft = m.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(src).map_err(io_err("readlink", src))?;
        symlink(&target, dst).map_err(io_err("symlink", dst))?;
    } else if ft.is_dir() {
        fs::create_dir_all(dst).map_err(io_err("mkdir", dst))?;
        for entry in fs::read_dir(src).map_err(io_err("readdir", src))? {
            let entry = entry.map_err(io_err("readdir", src))?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()), uid_base)?;
        }
        fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(io_err("chmod", dst))?;
    } else if ft.is_file() {
        fs::copy(src, dst).map_err(io_err("copy", src))?;
    } else {
        return Ok(());
    }
    lchown(
        dst,
        Some(uid_base.saturating_add(m.uid())),
        Some(uid_base.saturating_add(m.gid())),
    )
    .map_err(io_err("chown", dst))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_root_is_curated_and_shifted() {
        let dir = tempfile::tempdir().unwrap();
        let t = ensure_builtin(dir.path(), 100_000).unwrap();
        let root = &t.layers[0];
        let etc = root.join("etc");
        assert!(etc.join("ld.so.cache").exists());
        assert!(etc.join("passwd").exists());
        assert!(!etc.join("shadow").exists());
        assert!(!etc.join("ssl/private").exists());
        assert!(!etc.join("gitconfig").exists());
        assert!(!root.join("work").exists());
        assert!(
            !root.join(".complete").exists(),
            "marker must stay outside the layer"
        );
        let m = fs::metadata(root.join("workspace")).unwrap();
        assert_eq!(m.uid(), 100_000);
        assert_eq!(fs::metadata(root.join("home/user")).unwrap().uid(), 101_000);
        assert_eq!(
            fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
        assert!(t.binds.iter().any(|b| b.target == Path::new("/usr")));
        // A second call reuses the same layer.
        assert_eq!(ensure_builtin(dir.path(), 100_000).unwrap(), t);
    }
}
