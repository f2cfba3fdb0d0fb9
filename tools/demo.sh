#!/usr/bin/env bash
# ipcpp's main job for now: a live cluster driven by ipcpp's protocol library.
#
# Until ipcpp's own controller and engines land, the cluster is the reference one (Debian's
# ipyparallel: /usr/bin/ipcontroller and two /usr/bin/ipengine), started in an ipcpp-made
# profile. hub_query, a C++ program built on ipcpp's proto/ library alone, reads the
# profile's connection file, waits for the engines, runs code on each through the direct
# queue and prints the hub's queue status. Everything it started is stopped on exit.
#
#   tools/demo.sh [BUILD_DIR]      (default build/release)
set -euo pipefail

build=${1:-build/release}
bin="$build/bin"
profile=${IPCPP_DEMO_PROFILE:-ipcpp-demo}
for tool in ipcpp-profile hub_query; do
  [ -x "$bin/$tool" ] || { echo "demo.sh: $bin/$tool is missing: build first" >&2; exit 1; }
done

"$bin/ipcpp-profile" create --profile "$profile" >/dev/null
dir=$("$bin/ipcpp-profile" locate --profile "$profile")
echo "profile: $dir"

pids=()
cleanup() {
  [ ${#pids[@]} -eq 0 ] && return
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap cleanup EXIT

/usr/bin/ipcontroller --profile-dir="$dir" --ip=127.0.0.1 --ping=500 --log-level=WARN \
  >"$dir/log/demo-ipcontroller.log" 2>&1 &
pids+=($!)
for i in 1 2; do
  /usr/bin/ipengine --profile-dir="$dir" >"$dir/log/demo-ipengine-$i.log" 2>&1 &
  pids+=($!)
done

"$bin/hub_query" --profile-dir "$dir" --engines 2 --timeout 60 \
  --execute 'import os, socket; print("pid", os.getpid(), "on", socket.gethostname()); 6 * 7'
