//! Reading processes from `/proc`.
//!
//! The agent runs in the sandbox's pid namespace with its own `/proc`, so everything listed here
//! belongs to the sandbox. The process list, the sandbox's CPU and memory figures and the
//! terminal's session cleanup are all computed from it; there is no cgroup view inside.

use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;

/// One line of `/proc/<pid>/stat`, the fields the agent uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// Process id (in the sandbox's namespace).
    pub pid: i32,
    /// `comm`: the executable name, at most 15 bytes.
    pub comm: String,
    /// State letter (`R`, `S`, `D`, `Z`, `T`, `t`, `I`, …).
    pub state: char,
    /// Parent pid.
    pub ppid: i32,
    /// Process group.
    pub pgrp: i32,
    /// Session id.
    pub session: i32,
    /// User-mode CPU time, in clock ticks.
    pub utime: u64,
    /// Kernel-mode CPU time, in clock ticks.
    pub stime: u64,
    /// CPU time of waited-for children, user mode.
    pub cutime: u64,
    /// CPU time of waited-for children, kernel mode.
    pub cstime: u64,
    /// Threads in the process.
    pub threads: u64,
    /// Start time after boot, in clock ticks.
    pub starttime: u64,
    /// Resident set size, in pages.
    pub rss_pages: u64,
}

impl ProcStat {
    /// Parses the contents of `/proc/<pid>/stat`. `comm` may contain spaces and parentheses,
    /// so the fields after it are located from the *last* `)`.
    pub fn parse(line: &str) -> Option<Self> {
        let open = line.find('(')?;
        let close = line.rfind(')')?;
        let pid = line.get(..open)?.trim().parse().ok()?;
        let comm = line.get(open + 1..close)?.to_string();
        let rest: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
        // `rest[0]` is field 3 (state) of proc(5); field N is `rest[N - 3]`.
        let field = |n: usize| rest.get(n - 3).copied();
        let num = |n: usize| field(n).and_then(|s| s.parse::<u64>().ok());
        let int = |n: usize| field(n).and_then(|s| s.parse::<i32>().ok());
        Some(Self {
            pid,
            comm,
            state: field(3)?.chars().next()?,
            ppid: int(4)?,
            pgrp: int(5)?,
            session: int(6)?,
            utime: num(14)?,
            stime: num(15)?,
            cutime: num(16)?,
            cstime: num(17)?,
            threads: num(20)?,
            starttime: num(22)?,
            rss_pages: num(24)?,
        })
    }

    /// The state as a word, as `ps`/psutil say it.
    pub fn state_word(&self) -> &'static str {
        state_word(self.state)
    }

    /// Resident memory in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.rss_pages.saturating_mul(page_size())
    }

    /// CPU time of the process and its reaped children, in clock ticks.
    pub fn total_ticks(&self) -> u64 {
        self.utime + self.stime + self.cutime + self.cstime
    }
}

/// The state letter of proc(5) as a word.
pub fn state_word(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk-sleep",
        'Z' => "zombie",
        'T' => "stopped",
        't' => "tracing-stop",
        'X' | 'x' => "dead",
        'I' => "idle",
        'P' => "parked",
        'W' => "waking",
        _ => "unknown",
    }
}

/// Every pid currently in `/proc`.
pub fn pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    pids.sort_unstable();
    pids
}

/// `/proc/<pid>/stat`, or `None` if the process is gone.
pub fn stat(pid: i32) -> Option<ProcStat> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    ProcStat::parse(&line)
}

/// Every process that could be read.
pub fn all() -> Vec<ProcStat> {
    pids().into_iter().filter_map(stat).collect()
}

/// The command line, arguments separated by spaces; `[comm]` for kernel-less or zombie
/// processes with an empty command line (as `ps` shows them).
pub fn cmdline(pid: i32, comm: &str) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let parts: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    if parts.is_empty() {
        format!("[{comm}]")
    } else {
        parts.join(" ")
    }
}

/// The owner uid of the process (that of its `/proc` directory).
pub fn uid(pid: i32) -> Option<u32> {
    std::fs::metadata(format!("/proc/{pid}"))
        .ok()
        .map(|m| m.uid())
}

/// Seconds since boot (`/proc/uptime`), on the same clock as [`ProcStat::starttime`].
pub fn uptime_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/uptime").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Average CPU use of a process over its lifetime, in percent of one CPU (what `ps` shows).
pub fn lifetime_cpu_percent(p: &ProcStat, uptime: f64) -> f64 {
    let hz = clock_ticks() as f64;
    let age = uptime - p.starttime as f64 / hz;
    if age <= 0.0 {
        return 0.0;
    }
    let used = (p.utime + p.stime) as f64 / hz;
    round2(used / age * 100.0)
}

/// Rounds to two decimals for display.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Clock ticks per second for `/proc` times (`USER_HZ`).
pub fn clock_ticks() -> u64 {
    static HZ: OnceLock<u64> = OnceLock::new();
    *HZ.get_or_init(|| sysconf(libc::_SC_CLK_TCK).unwrap_or(100))
}

/// Bytes per memory page.
pub fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| sysconf(libc::_SC_PAGESIZE).unwrap_or(4096))
}

#[allow(unsafe_code)]
fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf only reads a configuration value; it takes an integer and touches no
    // memory of ours.
    let v = unsafe { libc::sysconf(name) };
    u64::try_from(v).ok().filter(|v| *v > 0)
}

/// User names by uid from the sandbox's `/etc/passwd`.
pub fn user_names() -> std::collections::HashMap<u32, String> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

/// SIGKILLs every process of session `sid` (a terminal's shell and everything started from
/// it, including jobs that bash put in their own process groups), until none is left or
/// `attempts` scans passed. Returns how many signals were sent.
pub fn kill_session(sid: i32, attempts: usize) -> usize {
    let mut sent = 0;
    if sid <= 1 {
        return 0;
    }
    for _ in 0..attempts {
        let members: Vec<i32> = all()
            .into_iter()
            .filter(|p| p.session == sid && p.state != 'Z')
            .map(|p| p.pid)
            .collect();
        if members.is_empty() {
            break;
        }
        for pid in members {
            if pid > 1 && pid as u32 != std::process::id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                sent += 1;
            }
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_comm() {
        let line = "42 (a (b) c) S 2 42 42 0 -1 4194560 100 0 0 0 7 3 1 2 20 0 1 0 12345 1000 250 \
                    18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let p = ProcStat::parse(line).unwrap();
        assert_eq!(p.pid, 42);
        assert_eq!(p.comm, "a (b) c");
        assert_eq!(p.state, 'S');
        assert_eq!((p.ppid, p.pgrp, p.session), (2, 42, 42));
        assert_eq!((p.utime, p.stime, p.cutime, p.cstime), (7, 3, 1, 2));
        assert_eq!(p.threads, 1);
        assert_eq!(p.starttime, 12345);
        assert_eq!(p.rss_pages, 250);
        assert_eq!(p.total_ticks(), 13);
        assert_eq!(p.state_word(), "sleeping");
    }

    #[test]
    fn reads_own_process() {
        let me = std::process::id() as i32;
        let p = stat(me).unwrap();
        assert_eq!(p.pid, me);
        assert!(pids().contains(&me));
        assert!(!cmdline(me, &p.comm).is_empty());
        assert!(uptime_seconds().unwrap() > 0.0);
    }
}
