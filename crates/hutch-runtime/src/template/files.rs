//! Writing into a template root from the host, as if from inside it.
//!
//! A root made from Debian packages is full of symlinks (`/bin → usr/bin`, absolute ones under
//! `/etc/alternatives`), and commands run during a build can plant more. Followed on the host,
//! an absolute link would lead out of the root into the host's own files. So every path here is
//! resolved component by component *within* the root, the way the sandbox will see it: absolute
//! link targets restart at the root and `..` stops there. The root is never in use while this
//! runs (no sandbox is mounted over it), so the resolution cannot be raced.
//!
//! Files are replaced, never rewritten in place: a built root is a hard-link clone of a cached
//! base (`tree::clone_tree`), and writing through a shared inode would change the cache and
//! every other template made from it.

use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::os::unix::fs::{fchown, lchown, symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::{invalid, io_err, TemplateError};

/// Symlinks followed while resolving one path before giving up (the kernel's limit).
const MAX_LINKS: usize = 40;
/// Most bytes one archive may unpack to, so a small gzip bomb cannot fill the disk.
pub const MAX_ARCHIVE_BYTES: u64 = 8 << 30;

/// A host uid and gid (sandbox ids shifted by `uid_base`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Host uid.
    pub uid: u32,
    /// Host gid.
    pub gid: u32,
}

impl Owner {
    /// The host ids of `id` (uid and gid) inside a sandbox whose root is `uid_base`.
    pub fn in_sandbox(uid_base: u32, id: u32) -> Self {
        Self {
            uid: uid_base.saturating_add(id),
            gid: uid_base.saturating_add(id),
        }
    }
}

/// Writes `data` to `path` atomically (a sibling temporary file renamed over it), with `mode`
/// and owner `uid:gid`. Whatever `path` was — a file, a hard link into a cache, a symlink — is
/// replaced, never written through. A directory at `path` is an error.
pub fn replace_file(
    path: &Path,
    data: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<(), TemplateError> {
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(invalid(path, "is a directory"));
    }
    let name = path
        .file_name()
        .ok_or_else(|| invalid(path, "has no file name"))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".hutch-tmp");
    let tmp = path.with_file_name(tmp_name);
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(data).map_err(io_err("write", &tmp))?;
        fchown(&f, Some(uid), Some(gid)).map_err(io_err("chown", &tmp))?;
        // After the chown, which would clear set-id bits.
        f.set_permissions(fs::Permissions::from_mode(mode & 0o7777))
            .map_err(io_err("chmod", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The components of a path as the sandbox would walk them (`.` dropped, `..` kept).
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Resolves `path` (absolute, as seen inside the sandbox) to a directory on the host below
/// `root`, following symlinks within the root. Every component must be a directory; with
/// `create`, missing ones are made (mode 0755, owned by `create`).
pub fn resolve_dir(
    root: &Path,
    path: &Path,
    create: Option<Owner>,
) -> Result<PathBuf, TemplateError> {
    let mut pending = components(path);
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let host: PathBuf = root.join(resolved.iter().collect::<PathBuf>()).join(&c);
        match fs::symlink_metadata(&host) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(invalid(path, "too many levels of symbolic links"));
                }
                let target = fs::read_link(&host).map_err(io_err("readlink", &host))?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for t in components(&target).into_iter().rev() {
                    pending.push_front(t);
                }
            }
            Ok(m) if m.is_dir() => resolved.push(c),
            Ok(_) => {
                return Err(invalid(
                    path,
                    format!(
                        "{:?} is not a directory",
                        host.strip_prefix(root).unwrap_or(&host)
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let Some(owner) = create else {
                    return Err(io_err("stat", &host)(e));
                };
                fs::create_dir(&host).map_err(io_err("mkdir", &host))?;
                fs::set_permissions(&host, fs::Permissions::from_mode(0o755))
                    .map_err(io_err("chmod", &host))?;
                lchown(&host, Some(owner.uid), Some(owner.gid)).map_err(io_err("chown", &host))?;
                resolved.push(c);
            }
            Err(e) => return Err(io_err("stat", &host)(e)),
        }
    }
    Ok(root.join(resolved.iter().collect::<PathBuf>()))
}

/// Resolves the directory that holds `path` (see [`resolve_dir`]) and returns it with the
/// last component, which is not resolved (it may be a symlink to replace).
pub fn resolve_parent(
    root: &Path,
    path: &Path,
    create: Option<Owner>,
) -> Result<(PathBuf, OsString), TemplateError> {
    let mut comps = components(path);
    let name = comps
        .pop_back()
        .filter(|n| n != "..")
        .ok_or_else(|| invalid(path, "names no file"))?;
    let parent: PathBuf = std::iter::once(OsStr::new("/"))
        .chain(comps.iter().map(OsString::as_os_str))
        .collect();
    Ok((resolve_dir(root, &parent, create)?, name))
}

/// Writes a file into the root at `dest` (absolute, inside the sandbox), creating missing
/// parent directories owned by `dir_owner`.
pub fn write_in_root(
    root: &Path,
    dest: &Path,
    data: &[u8],
    mode: u32,
    owner: Owner,
    dir_owner: Owner,
) -> Result<PathBuf, TemplateError> {
    let (dir, name) = resolve_parent(root, dest, Some(dir_owner))?;
    let target = dir.join(name);
    replace_file(&target, data, mode, owner.uid, owner.gid)?;
    Ok(target)
}

/// Removes whatever non-directory entry is at `path` (a file or a symlink, not followed).
fn clear_non_dir(path: &Path) -> Result<(), TemplateError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(invalid(path, "is a directory")),
        Ok(_) => fs::remove_file(path).map_err(io_err("remove", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("stat", path)(e)),
    }
}

/// A source of a COPY step, normalised: no leading `./` or `/`, no trailing `/`; `""` is the
/// whole build context.
fn normalise_source(s: &str) -> String {
    let s = s.trim();
    let s = s.trim_start_matches("./").trim_start_matches('/');
    let s = s.trim_end_matches('/');
    if s == "." {
        String::new()
    } else {
        s.to_string()
    }
}

/// An archive member's path, relative, with `.` removed; `..` is refused.
fn member_path(raw: &Path) -> Result<String, TemplateError> {
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(s) => parts.push(
                s.to_str()
                    .ok_or_else(|| invalid(raw, "archive member names must be UTF-8"))?
                    .to_string(),
            ),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(invalid(raw, "archive member climbs out with '..'"))
            }
        }
    }
    Ok(parts.join("/"))
}

fn join_dest(dest: &str, rel: &str) -> String {
    if rel.is_empty() {
        dest.to_string()
    } else {
        format!("{}/{rel}", dest.trim_end_matches('/'))
    }
}

/// Where an archive member lands, with Docker's COPY rules: a directory source's *contents* go
/// into `dest`; a file source becomes `dest` itself, unless `dest` ends in `/` or there are
/// several sources (then `dest/<name>`). Members matching no source (glob patterns) keep their
/// relative path under `dest`.
fn map_member(rel: &str, is_dir: bool, sources: &[String], dest: &str) -> String {
    let dest_is_dir = dest.ends_with('/') || sources.len() != 1;
    for s in sources {
        if s.is_empty() {
            return join_dest(dest, rel);
        }
        if rel == s {
            if is_dir || !dest_is_dir {
                return dest.to_string();
            }
            let base = s.rsplit('/').next().unwrap_or(s);
            return join_dest(dest, base);
        }
        if let Some(rest) = rel
            .strip_prefix(s.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            return join_dest(dest, rest);
        }
    }
    join_dest(dest, rel)
}

/// What an extraction did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExtractStats {
    /// Regular files written.
    pub files: usize,
    /// Directories created.
    pub dirs: usize,
    /// Symlinks created.
    pub links: usize,
    /// Members skipped (devices, fifos).
    pub skipped: usize,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Unpacks a gzip-compressed tar (a HopX COPY upload) into the root at `dest`, mapping members
/// as Docker's `COPY <sources> <dest>` would. Everything written is owned by `owner`; modes come
/// from the archive. Device nodes and fifos are skipped.
pub fn extract_archive(
    root: &Path,
    archive: &Path,
    sources: &[String],
    dest: &str,
    owner: Owner,
) -> Result<ExtractStats, TemplateError> {
    let sources: Vec<String> = sources.iter().map(|s| normalise_source(s)).collect();
    let file = File::open(archive).map_err(io_err("open", archive))?;
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
    let mut stats = ExtractStats::default();
    // Member path → where it landed, for hard-link members.
    let mut placed: HashMap<String, PathBuf> = HashMap::new();
    let bad = |e: io::Error| io_err("read archive", archive)(e);
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path().map_err(bad)?.into_owned();
        let rel = member_path(&raw)?;
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().map_err(bad)? & 0o7777;
        let target = map_member(&rel, kind.is_dir(), &sources, dest);
        let target = Path::new(&target);
        if kind.is_dir() {
            let (dir, name) = match resolve_parent(root, target, Some(owner)) {
                Ok(v) => v,
                // The member is the destination root itself (`/`).
                Err(_) if components(target).is_empty() => continue,
                Err(e) => return Err(e),
            };
            let host = dir.join(&name);
            match fs::symlink_metadata(&host) {
                Ok(m) if m.file_type().is_symlink() => {
                    resolve_dir(root, target, Some(owner))?;
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(invalid(target, "exists and is not a directory")),
                Err(_) => {
                    fs::create_dir(&host).map_err(io_err("mkdir", &host))?;
                    lchown(&host, Some(owner.uid), Some(owner.gid))
                        .map_err(io_err("chown", &host))?;
                    fs::set_permissions(&host, fs::Permissions::from_mode(mode))
                        .map_err(io_err("chmod", &host))?;
                    stats.dirs += 1;
                }
            }
            continue;
        }
        if !(kind.is_file() || kind.is_symlink() || kind.is_hard_link()) {
            stats.skipped += 1;
            continue;
        }
        let (dir, name) = resolve_parent(root, target, Some(owner))?;
        let host = dir.join(name);
        clear_non_dir(&host)?;
        if kind.is_symlink() {
            let to = entry
                .link_name()
                .map_err(bad)?
                .ok_or_else(|| invalid(&raw, "symlink without a target"))?
                .into_owned();
            symlink(&to, &host).map_err(io_err("symlink", &host))?;
            lchown(&host, Some(owner.uid), Some(owner.gid)).map_err(io_err("chown", &host))?;
            stats.links += 1;
            continue;
        }
        let size = entry.header().size().map_err(bad)?;
        if stats.bytes.saturating_add(size) > MAX_ARCHIVE_BYTES {
            return Err(invalid(
                archive,
                format!("unpacks to more than {MAX_ARCHIVE_BYTES} bytes"),
            ));
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&host)
            .map_err(io_err("create", &host))?;
        if kind.is_hard_link() {
            // A copy, not a link: the earlier member may itself share an inode with the cache.
            let from = entry
                .link_name()
                .map_err(bad)?
                .ok_or_else(|| invalid(&raw, "hard link without a target"))?;
            let from = member_path(&from)?;
            let src = placed
                .get(&from)
                .ok_or_else(|| invalid(&raw, "hard link to a member not unpacked before it"))?;
            let mut r = File::open(src).map_err(io_err("open", src))?;
            stats.bytes += io::copy(&mut r, &mut f).map_err(io_err("copy", &host))?;
            let m = fs::metadata(src).map_err(io_err("stat", src))?;
            fchown(&f, Some(owner.uid), Some(owner.gid)).map_err(io_err("chown", &host))?;
            f.set_permissions(m.permissions())
                .map_err(io_err("chmod", &host))?;
        } else {
            stats.bytes += io::copy(&mut entry, &mut f).map_err(io_err("write", &host))?;
            fchown(&f, Some(owner.uid), Some(owner.gid)).map_err(io_err("chown", &host))?;
            f.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(io_err("chmod", &host))?;
        }
        placed.insert(rel, host);
        stats.files += 1;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn me() -> Owner {
        Owner {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        }
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("usr/bin")).unwrap();
        symlink("usr/bin", r.join("bin")).unwrap();
        // An absolute link: on the host it would lead to the host's /etc.
        fs::create_dir_all(r.join("etc")).unwrap();
        symlink("/etc", r.join("usr/etc-link")).unwrap();
        symlink("../../..", r.join("usr/bin/up")).unwrap();
        assert_eq!(
            resolve_dir(r, Path::new("/bin"), None).unwrap(),
            r.join("usr/bin")
        );
        assert_eq!(
            resolve_dir(r, Path::new("/usr/etc-link"), None).unwrap(),
            r.join("etc")
        );
        assert_eq!(
            resolve_dir(r, Path::new("/bin/up/../.."), None).unwrap(),
            r.to_path_buf()
        );
        let p =
            write_in_root(r, Path::new("/usr/etc-link/motd"), b"hi", 0o644, me(), me()).unwrap();
        assert_eq!(p, r.join("etc/motd"));
        symlink("loop", r.join("loop")).unwrap();
        assert!(resolve_dir(r, Path::new("/loop"), None).is_err());
        // Missing directories are created only when asked.
        assert!(resolve_dir(r, Path::new("/opt/app"), None).is_err());
        let d = resolve_dir(r, Path::new("/opt/app"), Some(me())).unwrap();
        assert!(d.is_dir());
    }

    #[test]
    fn replacing_never_writes_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let clone = dir.path().join("clone");
        fs::write(&cache, b"cached").unwrap();
        fs::hard_link(&cache, &clone).unwrap();
        replace_file(&clone, b"new", 0o640, me().uid, me().gid).unwrap();
        assert_eq!(fs::read(&cache).unwrap(), b"cached");
        assert_eq!(fs::read(&clone).unwrap(), b"new");
        assert_eq!(fs::metadata(&clone).unwrap().mode() & 0o777, 0o640);
        let target = dir.path().join("target");
        fs::write(&target, b"t").unwrap();
        let link = dir.path().join("link");
        symlink(&target, &link).unwrap();
        replace_file(&link, b"x", 0o644, me().uid, me().gid).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"t");
        assert!(!fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    fn archive(dir: &Path, members: &[(&str, Option<&[u8]>)]) -> PathBuf {
        let path = dir.join("a.tar.gz");
        let gz = flate2::write::GzEncoder::new(
            File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut b = tar::Builder::new(gz);
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            match data {
                Some(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    h.set_mode(0o755);
                    // Set the name raw: the builder itself refuses `..`, a hostile one need not.
                    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                    h.set_cksum();
                    b.append(&h, *d).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o750);
                    h.set_cksum();
                    b.append_data(&mut h, name, io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn archives_unpack_with_copy_rules() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("usr/local")).unwrap();
        symlink("usr/local", root.join("loc")).unwrap();
        let a = archive(
            dir.path(),
            &[
                ("app", None),
                ("app/main.py", Some(b"print(1)")),
                ("app/sub", None),
                ("app/sub/x", Some(b"x")),
            ],
        );
        let s = extract_archive(&root, &a, &["app/".into()], "/loc/app", me()).unwrap();
        assert_eq!(s.files, 2);
        assert_eq!(
            fs::read(root.join("usr/local/app/main.py")).unwrap(),
            b"print(1)"
        );
        assert_eq!(fs::read(root.join("usr/local/app/sub/x")).unwrap(), b"x");
        let mode = fs::metadata(root.join("usr/local/app/sub")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o750);
        // A single file to a file name, and into a directory.
        let a = archive(dir.path(), &[("f.txt", Some(b"f"))]);
        extract_archive(&root, &a, &["f.txt".into()], "/etc/renamed", me()).unwrap();
        assert_eq!(fs::read(root.join("etc/renamed")).unwrap(), b"f");
        extract_archive(&root, &a, &["./f.txt".into()], "/data/", me()).unwrap();
        assert_eq!(fs::read(root.join("data/f.txt")).unwrap(), b"f");
        // A member climbing out is refused.
        let a = archive(dir.path(), &[("../evil", Some(b"x"))]);
        assert!(extract_archive(&root, &a, &[".".into()], "/x", me()).is_err());
    }

    #[test]
    fn member_mapping() {
        let src = |v: &[&str]| v.iter().map(|s| normalise_source(s)).collect::<Vec<_>>();
        assert_eq!(map_member("a/b", false, &src(&["a"]), "/d"), "/d/b");
        assert_eq!(map_member("a", true, &src(&["a/"]), "/d"), "/d");
        assert_eq!(map_member("f", false, &src(&["f"]), "/d/"), "/d/f");
        assert_eq!(map_member("f", false, &src(&["f"]), "/d"), "/d");
        assert_eq!(map_member("f", false, &src(&["f", "g"]), "/d"), "/d/f");
        assert_eq!(map_member("x/y", false, &src(&["."]), "/d"), "/d/x/y");
        assert_eq!(map_member("x.py", false, &src(&["*.py"]), "/d"), "/d/x.py");
    }
}
