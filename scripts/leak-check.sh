#!/usr/bin/env bash
# Fails if sandboxes left anything on this machine: mounts, cgroups, veths, processes.
# Retries for a few seconds, because the kernel tears network namespaces down asynchronously.
set -uo pipefail

count() {
  mounts=$(grep -c 'hutch' /proc/self/mountinfo || true)
  cgroups=$(find /sys/fs/cgroup -maxdepth 6 -type d -name 'hutch-*' 2>/dev/null | wc -l)
  veths=$(ip -o link 2>/dev/null | grep -c ' hutch[0-9]' || true)
  # Live processes only: zombies of earlier runs, adopted by a PID 1 that never reaps, hold no
  # resources and are not ours to clean.
  procs=$(ps -eo stat=,args= | awk '$1 !~ /^Z/ && /hutch(:\[| __spawner| serve)/' | grep -vc awk || true)
}

for _ in $(seq 1 25); do
  count
  if [ "$mounts" -eq 0 ] && [ "$cgroups" -eq 0 ] && [ "$veths" -eq 0 ] && [ "$procs" -eq 0 ]; then
    echo "leak check: nothing left (mounts=0 cgroups=0 veths=0 processes=0)"
    exit 0
  fi
  sleep 0.2
done
echo "mounts=$mounts cgroups=$cgroups veths=$veths processes=$procs"
grep hutch /proc/self/mountinfo || true
find /sys/fs/cgroup -maxdepth 6 -type d -name 'hutch-*' 2>/dev/null || true
ip -o link | grep ' hutch[0-9]' || true
ps -eo pid,stat,args | grep -E 'hutch(:\[| __spawner| serve)' | grep -v grep || true
echo "leak check FAILED" >&2
exit 1
