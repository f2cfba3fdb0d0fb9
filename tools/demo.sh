#!/usr/bin/env bash
# ipcpp's main job for now: ipcpp-controller driving real Python engines.
#
# Until ipcpp's own engines and C++ client land (then: ipcpp-cluster start -n 4, the
# walkthrough, ipcpp-cluster stop), the cluster is ipcpp-controller with four Python engines
# (Debian's /usr/bin/ipengine) in an ipcpp-made profile. Two clients drive it:
#  - hub_query, a C++ program built on ipcpp's proto/ library alone: it waits for the
#    engines, runs code on each through the direct queue and prints the hub's queue status;
#  - the real ipyparallel.Client: a load-balanced map of 1,000 items.
# Everything it started is stopped on exit.
#
#   tools/demo.sh [BUILD_DIR]      (default build/release)
set -euo pipefail

build=${1:-build/release}
bin="$build/bin"
profile=${IPCPP_DEMO_PROFILE:-ipcpp-demo}
for tool in ipcpp-profile ipcpp-controller hub_query; do
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

rm -f "$dir/security/ipcontroller-client.json" "$dir/security/ipcontroller-engine.json"
"$bin/ipcpp-controller" --profile-dir "$dir" --ping 500 --log-level warning \
  2>"$dir/log/demo-ipcpp-controller.log" &
pids+=($!)
for _ in $(seq 50); do  # the engines read the connection file the controller writes
  [ -s "$dir/security/ipcontroller-engine.json" ] && break
  sleep 0.1
done
for i in 1 2 3 4; do
  /usr/bin/ipengine --profile-dir="$dir" >"$dir/log/demo-ipengine-$i.log" 2>&1 &
  pids+=($!)
done

"$bin/hub_query" --profile-dir "$dir" --engines 4 --timeout 60 \
  --execute 'import os, socket; print("pid", os.getpid(), "on", socket.gethostname()); 6 * 7'

echo "Python client, load-balanced through ipcpp-controller:"
/usr/bin/python3 - "$dir" <<'PY'
import sys, time
import ipyparallel as ipp
rc = ipp.Client(profile_dir=sys.argv[1])
rc.wait_for_engines(4, timeout=60)
view = rc.load_balanced_view()
t0 = time.time()
squares = view.map_sync(lambda x: x * x, range(1000))
elapsed = time.time() - t0
assert squares == [x * x for x in range(1000)], "wrong results"
print(f"  map of 1000 squares over engines {rc.ids}: sum {sum(squares)} in {elapsed:.2f} s")
rc.close()
PY
