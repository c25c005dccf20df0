#!/usr/bin/env bash
# Fails if sandboxes left anything on this machine: mounts, cgroups, veths, processes.
set -uo pipefail
fail=0
mounts=$(grep -c 'hutch' /proc/self/mountinfo || true)
cgroups=$(find /sys/fs/cgroup -maxdepth 6 -type d -name 'hutch-*' 2>/dev/null | wc -l)
veths=$(ip -o link 2>/dev/null | grep -c ' hutch[0-9]' || true)
# Live processes only (zombies of earlier runs, adopted by a PID 1 that never reaps, are not ours
# to clean and hold no resources).
procs=$(ps -eo stat=,args= | awk '$1 !~ /^Z/ && /hutch(:\[| __spawner| serve)/' | grep -v awk | wc -l)
echo "mounts=$mounts cgroups=$cgroups veths=$veths processes=$procs"
if [ "$mounts" -ne 0 ] || [ "$cgroups" -ne 0 ] || [ "$veths" -ne 0 ] || [ "$procs" -ne 0 ]; then
  grep hutch /proc/self/mountinfo || true
  find /sys/fs/cgroup -maxdepth 6 -type d -name 'hutch-*' 2>/dev/null || true
  ip -o link | grep ' hutch[0-9]' || true
  ps -eo pid,stat,args | grep -E 'hutch(:\[| __spawner| serve)' | grep -v grep || true
  echo "leak check FAILED" >&2
  fail=1
fi
exit $fail
