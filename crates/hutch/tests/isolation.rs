//! Security tests: what a sandbox must not see, reach or do. Every test runs real sandboxes and
//! attempts the escape from inside, as sandbox root.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::net::{TcpListener, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::TestEnv;

/// Only the sandbox's own processes are visible: its PID 1, the agent and what the test runs.
#[tokio::test(flavor = "multi_thread")]
async fn sees_only_its_own_processes() {
    let env = TestEnv::new();
    let sb = env.sandbox().await;
    let out = sb.sh("ps -eo pid=,comm= ").await;
    let procs: Vec<(u32, String)> = out
        .stdout
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.to_string()))
        })
        .collect();
    assert!(procs.len() <= 6, "too many processes visible: {procs:?}");
    assert!(procs.iter().any(|(pid, _)| *pid == 1), "{procs:?}");
    let host_pid = std::process::id();
    for (pid, comm) in &procs {
        assert!(*pid < 100, "host-like pid {pid} ({comm}) visible");
        assert_ne!(*pid, host_pid);
        assert!(
            !comm.contains("cargo") && !comm.contains("process_api"),
            "{comm}"
        );
    }
    sb.kill_and_check();
}

/// Host files outside the template are not there: not a temp file the test writes, not /work,
/// not host home directories, not host secrets.
#[tokio::test(flavor = "multi_thread")]
async fn cannot_read_host_files() {
    let env = TestEnv::new();
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("secret.txt");
    std::fs::write(&secret, "host-secret-7c1e").unwrap();
    let sb = env.sandbox().await;
    let out = sb
        .sh(&format!(
            "cat {} 2>&1; echo; ls -A /work /root /var/lib /run 2>&1; ls /home; \
             cat /etc/shadow 2>&1; ls /etc/ssh 2>&1; \
             grep -rs host-secret-7c1e /tmp /var /home /root /workspace /etc && echo FOUND",
            secret.display()
        ))
        .await;
    assert!(!out.stdout.contains("host-secret-7c1e"), "{}", out.stdout);
    assert!(!out.stdout.contains("FOUND"), "{}", out.stdout);
    assert!(out.stdout.contains("No such file"), "{}", out.stdout);
    let home: Vec<&str> = out.stdout.lines().filter(|l| *l == "user").collect();
    assert_eq!(home, vec!["user"], "{}", out.stdout);
    assert!(
        !out.stdout.lines().any(|l| l.starts_with("root:")),
        "shadow readable: {}",
        out.stdout
    );
    sb.kill_and_check();
}

/// The template is read-only: /usr refuses writes, and a write to /etc lands in the sandbox's
/// own layer — neither the template nor another sandbox sees it.
#[tokio::test(flavor = "multi_thread")]
async fn cannot_write_the_template() {
    let env = TestEnv::new();
    let a = env.sandbox().await;
    let out = a
        .sh(
            "touch /usr/bin/hutch-x 2>&1; echo evil >> /etc/hosts && echo appended; \
             rm -f /etc/passwd && echo removed",
        )
        .await;
    assert!(
        out.stdout.contains("Read-only file system"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("appended") && out.stdout.contains("removed"));
    assert!(!std::path::Path::new("/usr/bin/hutch-x").exists());
    let template_etc = env.template.layers[0].join("etc");
    let hosts = std::fs::read_to_string(template_etc.join("hosts")).unwrap();
    assert!(!hosts.contains("evil"));
    assert!(template_etc.join("passwd").exists());
    let b = env.sandbox().await;
    let out = b
        .sh("cat /etc/hosts; test -f /etc/passwd && echo passwd-ok")
        .await;
    assert!(!out.stdout.contains("evil") && out.stdout.contains("passwd-ok"));
    a.kill_and_check();
    b.kill_and_check();
}

/// A TCP listener on the host; counts connections that reach it.
struct HostServer {
    port: u16,
    hits: Arc<AtomicUsize>,
}

fn host_server(addr: &str) -> HostServer {
    let l = TcpListener::bind(addr).unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            h.fetch_add(1, Ordering::SeqCst);
            let _ = s.read(&mut [0u8; 16]);
        }
    });
    HostServer { port, hits }
}

fn host_eth0_ip() -> String {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .expect("a global IPv4 address")
        .to_string()
}

const CONNECT_PY: &str = r#"
import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    s = socket.socket(); s.settimeout(2)
    try:
        s.connect((host, int(port))); print(target, "CONNECTED")
    except OSError as e:
        print(target, "blocked", type(e).__name__)
"#;

/// Neither sandbox flavour reaches the host's own services: not 127.0.0.1 (its own loopback),
/// not the host's address, not its gateway. With internet on, the package mirror is reachable.
#[tokio::test(flavor = "multi_thread")]
async fn cannot_reach_host_services() {
    let env = TestEnv::new();
    let lo = host_server("127.0.0.1:0");
    let any = host_server("0.0.0.0:0");
    let eth0 = host_eth0_ip();

    let offline = env.sandbox().await;
    let online = env.sandbox_with(|s| s.internet = true).await;
    let gateway = env.state(&online.id)["process"]["lease"]["host_ip"]
        .as_str()
        .unwrap()
        .to_string();
    let targets = format!(
        "127.0.0.1:{} {eth0}:{} {gateway}:{} 127.0.0.1:{}",
        lo.port, any.port, any.port, any.port
    );
    for sb in [&offline, &online] {
        let out = sb
            .sh(&format!(
                "python3 -c '{}' {targets}",
                CONNECT_PY.replace('\'', "\\'")
            ))
            .await;
        let script =
            format!("cat > /tmp/c.py <<'EOF'\n{CONNECT_PY}\nEOF\npython3 /tmp/c.py {targets}");
        let out2 = sb.sh(&script).await;
        let text = format!("{}{}", out.stdout, out2.stdout);
        assert!(!text.contains("CONNECTED"), "reached the host: {text}");
        assert_eq!(out2.stdout.matches("blocked").count(), 4, "{}", out2.stdout);
    }
    assert_eq!(lo.hits.load(Ordering::SeqCst), 0);
    assert_eq!(any.hits.load(Ordering::SeqCst), 0);

    // The outside world is reachable with internet on (the machine's package mirror, resolved
    // on the host so the sandbox needs no DNS), and not without it.
    let mirror = ("deb.debian.org", 80)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.find(|a| a.is_ipv4()));
    if let Some(mirror) = mirror {
        let fetch = format!(
            "python3 - <<'EOF'\nimport http.client\ntry:\n    c = http.client.HTTPConnection('{}', 80, timeout=10)\n    c.request('HEAD', '/debian/dists/bookworm/Release', headers={{'Host': 'deb.debian.org'}})\n    print('status', c.getresponse().status)\nexcept OSError as e:\n    print('failed', type(e).__name__)\nEOF",
            mirror.ip()
        );
        let on = online.sh(&fetch).await;
        assert!(
            on.stdout.contains("status 200"),
            "internet sandbox: {}{}",
            on.stdout,
            on.stderr
        );
        let off = offline.sh(&fetch).await;
        assert!(
            off.stdout.contains("failed"),
            "offline sandbox: {}",
            off.stdout
        );
    }
    offline.kill_and_check();
    online.kill_and_check();
}

/// A memory hog dies at the limit (OOM kill), the host and the sandbox's agent are unharmed.
#[tokio::test(flavor = "multi_thread")]
async fn memory_hog_is_oom_killed_at_the_limit() {
    let env = TestEnv::new();
    let sb = env.sandbox_with(|s| s.resources.memory_mb = 128).await;
    let out = sb
        .py("blocks = []\nwhile True:\n    blocks.append(bytearray(16 * 1024 * 1024))")
        .await;
    assert_eq!(
        out.exit_code, 137,
        "expected SIGKILL by the OOM killer: {out:?}"
    );
    let usage = hutch_runtime::Backend::usage(&env.backend, &sb.id).unwrap();
    assert!(usage.oom_kills >= 1, "{usage:?}");
    assert!(usage.memory_limit_bytes == 128 * 1024 * 1024);
    // Still usable.
    assert_eq!(sb.sh("echo alive").await.stdout.trim(), "alive");
    sb.kill_and_check();
}

/// A fork bomb stops at the pids limit, and the sandbox survives it.
#[tokio::test(flavor = "multi_thread")]
async fn fork_bomb_stops_at_the_pids_limit() {
    let env = TestEnv::new();
    let sb = env.sandbox_with(|s| s.resources.pids = 64).await;
    let out = sb
        .py(
            "import os, time, errno\npids = []\ntry:\n    while True:\n        pid = os.fork()\n        if pid == 0:\n            time.sleep(60); os._exit(0)\n        pids.append(pid)\nexcept OSError as e:\n    print('stopped', len(pids), errno.errorcode[e.errno])\nfor p in pids:\n    os.kill(p, 9)\n",
        )
        .await;
    assert!(
        out.stdout.contains("stopped") && out.stdout.contains("EAGAIN"),
        "{out:?}"
    );
    let n: usize = out
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(n < 64, "forked {n} times under a limit of 64");
    // The classic bomb, cut by a command timeout; the sandbox is still usable afterwards.
    let _ = sb
        .agent
        .run(&["bash", "-c", ":(){ :|:& };:"], Duration::from_secs(3))
        .await;
    let mut alive = String::new();
    for _ in 0..50 {
        if let Ok(o) = sb
            .agent
            .run(&["echo", "alive"], Duration::from_secs(5))
            .await
        {
            alive = o.stdout;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(alive.trim(), "alive");
    sb.kill_and_check();
}

/// Privileged operations fail for sandbox root: mounts, namespaces, ptrace of PID 1 and the
/// agent, kernel tunables, device nodes, signalling PID 1.
#[tokio::test(flavor = "multi_thread")]
async fn privileged_operations_fail() {
    let env = TestEnv::new();
    let sb = env.sandbox().await;
    let checks = [
        ("mount", "mount -t tmpfs none /mnt"),
        ("remount", "mount -o remount,rw /usr"),
        ("unshare user", "unshare -U true"),
        ("unshare mount", "unshare -m true"),
        ("unshare net", "unshare -n true"),
        ("sysctl", "echo 1 > /proc/sys/vm/drop_caches"),
        ("sysctl net", "echo 0 > /proc/sys/net/ipv4/ip_forward"),
        ("mknod", "mknod /tmp/mem c 1 1"),
        ("kill pid 1", "kill -TERM 1"),
        ("kill -9 pid 1", "kill -KILL 1"),
        ("hostname", "hostname evil"),
        ("ip link", "ip link add x type dummy"),
    ];
    for (name, cmd) in checks {
        let out = sb.sh(&format!("{cmd} 2>&1; echo rc=$?")).await;
        assert!(
            !out.stdout.trim_end().ends_with("rc=0"),
            "{name} succeeded: {}",
            out.stdout
        );
    }
    let ptrace = sb
        .py(
            "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nfor pid in (1, 2):\n    r = libc.ptrace(16, pid, 0, 0)\n    print(pid, r, os.strerror(ctypes.get_errno()))\n",
        )
        .await;
    assert_eq!(
        ptrace.stdout.matches(" -1 ").count(),
        2,
        "{}",
        ptrace.stdout
    );
    let status = sb
        .sh("grep -E 'Seccomp:|NoNewPrivs:|CapEff:' /proc/self/status")
        .await;
    assert!(status.stdout.contains("Seccomp:\t2"), "{}", status.stdout);
    assert!(status.stdout.contains("NoNewPrivs:\t1"));
    // PID 1 survived everything above.
    assert_eq!(sb.sh("echo ok").await.stdout.trim(), "ok");
    sb.kill_and_check();
}
