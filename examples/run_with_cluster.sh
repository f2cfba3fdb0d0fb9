#!/usr/bin/env bash
# Runs an example client against a cluster of its own: a controller and N ipcpp-engines with
# the example task library, in a throwaway IPYTHONDIR under the build directory. Stops what it
# started whatever happens, and exits with the program's status. The ctests example.* use it.
#
#   examples/run_with_cluster.sh BUILD_DIR N -- PROGRAM ARGS...
#
# PROGRAM runs as `PROGRAM --profile-dir DIR --engines N ARGS...`, under a time limit of
# $IPCPP_EXAMPLE_TIME_LIMIT seconds (default 100; keep it below the ctest TIMEOUT so that
# this script, not ctest, stops a hung program and can clean up).
#
# The cluster is started with `ipcpp-cluster start --daemonize` and stopped with
# `ipcpp-cluster stop`; with IPCPP_EXAMPLE_DIRECT=1 (or when BUILD_DIR has no ipcpp-cluster)
# the script starts ipcpp-controller and the engines itself and stops exactly those PIDs.
# The directory is removed when the program succeeds, and kept (with the logs, whose ends are
# printed) when it fails.
set -euo pipefail

usage() {
  echo "usage: $0 BUILD_DIR N -- PROGRAM ARGS..." >&2
  exit 2
}
[ $# -ge 4 ] || usage
build=$(cd "$1" && pwd)
engines=$2
[ "$3" = "--" ] || usage
shift 3
program=$1
shift
[[ "$engines" =~ ^[1-9][0-9]*$ ]] || usage

bin="$build/bin"
tasks="$build/lib/libipcpp_example_tasks.so"
for file in "$bin/ipcpp-engine" "$bin/ipcpp-controller" "$bin/ipcpp-profile" "$tasks"; do
  [ -e "$file" ] || { echo "run_with_cluster: $file is missing: build it first" >&2; exit 1; }
done
name=$(basename "$program")
mkdir -p "$build/example-clusters"
base=$(mktemp -d "$build/example-clusters/$name.XXXXXX")
export IPYTHONDIR="$base"
dir="$base/profile_example"
limit=${IPCPP_EXAMPLE_TIME_LIMIT:-100}

mode=cluster
if [ "${IPCPP_EXAMPLE_DIRECT:-0}" = 1 ] || [ ! -x "$bin/ipcpp-cluster" ]; then
  mode=direct
fi

pids=()          # direct mode: the controller and the engines
cluster_up=0     # cluster mode: ipcpp-cluster start was run
program_pid=""   # the program (under timeout), while it runs
stop_cluster() {
  if [ -n "$program_pid" ]; then  # interrupted while the program runs: stop it first
    kill "$program_pid" 2>/dev/null || true
    wait "$program_pid" 2>/dev/null || true
    program_pid=""
  fi
  if [ "$mode" = cluster ]; then
    if [ "$cluster_up" = 1 ]; then
      cluster_up=0
      "$bin/ipcpp-cluster" stop --profile-dir "$dir" >"$dir/log/stop.out" 2>&1 || true
    fi
  elif [ ${#pids[@]} -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 50); do  # up to 5 s for them to go, then SIGKILL
      alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    pids=()
  fi
}
trap stop_cluster EXIT
trap 'echo "run_with_cluster: interrupted, stopping" >&2; exit 130' INT
trap 'echo "run_with_cluster: terminated, stopping" >&2; exit 143' TERM

# Where to look when something failed: the end of every log of the cluster.
show_logs() {
  for log in "$dir"/log/*; do
    [ -s "$log" ] || continue
    echo "---- $log (last lines)" >&2
    tail -n 15 "$log" >&2
  done
  echo "run_with_cluster: kept $base" >&2
}

if [ "$mode" = cluster ]; then
  cluster_up=1
  if ! "$bin/ipcpp-cluster" start -n "$engines" --daemonize --profile-dir "$dir" \
       --load "$tasks" --timeout 30 --controller-arg=--ping=200 >"$base/start.out" 2>&1; then
    cat "$base/start.out" >&2
    echo "run_with_cluster: ipcpp-cluster start failed" >&2
    stop_cluster
    show_logs
    exit 1
  fi
else
  "$bin/ipcpp-profile" create --profile-dir "$dir" >/dev/null
  "$bin/ipcpp-controller" --profile-dir "$dir" --ping 200 --log-level warning \
    2>"$dir/log/controller.log" &
  pids+=($!)
  for _ in $(seq 100); do  # the engines read the connection file the controller writes
    [ -s "$dir/security/ipcontroller-engine.json" ] && break
    sleep 0.1
  done
  for i in $(seq "$engines"); do
    "$bin/ipcpp-engine" --profile-dir "$dir" --load "$tasks" --timeout 30 \
      2>"$dir/log/engine-$i.log" &
    pids+=($!)
  done
fi

# In the background, so that a signal to this script is handled at once (bash runs traps only
# between commands, but `wait` is interrupted).
timeout --kill-after=5 "$limit" "$program" --profile-dir "$dir" --engines "$engines" "$@" &
program_pid=$!
set +e
wait "$program_pid"
status=$?
set -e
program_pid=""
[ "$status" = 124 ] && echo "run_with_cluster: $name did not finish in $limit s" >&2

stop_cluster
if [ "$status" = 0 ]; then
  rm -rf "$base"
else
  show_logs
fi
exit "$status"
