#!/usr/bin/env bash
# ipcpp's main job for now: ipcpp-controller and four ipcpp-engines running the classic
# tutorials' C++ functions.
#
# Until ipcpp's C++ client and ipcpp-cluster land (then: ipcpp-cluster start -n 4, the
# walkthrough, ipcpp-cluster stop), the cluster is started by hand in an ipcpp-made profile:
# ipcpp-controller and four ipcpp-engines loaded with the example task library
# (examples/tasks). Two clients drive it:
#  - hub_query, a C++ program built on ipcpp's proto/ library alone: it waits for the
#    engines, runs code on each through the direct queue and prints the hub's queue status;
#  - the real ipyparallel.Client (Python): shell commands on every engine, the area under a
#    curve in four slices, and the largest departure delay of each month of the flights data.
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
tasks="$build/lib/libipcpp_example_tasks.so"
for i in 1 2 3 4; do
  "$bin/ipcpp-engine" --profile-dir "$dir" --load "$tasks" \
    2>"$dir/log/demo-ipcpp-engine-$i.log" &
  pids+=($!)
done

"$bin/hub_query" --profile-dir "$dir" --engines 4 --timeout 60 \
  --execute 'print("engine", getpid(), "on", hostname(), "with", ncpus(), "cores"); minus(5, 6)'

echo "Python client (ipyparallel), through ipcpp-controller, on the C++ engines:"
flights="$(cd "$(dirname "$0")/.." && pwd)/examples/data/flights"
/usr/bin/python3 - "$dir" "$flights" <<'PY'
import sys, time
import ipyparallel as ipp

profile_dir, flights = sys.argv[1], sys.argv[2]
rc = ipp.Client(profile_dir=profile_dir)
rc.wait_for_engines(4, timeout=60)
ids = rc.ids

def value(ar):
    """The execute_result of one engine's execute, as JSON."""
    ar.get(60)
    ar.wait_for_output(60)
    return ar.get().data["application/json"]

ar = rc[:].execute("!uname -sr", block=True)
ar.wait_for_output(60)
print(f"  !uname -sr on engines {ids}: {sorted(set(s.strip() for s in ar.stdout))}")

# The area under 0.7x^3 - 2x^2 + 4 on [0, 3], one slice per engine, then a reduce.
t0 = time.time()
edges = [3 * i / len(ids) for i in range(len(ids) + 1)]
slices = [rc[e].execute(f"auc_slice({edges[i]}, {edges[i + 1]}, 2500000)", block=False)
          for i, e in enumerate(ids)]
area = sum(value(ar) for ar in slices)
print(f"  area under 0.7x^3 - 2x^2 + 4 on [0, 3]: {area:.3f} (exact 8.175), "
      f"{len(ids)} slices in {time.time() - t0:.2f} s")
assert abs(area - 8.175) < 1e-3, "wrong area"

# The largest departure delay of each month, months spread over the engines.
t0 = time.time()
months = [rc[ids[m % len(ids)]].execute(f'maxdelay("{flights}/2023-{m + 1:02d}.csv")',
                                          block=False) for m in range(12)]
rows = [value(ar) for ar in months]
worst = max(rows, key=lambda r: r["delay"])
print(f"  largest departure delay of 12 months of flights: {worst['delay']} min, "
      f"{worst['origin']} -> {worst['dest']} in {worst['month']} ({time.time() - t0:.2f} s)")
rc.close()
PY
