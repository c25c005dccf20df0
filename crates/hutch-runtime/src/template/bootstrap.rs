//! The base of a built template: a Debian root made by `mmdebstrap`, shifted to the sandbox uid
//! range, and cached by everything it depends on.
//!
//! `mmdebstrap` is the faster of the two Debian bootstrappers measured here (about 30 s for
//! bookworm + python3, `notes/isolation-probes.md` §3b) and needs nothing but the apt mirror this
//! machine already uses: the mirror lines and apt's freshness settings are taken from the host's
//! own apt configuration, so a build reaches no other host. It runs in root mode inside a
//! private mount namespace (`unshare --mount`), so the `/proc` and `/dev` mounts it makes in the
//! target vanish with it even when it is killed.
//!
//! A finished base is cached under a key over the suite, variant, package set, mirror lines,
//! uid base, this crate's version and [`BASE_FORMAT`] — everything the tree depends on — so a
//! cache can be shared between data directories (and test runs) without going stale silently.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{io_err, TemplateError};

/// Bumped whenever the way a base is made or shifted changes, so old cache entries are not used.
pub const BASE_FORMAT: u32 = 1;

/// `mmdebstrap` variants a template may start from (see mmdebstrap(1)). `apt` (essential
/// packages plus apt) is the default, so build commands can install more packages.
pub const VARIANTS: &[&str] = &[
    "essential",
    "apt",
    "required",
    "minbase",
    "buildd",
    "important",
    "standard",
];

/// Documentation and translations left out of every root: about a quarter of a small root's
/// size, and nothing a sandbox reads.
const DPKG_EXCLUDES: &[&str] = &[
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
];

/// What the bootstrap installs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseSpec {
    /// Debian suite (`bookworm`).
    pub suite: String,
    /// mmdebstrap variant (one of [`VARIANTS`]).
    pub variant: String,
    /// Extra packages (`--include`), sorted and without duplicates once [`normalised`].
    ///
    /// [`normalised`]: BaseSpec::normalised
    pub packages: Vec<String>,
}

impl BaseSpec {
    /// The same spec with packages sorted and deduplicated (so equal sets share a cache entry).
    pub fn normalised(&self) -> Self {
        let mut packages = self.packages.clone();
        packages.sort();
        packages.dedup();
        Self {
            suite: self.suite.clone(),
            variant: self.variant.clone(),
            packages,
        }
    }

    /// Checks names so nothing can smuggle options or separators into the command line.
    pub fn validate(&self) -> Result<(), String> {
        let suite_ok = !self.suite.is_empty()
            && self.suite.len() <= 32
            && self.suite.starts_with(|c: char| c.is_ascii_lowercase())
            && self
                .suite
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !suite_ok {
            return Err(format!(
                "invalid Debian suite {:?} (e.g. \"bookworm\")",
                self.suite
            ));
        }
        if !VARIANTS.contains(&self.variant.as_str()) {
            return Err(format!(
                "unknown variant {:?}; use one of {}",
                self.variant,
                VARIANTS.join(", ")
            ));
        }
        if self.packages.len() > 1000 {
            return Err("more than 1000 packages".into());
        }
        for p in &self.packages {
            if !valid_package(p) {
                return Err(format!(
                    "invalid Debian package name {p:?} (lower-case letters, digits, '+', '-', \
                     '.', optionally =version)"
                ));
            }
        }
        Ok(())
    }

    /// `bookworm (apt) + python3, python3-pip`.
    pub fn describe(&self) -> String {
        if self.packages.is_empty() {
            format!("{} ({})", self.suite, self.variant)
        } else {
            format!(
                "{} ({}) + {}",
                self.suite,
                self.variant,
                self.packages.join(", ")
            )
        }
    }
}

/// A Debian package name, optionally with `=version` or `:arch`.
fn valid_package(p: &str) -> bool {
    let (name, version) = match p.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (p, None),
    };
    let name = name.split_once(':').map_or(name, |(n, arch)| {
        if arch.chars().all(|c| c.is_ascii_alphanumeric()) {
            n
        } else {
            ""
        }
    });
    let name_ok = name.len() >= 2
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    let version_ok = version.is_none_or(|v| {
        !v.is_empty()
            && v.len() <= 128
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c))
    });
    name_ok && version_ok
}

/// Where packages come from: the host's own apt configuration, turned into one-line entries
/// for the requested suite, plus the apt options that make that mirror usable here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AptSources {
    /// `deb URI SUITE COMPONENTS` lines.
    pub lines: Vec<String>,
    /// `--aptopt` values copied from the host (`Acquire::Check-Valid-Until "false"`, proxies).
    pub aptopts: Vec<String>,
}

/// One `deb` source of the host: a URI, its suites and components.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostSource {
    uri: String,
    suites: Vec<String>,
    components: Vec<String>,
}

/// Parses deb822 `.sources` text (only `Types: deb` stanzas).
fn parse_deb822(text: &str) -> Vec<HostSource> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut types = Vec::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut components = Vec::new();
        let mut enabled = true;
        for line in stanza.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let words = || v.split_whitespace().map(str::to_string).collect::<Vec<_>>();
            match k.trim().to_ascii_lowercase().as_str() {
                "types" => types = words(),
                "uris" => uris = words(),
                "suites" => suites = words(),
                "components" => components = words(),
                "enabled" => enabled = !v.trim().eq_ignore_ascii_case("no"),
                _ => {}
            }
        }
        if enabled && types.iter().any(|t| t == "deb") {
            for uri in uris {
                out.push(HostSource {
                    uri,
                    suites: suites.clone(),
                    components: components.clone(),
                });
            }
        }
    }
    out
}

/// Parses one-line `sources.list` text (`deb [opts] URI SUITE COMPONENTS…`).
fn parse_one_line(text: &str) -> Vec<HostSource> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let rest = rest.trim_start();
        let rest = if rest.starts_with('[') {
            rest.split_once(']').map_or("", |(_, r)| r)
        } else {
            rest
        };
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            out.push(HostSource {
                uri: uri.to_string(),
                suites: vec![suite.to_string()],
                components: words.map(str::to_string).collect(),
            });
        }
    }
    out
}

/// Turns the host's sources into entries for `suite`: the archive that serves the host's main
/// suite (with `-updates` when the host uses it) and the one that serves `-security`.
fn sources_for(host: &[HostSource], suite: &str) -> Vec<String> {
    let is_security = |s: &str| s.ends_with("-security") || s.ends_with("/updates");
    let comps = |h: &HostSource| {
        if h.components.is_empty() {
            "main".to_string()
        } else {
            h.components.join(" ")
        }
    };
    let mut lines = Vec::new();
    if let Some(main) = host
        .iter()
        .find(|h| h.suites.iter().any(|s| !is_security(s)))
    {
        lines.push(format!("deb {} {suite} {}", main.uri, comps(main)));
        if main.suites.iter().any(|s| s.ends_with("-updates")) {
            lines.push(format!("deb {} {suite}-updates {}", main.uri, comps(main)));
        }
    }
    if let Some(sec) = host
        .iter()
        .find(|h| h.suites.iter().any(|s| s.ends_with("-security")))
    {
        lines.push(format!("deb {} {suite}-security {}", sec.uri, comps(sec)));
    }
    lines
}

/// The host's apt sources for `suite`, from `/etc/apt/sources.list.d/*.sources`, `*.list` and
/// `/etc/apt/sources.list`, and the apt options that make them work here.
pub fn host_sources(suite: &str) -> Result<AptSources, TemplateError> {
    let mut host = Vec::new();
    let dir = Path::new("/etc/apt/sources.list.d");
    if let Ok(entries) = fs::read_dir(dir) {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let text = fs::read_to_string(&p).unwrap_or_default();
            match p.extension().and_then(|e| e.to_str()) {
                Some("sources") => host.extend(parse_deb822(&text)),
                Some("list") => host.extend(parse_one_line(&text)),
                _ => {}
            }
        }
    }
    host.extend(parse_one_line(
        &fs::read_to_string("/etc/apt/sources.list").unwrap_or_default(),
    ));
    let lines = sources_for(&host, suite);
    if lines.is_empty() {
        return Err(super::invalid(
            Path::new("/etc/apt"),
            "no Debian mirror configured in apt (sources.list.d/*.sources or sources.list)",
        ));
    }
    Ok(AptSources {
        lines,
        aptopts: host_aptopts(),
    })
}

/// apt settings of the host that decide whether its mirror can be used: freshness checks (a
/// snapshot mirror needs them off) and proxies.
fn host_aptopts() -> Vec<String> {
    let Ok(out) = Command::new("apt-config").arg("dump").output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            let key = l.split_whitespace().next().unwrap_or("");
            matches!(key, "Acquire::Check-Valid-Until" | "Acquire::Check-Date")
                || (key.starts_with("Acquire::") && key.to_ascii_lowercase().ends_with("::proxy"))
        })
        .map(|l| l.trim_end_matches(';').to_string())
        .collect()
}

/// True if `mmdebstrap` is on `PATH`.
pub fn mmdebstrap_available() -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("mmdebstrap").is_file()))
        .unwrap_or(false)
}

/// The cache key of a base: a hex SHA-256 over everything the tree depends on.
pub fn cache_key(spec: &BaseSpec, sources: &AptSources, uid_base: u32) -> String {
    let material = serde_json::json!({
        "format": BASE_FORMAT,
        "hutch": env!("CARGO_PKG_VERSION"),
        "spec": spec.normalised(),
        "sources": sources,
        "uid_base": uid_base,
        "dpkg": DPKG_EXCLUDES,
    });
    hex::encode(Sha256::digest(material.to_string().as_bytes()))
}

/// The bootstrap command: `unshare --mount … mmdebstrap … SUITE TARGET SOURCES…`. stdout and
/// stderr carry its progress (`I: …` lines).
pub fn command(spec: &BaseSpec, target: &Path, sources: &AptSources) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "mmdebstrap"])
        .arg("--mode=root")
        .arg("--format=directory")
        .arg(format!("--variant={}", spec.variant));
    let spec = spec.normalised();
    if !spec.packages.is_empty() {
        cmd.arg(format!("--include={}", spec.packages.join(",")));
    }
    cmd.arg("--aptopt=APT::Install-Recommends \"false\"");
    for opt in &sources.aptopts {
        cmd.arg(format!("--aptopt={opt}"));
    }
    for opt in DPKG_EXCLUDES {
        cmd.arg(format!("--dpkgopt={opt}"));
    }
    cmd.arg(&spec.suite).arg(target);
    cmd.args(&sources.lines);
    cmd.env("LC_ALL", "C.UTF-8")
        .env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// Where an mmdebstrap output line puts the bootstrap: `("bootstrap"|"packages", percent of
/// the bootstrap done)`.
pub fn stage(line: &str) -> Option<(&'static str, u8)> {
    let line = line.trim_start();
    let stages: &[(&str, &str, u8)] = &[
        ("I: running apt-get update", "bootstrap", 5),
        ("I: downloading packages", "bootstrap", 15),
        ("I: extracting archives", "bootstrap", 40),
        ("I: installing essential packages", "bootstrap", 50),
        ("I: installing remaining packages", "packages", 65),
        ("I: cleaning package lists", "packages", 95),
        ("I: success", "packages", 100),
    ];
    stages
        .iter()
        .find(|(prefix, _, _)| line.starts_with(prefix))
        .map(|(_, step, pct)| (*step, *pct))
}

/// A directory of finished bases, `<dir>/<key>/rootfs`, shared by concurrent builders (several
/// servers, test processes) through one lock file per key.
#[derive(Debug, Clone)]
pub struct BaseCache {
    dir: PathBuf,
}

/// Holds a key's lock until dropped.
#[derive(Debug)]
pub struct CacheLock(#[allow(dead_code)] nix::fcntl::Flock<File>);

impl BaseCache {
    /// A cache in `dir` (created on first use).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The finished base of `key`, if cached; marks it used.
    pub fn get(&self, key: &str) -> Option<PathBuf> {
        let entry = self.dir.join(key);
        let root = entry.join("rootfs");
        if !entry.join("complete").is_file() || !root.is_dir() {
            return None;
        }
        let _ = File::options()
            .write(true)
            .open(entry.join("complete"))
            .and_then(|f| f.set_modified(SystemTime::now()));
        Some(root)
    }

    /// Waits for, then takes, the lock of `key` (blocking: call off the async runtime).
    pub fn lock(&self, key: &str) -> Result<CacheLock, TemplateError> {
        fs::create_dir_all(&self.dir).map_err(io_err("mkdir", &self.dir))?;
        let path = self.dir.join(format!("{key}.lock"));
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map(CacheLock)
            .map_err(|(_, e)| io_err("flock", &path)(e.into()))
    }

    /// A fresh, empty staging path for building `key` (under the lock; leftovers of a killed
    /// builder are removed).
    pub fn staging(&self, key: &str) -> Result<PathBuf, TemplateError> {
        let tmp = self.dir.join(format!("{key}.tmp"));
        super::tree::remove_tree(&tmp)?;
        fs::create_dir_all(&tmp).map_err(io_err("mkdir", &tmp))?;
        Ok(tmp)
    }

    /// Publishes a staged base (`<staging>/rootfs` complete) as `key`; returns its root.
    pub fn commit(&self, key: &str, staging: &Path) -> Result<PathBuf, TemplateError> {
        let entry = self.dir.join(key);
        super::tree::remove_tree(&entry)?;
        fs::rename(staging, &entry).map_err(io_err("rename", &entry))?;
        let marker = entry.join("complete");
        fs::write(&marker, b"").map_err(io_err("write", &marker))?;
        Ok(entry.join("rootfs"))
    }

    /// Removes bases not used for `max_age`, and staging leftovers whose lock nobody holds.
    /// Returns how many entries went.
    pub fn prune(&self, max_age: Duration) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains('.') || !e.path().is_dir() {
                continue;
            }
            let used = fs::metadata(e.path().join("complete")).and_then(|m| m.modified());
            let stale = match used {
                Ok(t) => t.elapsed().is_ok_and(|age| age > max_age),
                Err(_) => true,
            };
            if !stale {
                continue;
            }
            // Only with the key's lock, so a concurrent builder is never pulled from under.
            let path = self.dir.join(format!("{name}.lock"));
            let Ok(f) = OpenOptions::new().write(true).open(&path) else {
                continue;
            };
            if let Ok(_lock) =
                nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
            {
                if super::tree::remove_tree(&e.path()).is_ok() {
                    let _ = fs::remove_file(self.dir.join(format!("{name}.tmp")));
                    removed += 1;
                }
            }
        }
        removed
    }
}

/// Size of a tree in bytes (regular files, each inode once), for logs.
pub fn tree_size(root: &Path) -> io::Result<u64> {
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt;
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir)? {
            let e = e?;
            let m = e.metadata()?;
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && seen.insert(m.ino()) {
                total += m.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_are_checked() {
        let mut s = BaseSpec {
            suite: "bookworm".into(),
            variant: "apt".into(),
            packages: vec!["python3".into(), "g++".into(), "libc6:amd64".into()],
        };
        s.validate().unwrap();
        for bad in ["a,b", "--foo", "Python3", "x", "a b", "p=1,2"] {
            s.packages = vec![bad.into()];
            assert!(s.validate().is_err(), "{bad}");
        }
        s.packages = vec![];
        s.variant = "fat".into();
        assert!(s.validate().unwrap_err().contains("essential"));
        s.variant = "apt".into();
        s.suite = "../x".into();
        assert!(s.validate().is_err());
    }

    #[test]
    fn host_sources_become_suite_lines() {
        let text = "Types: deb\n# snapshot\nURIs: http://deb.debian.org/debian\nSuites: bookworm \
                    bookworm-updates\nComponents: main\nSigned-By: /k.gpg\n\nTypes: deb\nURIs: \
                    http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: \
                    main\n";
        let host = parse_deb822(text);
        assert_eq!(host.len(), 2);
        assert_eq!(
            sources_for(&host, "trixie"),
            vec![
                "deb http://deb.debian.org/debian trixie main",
                "deb http://deb.debian.org/debian trixie-updates main",
                "deb http://deb.debian.org/debian-security trixie-security main",
            ]
        );
        let one = parse_one_line("# c\ndeb [arch=amd64] http://m/debian bookworm main contrib\n");
        assert_eq!(
            sources_for(&one, "bookworm"),
            vec!["deb http://m/debian bookworm main contrib"]
        );
    }

    #[test]
    fn cache_keys_follow_the_package_set_not_its_order() {
        let src = AptSources {
            lines: vec!["deb http://m/debian bookworm main".into()],
            aptopts: vec![],
        };
        let a = BaseSpec {
            suite: "bookworm".into(),
            variant: "apt".into(),
            packages: vec!["b".into(), "a".into()],
        };
        let b = BaseSpec {
            packages: vec!["a".into(), "b".into(), "a".into()],
            ..a.clone()
        };
        assert_eq!(cache_key(&a, &src, 1), cache_key(&b, &src, 1));
        let c = BaseSpec {
            variant: "essential".into(),
            ..a.clone()
        };
        assert_ne!(cache_key(&a, &src, 1), cache_key(&c, &src, 1));
        assert_ne!(cache_key(&a, &src, 1), cache_key(&a, &src, 2));
    }

    #[test]
    fn mmdebstrap_stages_map_to_steps() {
        assert_eq!(
            stage("I: downloading packages with apt..."),
            Some(("bootstrap", 15))
        );
        assert_eq!(
            stage("I: installing remaining packages inside the chroot..."),
            Some(("packages", 65))
        );
        assert_eq!(stage("Get:1 http://x"), None);
    }

    #[test]
    fn the_command_carries_the_spec() {
        let cmd = command(
            &BaseSpec {
                suite: "bookworm".into(),
                variant: "apt".into(),
                packages: vec!["python3".into(), "curl".into()],
            },
            Path::new("/t/rootfs"),
            &AptSources {
                lines: vec!["deb http://m/debian bookworm main".into()],
                aptopts: vec!["Acquire::Check-Valid-Until \"false\"".into()],
            },
        );
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(cmd.get_program(), "unshare");
        assert!(
            args.contains(&"--include=curl,python3".to_string()),
            "{args:?}"
        );
        assert!(args.contains(&"--variant=apt".to_string()));
        assert!(args.contains(&"--aptopt=Acquire::Check-Valid-Until \"false\"".to_string()));
        assert_eq!(args.last().unwrap(), "deb http://m/debian bookworm main");
    }
}
