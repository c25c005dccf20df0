//! Tests against the real kernel. They need root, `unshare`, `nsenter`, `ip`, `nft`, `python3`
//! and `curl`; the internet test additionally needs deb.debian.org to be reachable.
//!
//! Every test that creates host links or touches the nftables table holds `HOST_LOCK`, because
//! they assert on host-wide state (`ip -o link` having no `hutch*` left, the table existing or
//! not). Links that squat on a name are bridges, not dummies: some kernels (e.g. this project's
//! Firecracker VMs) are built without the dummy driver. Slot hints are in the 9000s to stay away from anything a real server on this machine
//! would pick.

use super::*;

use std::io::{BufRead, BufReader, ErrorKind};
use std::net::{TcpListener, ToSocketAddrs};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static HOST_LOCK: Mutex<()> = Mutex::new(());

fn host_lock() -> std::sync::MutexGuard<'static, ()> {
    HOST_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A throwaway network namespace: `unshare -n sleep 30`, whose pid is the sleep itself.
struct Sandbox {
    child: Child,
}

impl Sandbox {
    fn new() -> Self {
        let child = Command::new("unshare")
            .args(["-n", "sleep", "30"])
            .spawn()
            .unwrap();
        let pid = child.id();
        // unshare(2) happens after fork, so wait until the process is in a new namespace.
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/net")) {
                if ns != ours {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "unshare never switched netns");
            std::thread::sleep(Duration::from_millis(1));
        }
        Self { child }
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// Runs a shell command inside the namespace, returning stdout (panics on failure).
    fn sh(&self, cmd: &str) -> String {
        sh_ok(&format!("nsenter -t {} -n sh -c '{cmd}'", self.pid()))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Deletes a host link when dropped, so a failed assertion does not leak it.
struct LinkGuard(String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// Removes the nftables table when dropped.
struct RulesGuard;

impl Drop for RulesGuard {
    fn drop(&mut self) {
        let _ = remove_host_rules();
    }
}

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh").args(["-c", cmd]).output().unwrap()
}

fn sh_ok(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn host_link_exists(name: &str) -> bool {
    sh(&format!("ip link show dev {name}")).status.success()
}

fn hutch_links() -> Vec<String> {
    sh_ok("ip -o link")
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| n.starts_with(HOST_IF_PREFIX))
        .collect()
}

fn assert_lease_configured(sb: &Sandbox, lease: &NetLease) {
    let addrs = sb.sh("ip -4 -o addr show dev eth0");
    assert!(
        addrs.contains(&format!("inet {}/30", lease.sandbox_ip)),
        "{addrs}"
    );
    let routes = sb.sh("ip route show default");
    assert!(
        routes.contains(&format!("default via {} dev eth0", lease.host_ip)),
        "{routes}"
    );
    let links = sb.sh("ip -o link");
    assert!(links.contains("lo: <LOOPBACK,UP,LOWER_UP>"), "{links}");
    assert!(links.contains("eth0@"), "{links}");
    let host = sh_ok(&format!("ip -4 -o addr show dev {}", lease.host_if));
    assert!(
        host.contains(&format!("inet {}/30", lease.host_ip)),
        "{host}"
    );
    assert!(sh_ok(&format!("ip -o link show dev {}", lease.host_if)).contains(",UP"));
}

// ---------------------------------------------------------------------------------------------
// Pure logic

#[test]
fn default_pool_slot_math() {
    let pool = Pool::new(&NetConfig::default()).unwrap();
    assert_eq!(pool.slots(), 16384);
    let l = pool.lease(0);
    assert_eq!(
        (l.host_ip, l.sandbox_ip, l.prefix_len),
        (
            Ipv4Addr::new(10, 231, 0, 1),
            Ipv4Addr::new(10, 231, 0, 2),
            30
        )
    );
    let l = pool.lease(16383);
    assert_eq!(l.host_if, "hutch16383");
    assert_eq!(l.sandbox_ip, Ipv4Addr::new(10, 231, 255, 254));
    let l = pool.lease(70);
    assert_eq!(l.host_ip, Ipv4Addr::new(10, 231, 1, 25));
}

#[test]
fn pool_validation() {
    let bad = |base, prefix_len| {
        matches!(
            Pool::new(&NetConfig { base, prefix_len }),
            Err(NetError::InvalidConfig { .. })
        )
    };
    assert!(bad(Ipv4Addr::new(10, 231, 0, 4), 16));
    assert!(bad(Ipv4Addr::new(10, 231, 0, 0), 31));
    let tiny = Pool::new(&NetConfig {
        base: Ipv4Addr::new(10, 231, 0, 4),
        prefix_len: 30,
    })
    .unwrap();
    assert_eq!(tiny.slots(), 1);
    // The largest pool still yields names that fit IFNAMSIZ (15 bytes).
    let huge = Pool::new(&NetConfig {
        base: Ipv4Addr::UNSPECIFIED,
        prefix_len: 0,
    })
    .unwrap();
    assert!(huge.lease(huge.slots() - 1).host_if.len() <= 15);
}

#[test]
fn host_if_names() {
    assert!(is_host_if_name("hutch0"));
    assert!(is_host_if_name("hutch4294967295"));
    assert!(!is_host_if_name("hutch"));
    assert!(!is_host_if_name("hutchx"));
    assert!(!is_host_if_name("eth0"));
    assert!(matches!(
        release("eth0"),
        Err(NetError::NotHutchInterface { .. })
    ));
}

#[test]
fn config_serde_roundtrip_and_defaults() {
    let json = serde_json::to_string(&NetConfig::default()).unwrap();
    assert_eq!(json, r#"{"base":"10.231.0.0","prefix_len":16}"#);
    let partial: NetConfig = serde_json::from_str(r#"{"prefix_len":20}"#).unwrap();
    assert_eq!(partial.base, Ipv4Addr::new(10, 231, 0, 0));
    let lease = Pool::new(&NetConfig::default()).unwrap().lease(3);
    let back: NetLease = serde_json::from_str(&serde_json::to_string(&lease).unwrap()).unwrap();
    assert_eq!(back, lease);
}

#[test]
fn nonexistent_pid_is_a_typed_error() {
    assert!(matches!(loopback_only(0), Err(NetError::InvalidPid { .. })));
    // Pid numbers above pid_max (at most 2^22) never exist.
    let err = attach_internet(&NetConfig::default(), 9_999_999, 0).unwrap_err();
    assert!(
        matches!(err, NetError::NetnsOpen { pid: 9_999_999, .. }),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Real kernel

#[test]
fn loopback_only_brings_up_lo_and_nothing_else() {
    let sb = Sandbox::new();
    let before = sb.sh("ip -o link");
    assert!(!before.contains(",UP"), "{before}");
    loopback_only(sb.pid()).unwrap();
    let links = sb.sh("ip -o link");
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains("lo: <LOOPBACK,UP,LOWER_UP>"), "{links}");
    // The calling thread is back home: our own netns still has the host's interfaces.
    let ours = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    assert_eq!(ours, std::fs::read_link("/proc/self/ns/net").unwrap());
}

#[test]
fn attach_internet_configures_both_ends_and_skips_taken_slots() {
    let _lock = host_lock();
    const HINT: u32 = 9100;
    // Someone else holds the hinted slot: both leases must skip it.
    let _taken = LinkGuard(host_if_name(HINT));
    sh_ok(&format!("ip link add {} type bridge", host_if_name(HINT)));

    let (a, b) = (Sandbox::new(), Sandbox::new());
    let (pa, pb) = (a.pid(), b.pid());
    let cfg = NetConfig::default();
    let (la, lb) = std::thread::scope(|s| {
        let ta = s.spawn(|| attach_internet(&cfg, pa, HINT));
        let tb = s.spawn(|| attach_internet(&cfg, pb, HINT));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let (la, lb) = (la.unwrap(), lb.unwrap());
    let _ga = LinkGuard(la.host_if.clone());
    let _gb = LinkGuard(lb.host_if.clone());

    assert_ne!(la.slot, lb.slot);
    assert_ne!(la.slot, HINT);
    assert_ne!(lb.slot, HINT);
    let mut slots = [la.slot, lb.slot];
    slots.sort_unstable();
    assert_eq!(slots, [HINT + 1, HINT + 2]);
    for (sb, lease) in [(&a, &la), (&b, &lb)] {
        assert_eq!(lease.host_if, format!("hutch{}", lease.slot));
        let net = u32::from(Ipv4Addr::new(10, 231, 0, 0)) + 4 * lease.slot;
        assert_eq!(lease.host_ip, Ipv4Addr::from(net + 1));
        assert_eq!(lease.sandbox_ip, Ipv4Addr::from(net + 2));
        assert_lease_configured(sb, lease);
    }

    release(&la.host_if).unwrap();
    release(&lb.host_if).unwrap();
}

#[test]
fn slot_search_wraps_around_and_reports_exhaustion() {
    let _lock = host_lock();
    // A 4-slot pool far from the default one: 10.232.0.0/28.
    let cfg = NetConfig {
        base: Ipv4Addr::new(10, 232, 0, 0),
        prefix_len: 28,
    };
    let _g: Vec<LinkGuard> = [2, 3]
        .iter()
        .map(|s| {
            sh_ok(&format!("ip link add {} type bridge", host_if_name(*s)));
            LinkGuard(host_if_name(*s))
        })
        .collect();
    let sb = Sandbox::new();
    let lease = attach_internet(&cfg, sb.pid(), 2).unwrap();
    let _gl = LinkGuard(lease.host_if.clone());
    assert_eq!(lease.slot, 0, "hint 2 and 3 taken, so it wraps to 0");
    assert_eq!(lease.sandbox_ip, Ipv4Addr::new(10, 232, 0, 2));
    assert_lease_configured(&sb, &lease);

    let _g1 = LinkGuard(host_if_name(1));
    sh_ok(&format!("ip link add {} type bridge", host_if_name(1)));
    let other = Sandbox::new();
    let err = attach_internet(&cfg, other.pid(), 0).unwrap_err();
    assert!(
        matches!(err, NetError::SlotsExhausted { slots: 4 }),
        "{err}"
    );
    assert_eq!(
        other.sh("ip -o link").lines().count(),
        1,
        "nothing left behind"
    );
}

#[test]
fn attach_fails_cleanly_when_sandbox_already_has_eth0() {
    let _lock = host_lock();
    const HINT: u32 = 9200;
    let sb = Sandbox::new();
    sb.sh("ip link add eth0 type bridge");
    let err = attach_internet(&NetConfig::default(), sb.pid(), HINT).unwrap_err();
    assert!(matches!(err, NetError::SandboxHasEth0 { .. }), "{err}");
    assert!(!host_link_exists(&host_if_name(HINT)));
    assert!(!host_link_exists(&host_if_name(HINT + 1)));
}

#[test]
fn release_and_netns_teardown_remove_host_links() {
    let _lock = host_lock();
    let cfg = NetConfig::default();

    let a = Sandbox::new();
    let la = attach_internet(&cfg, a.pid(), 9300).unwrap();
    let _ga = LinkGuard(la.host_if.clone());
    assert!(host_link_exists(&la.host_if));
    release(&la.host_if).unwrap();
    assert!(!host_link_exists(&la.host_if));
    assert!(!a.sh("ip -o link").contains("eth0"), "peer went with it");
    release(&la.host_if).unwrap(); // already gone: still Ok

    // Killing the namespace's last process makes the kernel delete the pair (asynchronously).
    let mut b = Sandbox::new();
    let lb = attach_internet(&cfg, b.pid(), 9300).unwrap();
    let _gb = LinkGuard(lb.host_if.clone());
    assert!(host_link_exists(&lb.host_if));
    b.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while host_link_exists(&lb.host_if) {
        assert!(Instant::now() < deadline, "veth outlived its namespace");
        std::thread::sleep(Duration::from_millis(10));
    }
    release(&lb.host_if).unwrap();
    drop(a);
    assert_eq!(hutch_links(), Vec::<String>::new());
}

/// Probes TCP connects from inside a namespace; returns (outcome, milliseconds) per target.
fn probe(sb: &Sandbox, targets: &[(Ipv4Addr, u16)], timeout_s: f64) -> Vec<(String, f64)> {
    const SCRIPT: &str = r#"
import socket, sys, time
t = float(sys.argv[1])
for target in sys.argv[2:]:
    host, port = target.rsplit(":", 1)
    s = socket.socket()
    s.settimeout(t)
    start = time.monotonic()
    try:
        s.connect((host, int(port)))
        r = "connected"
    except ConnectionRefusedError:
        r = "refused"
    except socket.timeout:
        r = "timeout"
    except OSError as e:
        r = "error-%d" % e.errno
    print(r, (time.monotonic() - start) * 1000)
    s.close()
"#;
    let mut cmd = Command::new("nsenter");
    cmd.args(["-t", &sb.pid().to_string(), "-n", "python3", "-c", SCRIPT])
        .arg(timeout_s.to_string());
    for (ip, port) in targets {
        cmd.arg(format!("{ip}:{port}"));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (r, ms) = l.split_once(' ').unwrap();
            (r.to_owned(), ms.parse().unwrap())
        })
        .collect()
}

fn host_eth0_ip() -> Ipv4Addr {
    let out = sh_ok("ip -4 -o addr show eth0");
    let cidr = out
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap();
    cidr.split('/').next().unwrap().parse().unwrap()
}

fn assert_nothing_accepted(l: &TcpListener) {
    l.set_nonblocking(true).unwrap();
    match l.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("a sandbox reached a host listener: {other:?}"),
    }
    l.set_nonblocking(false).unwrap();
}

#[test]
fn host_rules_isolate_sandboxes_and_allow_internet() {
    let _lock = host_lock();
    let _rules = RulesGuard;
    let cfg = NetConfig::default();
    let a = Sandbox::new();
    let b = Sandbox::new();
    let la = attach_internet(&cfg, a.pid(), 9400).unwrap();
    let _ga = LinkGuard(la.host_if.clone());
    let lb = attach_internet(&cfg, b.pid(), 9400).unwrap();
    let _gb = LinkGuard(lb.host_if.clone());

    let lo_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let any_listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let lo_port = lo_listener.local_addr().unwrap().port();
    let any_port = any_listener.local_addr().unwrap().port();
    let eth0 = host_eth0_ip();

    // Control: with no rules, the sandbox can reach a host service via its gateway. This is
    // what the rules are for, and proves the probes below would notice a hole.
    let _ = remove_host_rules();
    let r = probe(&a, &[(la.host_ip, any_port)], 2.0);
    assert_eq!(r[0].0, "connected", "{r:?}");
    drop(any_listener.accept().unwrap());

    // Install from two threads at once, several times: concurrent, idempotent, atomic.
    std::thread::scope(|s| {
        let t: Vec<_> = (0..2)
            .map(|_| s.spawn(|| (0..5).try_for_each(|_| install_host_rules(&cfg))))
            .collect();
        for t in t {
            t.join().unwrap().unwrap();
        }
    });
    let table = sh_ok("nft list table inet hutch");
    assert!(table.contains("masquerade"), "{table}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );

    // (a) the host's loopback is not the sandbox's; (b) no host address is reachable, and the
    // refusal is immediate (RST from the reject rule, not a timeout).
    let r = probe(
        &a,
        &[
            (Ipv4Addr::LOCALHOST, lo_port),
            (la.host_ip, any_port),
            (eth0, any_port),
            (lb.host_ip, any_port),
        ],
        3.0,
    );
    for (i, (outcome, ms)) in r.iter().enumerate() {
        assert_eq!(outcome, "refused", "target {i}: {r:?}");
        assert!(*ms < 500.0, "target {i} took {ms} ms: {r:?}");
    }
    assert_nothing_accepted(&lo_listener);
    assert_nothing_accepted(&any_listener);

    // Sandbox to sandbox is dropped in forward.
    let mut server = Command::new("nsenter")
        .args(["-t", &b.pid().to_string(), "-n", "python3", "-c"])
        .arg(
            "import socket,time\ns=socket.socket()\ns.bind(('0.0.0.0',8080))\ns.listen()\n\
             print('ready',flush=True)\ntime.sleep(20)",
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let r = probe(&a, &[(lb.sandbox_ip, 8080)], 1.0);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(r[0].0, "timeout", "{r:?}");

    // (c) the internet works. Resolve on the host (as apt would) so the probe's only traffic
    // is to the mirror itself.
    let mirror = ("deb.debian.org", 80)
        .to_socket_addrs()
        .unwrap()
        .find(|a| a.is_ipv4())
        .unwrap()
        .ip();
    let code = a.sh(&format!(
        "curl -s -o /dev/null -w %{{http_code}} --max-time 20 \
         --resolve deb.debian.org:80:{mirror} http://deb.debian.org/debian/dists/bookworm/Release"
    ));
    assert_eq!(code, "200");

    // Spoofing: the same request with sandbox b's address as source is dropped by the
    // reverse-path rule (curl reports 000 for "no response").
    a.sh(&format!("ip addr add {}/32 dev eth0", lb.sandbox_ip));
    let out = sh(&format!(
        "nsenter -t {} -n curl -s -o /dev/null -w %{{http_code}} --max-time 2 \
         --interface {} --resolve deb.debian.org:80:{mirror} \
         http://deb.debian.org/debian/dists/bookworm/Release",
        a.pid(),
        lb.sandbox_ip
    ));
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "000");
    let pre = sh_ok("nft list chain inet hutch prerouting");
    assert!(
        pre.contains("counter packets ") && !pre.contains("counter packets 0 "),
        "spoof rule never fired: {pre}"
    );

    release(&la.host_if).unwrap();
    release(&lb.host_if).unwrap();
    remove_host_rules().unwrap();
    assert!(!sh("nft list table inet hutch").status.success());
    remove_host_rules().unwrap(); // idempotent
}

/// Not an assertion on speed (machines vary); prints the numbers with `--nocapture`.
#[test]
fn attach_internet_timing() {
    let _lock = host_lock();
    let cfg = NetConfig::default();
    let sb = Sandbox::new();
    let mut attach = Vec::new();
    let mut rel = Vec::new();
    let mut lo = Vec::new();
    for _ in 0..21 {
        let t = Instant::now();
        let lease = attach_internet(&cfg, sb.pid(), 9500).unwrap();
        attach.push(t.elapsed());
        let _g = LinkGuard(lease.host_if.clone());
        let t = Instant::now();
        release(&lease.host_if).unwrap();
        rel.push(t.elapsed());
        let t = Instant::now();
        loopback_only(sb.pid()).unwrap();
        lo.push(t.elapsed());
    }
    let med = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (ma, mr, ml) = (med(&mut attach), med(&mut rel), med(&mut lo));
    println!(
        "attach_internet: median {ma:?} (min {:?}, max {:?}); release: median {mr:?}; \
         loopback_only: median {ml:?}",
        attach[0],
        attach[attach.len() - 1]
    );
}
