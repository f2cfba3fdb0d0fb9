#!/usr/bin/python3
"""Controller benchmark: ipcpp-controller against ipyparallel 7.1's ipcontroller.

What it measures
----------------
The same workloads against each controller, each time with a fresh controller and fresh
engines for every (controller, engine count):

1. Load-balanced throughput: ``lview.map_async(noop, range(TASKS))`` from the Python client
   (chunksize 1, so TASKS separate tasks), timed from the first submission until every
   result is back. Tasks per second, median of 3 timed runs after a warm-up (the min and max
   of the 3 are printed too). The client's result caches are purged between runs.
2. Direct-view round trip: ``rc[first id].apply_sync(noop)`` ROUNDTRIPS times after a
   warm-up of 50: median and p99 (nearest rank) latency in ms.

Both controllers run with their defaults (leastload scheme, hwm 1, in-memory task store, 1 s
heartbeat) except for the task store's record limit, which is raised for both (by default to
hold every task of the run; ``--record-limit 0`` keeps the default 1024). ipcontroller's
DictDB culls the oldest records even while their tasks are in flight, so with more than 1024
tasks outstanding it logs a "culled for size" error with a traceback for each later update of
a culled task (about 58,000 log lines in one 2-engine run): work that is not the
controller's normal job, and a log that hides real errors. ipcpp-controller culls only
finished records. The table's ratio is ipcpp/ipcontroller for throughput and
ipcontroller/ipcpp for latency, so a ratio above 1 always means ipcpp-controller is better.

How to run
----------
With the system Python, which has ipyparallel 7.1 (not the ``python3`` first on PATH)::

    /usr/bin/python3 bench/controller_bench.py
    /usr/bin/python3 bench/controller_bench.py --engines 2 --tasks 1000 --roundtrips 200
    /usr/bin/python3 bench/controller_bench.py --only ours --controller /path/to/ipcpp-controller

Options: ``--engines 2,8``, ``--tasks N``, ``--roundtrips N``, ``--only ours|reference``,
``--controller PATH`` (default: build/release/bin/ipcpp-controller in this repository),
``--record-limit N``, ``--keep`` (keep the temporary directories and their logs).

Every run uses its own temporary directory as HOME and IPYTHONDIR and a profile directory
inside it, so ~/.ipython is never touched. The controller and the engines are stopped with
SIGTERM (SIGKILL after a grace period), and so are the processes they started (the
ipcontroller's scheduler processes, the engines' nannies), by PID. The client runs in a
child process of /usr/bin/python3 with the same environment.

Limits
------
The client and the engines are the Python ones: on a small machine their own cost (pickling,
Python's ZeroMQ loop, 8 engine processes on 2 cores) is much of what is measured, so these
figures bound what a faster controller can show end to end; they do not isolate the
controller. The C++ end-to-end benchmark, with the C++ client, comes later.

This is a benchmark, not a test: it is not part of the test suite. It exits 0 when it
completes and 1 when a run fails (a controller or engine dies, or a workload times out); the
failing run's logs are printed to stderr.
"""

import argparse
import gc
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = "/usr/bin/python3"
IPCONTROLLER = "/usr/bin/ipcontroller"
IPENGINE = "/usr/bin/ipengine"
REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONTROLLER = REPO / "build" / "release" / "bin" / "ipcpp-controller"

THROUGHPUT_RUNS = 3
LATENCY_WARMUP = 50
GRACE_SECONDS = 10.0
CONNECTION_TIMEOUT = 60.0
ENGINE_TIMEOUT = 120


class RunFailed(Exception):
    """A run that could not complete; the message says why, the logs are printed."""


# ----------------------------------------------------------------------------- client side


def client_main(profile_dir, engines, tasks, roundtrips):
    """Runs in the child process: connects, runs both workloads, prints JSON on stdout."""
    import ipyparallel as ipp

    def noop(x=None):
        return x

    def reset_client():
        # The client keeps every result, its metadata and its history; left to grow, that
        # slows each later run (more to garbage-collect), so each run starts clean.
        rc.purge_local_results("all")
        rc.history.clear()
        lview.history.clear()
        gc.collect()

    rc = ipp.Client(profile_dir=profile_dir)
    try:
        t0 = time.perf_counter()
        rc.wait_for_engines(engines, timeout=ENGINE_TIMEOUT)
        wait_engines = time.perf_counter() - t0
        get_timeout = max(300.0, tasks / 10.0)

        lview = rc.load_balanced_view()
        lview.map_async(noop, range(max(200, tasks // 10))).get(timeout=get_timeout)
        rates, submits = [], []
        for _ in range(THROUGHPUT_RUNS):
            reset_client()
            t0 = time.perf_counter()
            ar = lview.map_async(noop, range(tasks))
            t1 = time.perf_counter()
            ar.get(timeout=get_timeout)
            t2 = time.perf_counter()
            rates.append(tasks / (t2 - t0))
            submits.append(t1 - t0)
            del ar
        reset_client()

        view = rc.direct_view(targets=rc.ids[0])
        for _ in range(LATENCY_WARMUP):
            view.apply_sync(noop)
        latencies = []
        for _ in range(roundtrips):
            t0 = time.perf_counter()
            view.apply_sync(noop)
            latencies.append((time.perf_counter() - t0) * 1e3)
    finally:
        rc.close()
    json.dump(
        {
            "wait_engines_s": wait_engines,
            "rates": rates,
            "submit_s": submits,
            "latencies_ms": latencies,
        },
        sys.stdout,
    )
    return 0


# ----------------------------------------------------------------------- process handling


def descendants(pid):
    """The processes below pid, found now (before signalling, while they are attached)."""
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def stop_all(popens):
    """SIGTERM what we started and what it started, wait, SIGKILL after the grace period.

    Only the PIDs of our own Popen objects and of their descendants (found before the
    signal) are touched. Returns descriptions of the processes that needed SIGKILL."""
    import psutil

    below = []
    for p in popens:
        if p.poll() is None:
            below.extend(descendants(p.pid))
    for p in popens:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    killed = []
    deadline = time.monotonic() + GRACE_SECONDS
    for p in popens:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed.append(f"pid {p.pid} {p.args[0]}")
            p.kill()
            p.wait()
    # Children (ipcontroller's schedulers, the engines' nannies) exit once their parent has
    # gone; give them the rest of the grace period, then kill the stragglers by PID.
    _, alive = psutil.wait_procs(below, timeout=max(1.0, deadline - time.monotonic()))
    for proc in alive:
        try:
            killed.append(f"pid {proc.pid} {' '.join(proc.cmdline())[:80]}")
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    return killed


def read_log(path, limit=60):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    if len(lines) > limit:
        lines = [f"... ({len(lines) - limit} earlier lines)"] + lines[-limit:]
    return "\n".join(lines) if lines else "(empty)"


def wait_connection_files(security, controller, log_path):
    deadline = time.monotonic() + CONNECTION_TIMEOUT
    names = ("ipcontroller-client.json", "ipcontroller-engine.json")
    while time.monotonic() < deadline:
        if controller.poll() is not None:
            raise RunFailed(f"controller exited with {controller.returncode} before writing "
                            f"its connection files")
        complete = 0
        for name in names:
            try:
                info = json.loads((security / name).read_text())
                if info.get("key") is not None and info.get("interface"):
                    complete += 1
            except (OSError, ValueError):
                pass
        if complete == len(names):
            return
        time.sleep(0.05)
    raise RunFailed(f"no complete connection files after {CONNECTION_TIMEOUT:.0f} s")


def run_setup(kind, controller_bin, engines, args):
    """One fresh controller + engines; returns the client's figures."""
    tmp = Path(tempfile.mkdtemp(prefix=f"ipcpp-bench-{kind}-{engines}-"))
    profile_dir = tmp / "profile_bench"
    profile_dir.mkdir()
    env = dict(os.environ, HOME=str(tmp), IPYTHONDIR=str(tmp / "ipython"))
    log_path = tmp / "controller.log"
    if kind == "reference":
        cmd = [IPCONTROLLER, f"--profile-dir={profile_dir}", "--ip=127.0.0.1", "--ping=1000",
               "--log-level=WARN"]
        if args.record_limit:
            cmd.append(f"--DictDB.record_limit={args.record_limit}")
    else:
        cmd = [str(controller_bin), "--profile-dir", str(profile_dir), "--ping", "1000",
               "--log-level", "warning"]
        if args.record_limit:
            cmd += ["--record-limit", str(args.record_limit)]
    started = []
    logs = []
    failed = None
    t_setup = time.perf_counter()
    try:
        log = open(log_path, "wb")
        logs.append(log)
        controller = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, env=env, cwd=tmp)
        started.append(controller)
        wait_connection_files(profile_dir / "security", controller, log_path)
        for i in range(engines):
            elog = open(tmp / f"engine-{i}.log", "wb")
            logs.append(elog)
            started.append(subprocess.Popen([IPENGINE, f"--profile-dir={profile_dir}"],
                                            stdin=subprocess.DEVNULL, stdout=elog,
                                            stderr=subprocess.STDOUT, env=env, cwd=tmp))
        client_log = tmp / "client.log"
        with open(client_log, "wb") as clog:
            client = subprocess.Popen(
                [PYTHON, str(Path(__file__).resolve()), "--_client", str(profile_dir),
                 "--engines", str(engines), "--tasks", str(args.tasks),
                 "--roundtrips", str(args.roundtrips)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=clog, env=env,
                cwd=tmp)
            started.append(client)
            try:
                out, _ = client.communicate(timeout=args.timeout)
            except subprocess.TimeoutExpired:
                raise RunFailed(f"the client did not finish within {args.timeout:.0f} s "
                                f"(hang?)")
        if client.returncode != 0:
            raise RunFailed(f"the client exited with {client.returncode}:\n"
                            f"{read_log(client_log)}")
        result = json.loads(out)
        for p in started[1:-1]:
            if p.poll() is not None:
                raise RunFailed(f"engine pid {p.pid} exited with {p.returncode} during the run")
        if controller.poll() is not None:
            raise RunFailed(f"controller exited with {controller.returncode} during the run")
        result["setup_s"] = time.perf_counter() - t_setup
        return result
    except RunFailed as e:
        failed = e
        raise
    finally:
        t_stop = time.perf_counter()
        # Engines first, so that their nannies can still tell the controller they are
        # going; then the controller.
        killed = stop_all(started[1:]) + stop_all(started[:1])
        t_stop = time.perf_counter() - t_stop
        if t_stop > 5:
            print(f"[{kind}, {engines} engines] stopping took {t_stop:.0f} s", file=sys.stderr)
        for f in logs:
            f.close()
        controller_log = read_log(log_path)
        if failed is not None:
            print(f"\n=== {kind} controller, {engines} engines: FAILED: {failed}", file=sys.stderr)
            print(f"--- controller command: {' '.join(cmd)}", file=sys.stderr)
            print(f"--- controller log ({log_path}):\n{controller_log}", file=sys.stderr)
            for i in range(engines):
                print(f"--- engine {i} log:\n{read_log(tmp / f'engine-{i}.log', 15)}",
                      file=sys.stderr)
            print(f"--- client log:\n{read_log(tmp / 'client.log')}", file=sys.stderr)
        elif controller_log not in ("(empty)", "(no log)"):
            print(f"[{kind}, {engines} engines] controller log (at warning level):\n"
                  f"{controller_log}", file=sys.stderr)
        if killed:
            print(f"[{kind}, {engines} engines] needed SIGKILL: {killed}", file=sys.stderr)
        if args.keep or failed is not None:
            print(f"[{kind}, {engines} engines] logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def other_cluster_processes():
    """Controllers, engines and test runs on this machine that are not this benchmark's: they
    share the CPUs, so the figures of a run that overlaps them are not clean."""
    out = subprocess.run(["pgrep", "-fa", "ipengine|ipcontroller|ipcpp-controller|ipcpp_tests"],
                         capture_output=True, text=True).stdout
    return [line for line in out.splitlines()
            if "ipcpp-bench-" not in line and str(os.getpid()) != line.split()[0]]


def leftover_engines():
    """`pgrep -fa ipengine` lines that belong to this benchmark's temporary directories."""
    out = subprocess.run(["pgrep", "-fa", "ipengine"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "ipcpp-bench-" in line]


# ------------------------------------------------------------------------------- reporting


def p99(values):
    ordered = sorted(values)
    rank = max(1, -(-99 * len(ordered) // 100))  # nearest rank: ceil(0.99 n)
    return ordered[rank - 1]


def fmt_rate(r):
    return f"{statistics.median(r['rates']):,.0f} ({min(r['rates']):,.0f}–{max(r['rates']):,.0f})"


def ratio(ours, ref):
    return f"{ours / ref:.2f}×" if ours and ref else "—"


def print_table(results, engine_counts, args):
    kinds = ("reference", "ours")
    print()
    print(f"tasks per throughput run: {args.tasks}, round trips: {args.roundtrips}; "
          f"ratio > 1 means ipcpp-controller is better")
    print()
    print("| workload | ipcontroller | ipcpp-controller | ratio |")
    print("|---|---|---|---|")
    for n in engine_counts:
        ref, ours = (results.get((k, n)) for k in kinds)
        cell = {k: (fmt_rate(results[(k, n)]) if (k, n) in results else "—") for k in kinds}
        med = {k: statistics.median(results[(k, n)]["rates"]) if (k, n) in results else None
               for k in kinds}
        print(f"| load-balanced no-op map, {n} engines: tasks/s, median (min–max) of "
              f"{THROUGHPUT_RUNS} | {cell['reference']} | {cell['ours']} | "
              f"{ratio(med['ours'], med['reference'])} (ipcpp/ipc) |")
    for n in engine_counts:
        for label, fn in (("median", statistics.median), ("p99", p99)):
            val = {k: fn(results[(k, n)]["latencies_ms"]) if (k, n) in results else None
                   for k in kinds}
            cell = {k: (f"{val[k]:.2f} ms" if val[k] is not None else "—") for k in kinds}
            print(f"| direct apply_sync(noop) round trip, {n} engines: {label} | "
                  f"{cell['reference']} | {cell['ours']} | "
                  f"{ratio(val['reference'], val['ours'])} (ipc/ipcpp) |")
    print()
    for (kind, n), r in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0] == "ours")):
        name = "ipcontroller" if kind == "reference" else "ipcpp-controller"
        print(f"{name}, {n} engines: engines ready in {r['wait_engines_s']:.1f} s, "
              f"submit part of each map {', '.join(f'{s:.2f}' for s in r['submit_s'])} s, "
              f"whole setup {r['setup_s']:.0f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default="2,8", help="engine counts, comma-separated")
    parser.add_argument("--tasks", type=int, default=3000, help="tasks per throughput run")
    parser.add_argument("--roundtrips", type=int, default=500, help="timed direct round trips")
    parser.add_argument("--only", choices=("ours", "reference"), help="run one controller")
    parser.add_argument("--controller", default=str(DEFAULT_CONTROLLER),
                        help="the ipcpp-controller binary")
    parser.add_argument("--record-limit", type=int, default=None,
                        help="task store record limit for both controllers (default: every "
                        "task of a run; 0: the controllers' default, 1024)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds the client may take for one setup")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--_client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    engine_counts = [int(n) for n in args.engines.split(",") if n.strip()]
    if args.record_limit is None:
        # warm-up map, the timed maps, the round trips and their warm-up, with room to spare
        args.record_limit = 2 * (max(200, args.tasks // 10) + THROUGHPUT_RUNS * args.tasks
                                 + args.roundtrips + LATENCY_WARMUP)

    if args._client:
        return client_main(args._client, engine_counts[0], args.tasks, args.roundtrips)

    kinds = ("reference", "ours") if args.only is None else (args.only,)
    controller_bin = Path(args.controller).resolve()
    if "ours" in kinds and not os.access(controller_bin, os.X_OK):
        print(f"no ipcpp-controller at {controller_bin}: build it (cmake --preset release && "
              f"cmake --build --preset release -j2 --target ipcpp-controller) or pass "
              f"--controller", file=sys.stderr)
        return 1
    names = {"reference": IPCONTROLLER, "ours": str(controller_bin)}
    print(f"controllers: {', '.join(names[k] for k in kinds)}; engines {engine_counts}; "
          f"record limit {args.record_limit or 'default'}; {os.cpu_count()} CPUs", flush=True)

    results = {}
    t_start = time.perf_counter()
    status = 0
    dirty = False
    try:
        for n in engine_counts:
            for kind in kinds:
                others = other_cluster_processes()
                print(f"running {kind} controller with {n} engines (load average "
                      f"{os.getloadavg()[0]:.2f}) ...", flush=True)
                if others:
                    print(f"  warning: {len(others)} other controller/engine/test processes "
                          f"running, the figures are not clean:\n    "
                          + "\n    ".join(o[:120] for o in others), flush=True)
                    dirty = True
                r = run_setup(kind, controller_bin, n, args)
                results[(kind, n)] = r
                print(f"  throughput {fmt_rate(r)} tasks/s; round trip median "
                      f"{statistics.median(r['latencies_ms']):.2f} ms, p99 "
                      f"{p99(r['latencies_ms']):.2f} ms", flush=True)
    except RunFailed:
        status = 1
    finally:
        left = leftover_engines()
        if left:
            print("engines of this benchmark still running:\n" + "\n".join(left),
                  file=sys.stderr)
            status = 1
    if results:
        print_table(results, engine_counts, args)
        if dirty:
            print("\nwarning: other controllers, engines or tests ran during this benchmark")
    print(f"\ntotal time {time.perf_counter() - t_start:.0f} s"
          + ("" if left else "; no engine of this benchmark left running"), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
