//! Lifecycle tests on the native backend: pause, resume, stop, start, kill, recovery, bad input.

// Integration tests: a failed unwrap is a failed test, reported with its panic message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::TestEnv;
use hutch_runtime::{Backend, RuntimeError, RuntimeStatus};

fn read_counter(env: &TestEnv, id: &hutch_types::SandboxId) -> u64 {
    // The sandbox's own layer is readable from the host: no agent call needed while frozen.
    let path = env.sandbox_dir(id).join("upper/tmp/counter");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Pause freezes every process (the counter stops, no CPU is used); resume continues it.
#[tokio::test(flavor = "multi_thread")]
async fn pause_stops_a_counter_and_resume_continues_it() {
    let env = TestEnv::new();
    let sb = env.sandbox().await;
    sb.sh("nohup bash -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.01; done' >/dev/null 2>&1 &")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(read_counter(&env, &sb.id) > 0);

    env.backend.pause(&sb.id).unwrap();
    assert_eq!(env.backend.status(&sb.id).unwrap(), RuntimeStatus::Paused);
    let frozen = read_counter(&env, &sb.id);
    let cpu_before = env.backend.usage(&sb.id).unwrap().cpu_usec;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        read_counter(&env, &sb.id),
        frozen,
        "counter advanced while paused"
    );
    let cpu_after = env.backend.usage(&sb.id).unwrap().cpu_usec;
    assert_eq!(cpu_before, cpu_after, "CPU used while paused");
    assert!(matches!(
        env.backend.pause(&sb.id),
        Err(RuntimeError::WrongState { .. })
    ));

    env.backend.resume(&sb.id).unwrap();
    assert_eq!(env.backend.status(&sb.id).unwrap(), RuntimeStatus::Running);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        read_counter(&env, &sb.id) > frozen,
        "counter did not continue"
    );
    assert_eq!(sb.sh("echo back").await.stdout.trim(), "back");
    sb.kill_and_check();
}

/// Stop ends every process but keeps the files; start brings the sandbox back with them.
#[tokio::test(flavor = "multi_thread")]
async fn stop_and_start_keep_files() {
    let env = TestEnv::new();
    let sb = env.sandbox().await;
    sb.sh("echo kept > /workspace/keep.txt; nohup sleep 1000 >/dev/null 2>&1 &")
        .await;
    let before = sb.traces();
    env.backend.stop(&sb.id, Duration::from_secs(2)).unwrap();
    assert_eq!(env.backend.status(&sb.id).unwrap(), RuntimeStatus::Stopped);
    assert!(!std::path::Path::new(&format!("/proc/{}", before.pid)).exists());
    for cg in &before.cgroups {
        assert!(!cg.exists(), "cgroup {} left after stop", cg.display());
    }
    assert!(matches!(
        env.backend.pause(&sb.id),
        Err(RuntimeError::WrongState { .. })
    ));

    env.backend.start(&sb.id).unwrap();
    sb.agent.health(Duration::from_secs(10)).await.unwrap();
    assert_ne!(sb.pid1(), before.pid);
    let out = sb
        .sh("cat /workspace/keep.txt; pgrep -c sleep || true")
        .await;
    assert_eq!(out.stdout.lines().next(), Some("kept"));
    assert_eq!(
        out.stdout.lines().nth(1),
        Some("0"),
        "processes survived stop"
    );
    sb.kill_and_check();
}

/// Kill removes everything, including the veth pair of a sandbox with internet access.
#[tokio::test(flavor = "multi_thread")]
async fn kill_leaves_no_trace() {
    let env = TestEnv::new();
    for internet in [false, true] {
        let sb = env.sandbox_with(|s| s.internet = internet).await;
        sb.sh(
            "nohup sleep 1000 >/dev/null 2>&1 & mkdir -p /workspace/d && echo x > /workspace/d/f",
        )
        .await;
        if internet {
            assert!(sb.traces().host_if.is_some());
        }
        sb.kill_and_check();
    }
    // The instance's parent cgroups go with the last sandbox.
    let layout = hutch_runtime::cgroup::CgroupLayout::detect().unwrap();
    for h in layout.hierarchies() {
        let parent = h.own.join(format!("hutch-{}", env.instance));
        assert!(!parent.exists(), "{} left", parent.display());
    }
}

/// A sandbox that was never created, or was already killed, is `NotFound`.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_sandboxes_are_not_found() {
    let env = TestEnv::new();
    let id = hutch_types::SandboxId::parse("nope").unwrap();
    assert!(matches!(
        env.backend.kill(&id),
        Err(RuntimeError::NotFound(_))
    ));
    assert!(matches!(
        env.backend.status(&id),
        Err(RuntimeError::NotFound(_))
    ));
    assert!(matches!(
        env.backend.start(&id),
        Err(RuntimeError::NotFound(_))
    ));
}

/// Bad input fails with a clear error and leaves nothing behind.
#[tokio::test(flavor = "multi_thread")]
async fn bad_input_leaves_nothing_behind() {
    let env = TestEnv::new();
    let mut spec = env.spec();
    spec.template.layers = vec!["/nonexistent/layer".into()];
    let err = env.backend.create(&spec).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/layer"), "{err}");
    assert!(!env.sandbox_dir(&spec.id).exists());

    // A layer path that would smuggle overlay options.
    let mut spec = env.spec();
    let evil = env.dir.path().join("a,upperdir=x");
    std::fs::create_dir_all(&evil).unwrap();
    spec.template.layers = vec![evil];
    let err = env.backend.create(&spec).unwrap_err();
    assert!(err.to_string().contains("must not contain"), "{err}");
    assert!(!env.sandbox_dir(&spec.id).exists());
    for cg in env.cgroup_dirs(&spec.id) {
        assert!(!cg.exists());
    }

    // A duplicate id is refused and does not disturb the existing sandbox.
    let sb = env.sandbox().await;
    let mut dup = env.spec();
    dup.id = sb.id.clone();
    assert!(matches!(
        env.backend.create(&dup),
        Err(RuntimeError::AlreadyExists(_))
    ));
    assert_eq!(sb.sh("echo fine").await.stdout.trim(), "fine");
    sb.kill_and_check();
}

/// A second backend over the same data directory (a restarted server) finds running sandboxes
/// and can drive them.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_backend_finds_running_sandboxes() {
    let env = TestEnv::new();
    let sb = env.sandbox().await;
    sb.sh("echo persisted > /workspace/p.txt").await;
    let again = hutch_runtime::NativeBackend::new(env.backend.config().clone()).unwrap();
    assert_eq!(again.list().unwrap(), vec![sb.id.clone()]);
    assert_eq!(again.status(&sb.id).unwrap(), RuntimeStatus::Running);
    assert_eq!(
        sb.sh("cat /workspace/p.txt").await.stdout.trim(),
        "persisted"
    );
    again.pause(&sb.id).unwrap();
    assert_eq!(env.backend.status(&sb.id).unwrap(), RuntimeStatus::Paused);
    again.resume(&sb.id).unwrap();
    sb.kill_and_check();
}

/// The cgroups a sandbox is in are recorded at start and agree with what the kernel says for its
/// PID 1; a record without them (written by an older hutch) is still killed without leaks, from
/// PID 1's own `/proc/PID/cgroup`. Paths must never be recomputed from the caller's own cgroup:
/// a restarted server or `hutch purge` may sit in another v1 memory group.
#[tokio::test(flavor = "multi_thread")]
async fn cgroups_are_found_from_the_sandbox_not_the_caller() {
    let env = TestEnv::new();
    let sb = env.sandbox().await;
    let st = env.state(&sb.id);
    let recorded: Vec<String> = st["process"]["cgroup_dirs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    assert!(!recorded.is_empty());
    let proc_cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", sb.pid1())).unwrap();
    for dir in &recorded {
        let tail = dir.rsplit('/').next().unwrap();
        assert!(proc_cgroup.contains(tail), "{dir} not in {proc_cgroup}");
    }

    // An older record without the directories.
    let path = env.sandbox_dir(&sb.id).join("state.json");
    let mut st = st;
    st["process"].as_object_mut().unwrap().remove("cgroup_dirs");
    std::fs::write(&path, serde_json::to_vec(&st).unwrap()).unwrap();
    let mut traces = sb.traces();
    traces.cgroups = recorded.iter().map(std::path::PathBuf::from).collect();
    env.backend.kill(&sb.id).unwrap();
    common::assert_no_leaks(&traces);
}
