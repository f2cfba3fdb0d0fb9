#!/usr/bin/python3
"""Reference half of the end-to-end benchmark: the real ipyparallel 7.1 measured alone.

``bench/client_bench.cpp`` measures ipcpp (C++ client, controller and engines), then runs
this script and reads the one JSON line it prints, and prints ratios. This script measures
the Python stack only: the Python client, ``/usr/bin/ipcontroller`` and Python engines
(``/usr/bin/ipengine``).

With ``--controller PATH/ipcpp-controller`` it measures ipcpp-controller instead, with the
same Python client, Python engines and workloads: run it once with each controller and
compare the two JSON lines to see what the controller alone changes end to end. (This
replaces ``bench/controller_bench.py``, which did that for ``lb`` and ``direct``.)

What it measures
----------------
Each workload gets a fresh controller and fresh engines:

``lb``
    Load-balanced no-op throughput on E engines (``--engines``, default 4):
    ``lview.map_async(noop, range(TASKS), chunksize=1)`` (TASKS separate tasks, ``--tasks``,
    default 3000), timed from just before the submission until every result is back. One
    warm-up map of the same size, then 3 timed maps; the client's result caches and
    histories are purged before each. Reported: tasks/s, median, min and max of the 3.
``direct``
    ``rc[first id].apply_sync(noop)`` ROUNDTRIPS times (``--roundtrips``, default 1000) after
    50 warm-up calls, on a cluster of E engines. Reported: median and p99 (nearest rank) of
    the round trips, in microseconds.
``scatter_gather``
    On 4 engines (``--scatter-engines``): ``dview.scatter('a', x, block=True)`` then
    ``y = dview.gather('a', block=True)`` with ``x = numpy.arange(N, dtype=float)`` (N =
    ``--elements``, default 10^7, i.e. 80 MB); y must equal x. One warm-up, then 3 timed
    runs. Reported: the median scatter and gather seconds and
    GB/s = 2 * 8 * N bytes / (median scatter s + median gather s) / 1e9.
``scaling``
    ``--scaling-tasks`` (240) tasks of ``sleep_task(seconds)`` (a top-level function that
    calls ``time.sleep(--scaling-seconds)``, 1 s) load-balanced with chunksize 1 on
    ``--scaling-engines`` (80) engines: wall time from just before the submission until all
    results are back. One run, after every engine has registered and has run one no-op
    (``rc[:].apply_sync(noop)``). Reported: the wall seconds and the ideal
    ceil(tasks / engines) * seconds.

Output: progress and notes on stderr; on stdout exactly one line, a JSON object with one key
per workload run (``lb``, ``direct``, ``scatter_gather``, ``scaling``), ``controller``
(the absolute path of the controller program used) and ``versions`` (python, ipyparallel,
pyzmq, libzmq, numpy).

Settings
--------
ipcontroller runs with its defaults (leastload scheme, TaskScheduler.hwm 1, in-memory DictDB
with a 1 GiB buffer limit) except:

* ``--ping=1000``: HeartMonitor.period 1 s instead of 3 s. An engine's registration
  completes only when the controller's heart monitor has seen it answer a ping, so this
  makes engines register faster.
* ``--DictDB.record_limit``: raised above the default 1024 to hold every task of the run
  (2x the tasks the workload sends, at least 1024). With the default, DictDB culls the
  oldest records even while their tasks are in flight, and logs a "culled for size" error
  with a traceback for each later update of one (tens of thousands of log lines in one
  ``lb`` run): work that is not the controller's normal job, and a log that hides real
  errors. Only ``lb`` and ``direct`` send more than 1024 tasks.
* ``--ip=127.0.0.1``, ``--log-level=WARN``.

ipcpp-controller (chosen by the program's name: one that starts with ``ipcpp``) gets the
same settings in its own syntax, ``--profile-dir DIR --ip 127.0.0.1 --ping 1000 --log-level
warning --record-limit N``, and its defaults otherwise (also leastload, hwm 1, an in-memory
store with a 1 GiB buffer limit and a 1 s heartbeat). It culls only finished records, but
gets the same record limit so that both controllers keep the same records.

The engines run with ipengine's defaults (nanny process enabled, 5 s registration timeout).
Engines are started a few at a time (at most ``--max-starting``, default 2 per CPU, that
have been started but have not registered yet): starting 80 Python engines, each with its
nanny (a second Python interpreter), at once on a small machine mostly makes them compete.
Registration is read from the controller's engine state file (``<profile>/log/engines.json``
for ipcontroller, ``<profile>/security/ipcontroller-engines.json`` for ipcpp-controller).
On the 2-core CI machine 4 engines register in about 5 s and 80 engines in about 90 s
(about 1 s each, most of it the Python imports of the engine and of its nanny).

How to run
----------
With the system Python, which has ipyparallel 7.1 and numpy (not the ``python3`` first on
PATH)::

    /usr/bin/python3 bench/ipyparallel_bench.py              # everything, several minutes
    /usr/bin/python3 bench/ipyparallel_bench.py --quick      # a trial: counts / 10
    /usr/bin/python3 bench/ipyparallel_bench.py --only lb,direct --tasks 1000
    # the same against ipcpp-controller (build it first: cmake --preset release &&
    # cmake --build --preset release -j2 --target ipcpp-controller)
    /usr/bin/python3 bench/ipyparallel_bench.py --only lb,direct --tasks 1000 \
        --controller build/release/bin/ipcpp-controller

Comparing controllers like this, the figures include the Python client's and the Python
engines' own cost (pickling, Python's ZeroMQ loop, engine processes sharing a few cores),
which is much of what is measured: they bound what a faster controller can show end to end,
they do not isolate the controller.

Options: ``--controller PATH`` (``/usr/bin/ipcontroller``; a bare name is looked up on
PATH), ``--engines E`` (lb and direct, 4), ``--tasks N`` (3000), ``--roundtrips N``
(1000), ``--elements N`` (10^7), ``--scatter-engines E`` (4), ``--scaling-tasks N`` (240),
``--scaling-engines E`` (80), ``--scaling-seconds S`` (1.0), ``--skip-scaling``,
``--only lb,direct,scatter_gather,scaling``, ``--quick`` (tasks 300, round trips 100,
elements 10^6, scaling 24 tasks on 8 engines; explicit options still win), ``--keep``
(keep the temporary directories and their logs), ``--max-starting K``, ``--timeout S``
(seconds one workload's client may take, default 900), ``--registration-timeout S``
(seconds for all engines of a cluster to register, default 300).

Every cluster uses its own temporary directory as HOME and IPYTHONDIR with a profile
directory inside it, so ~/.ipython is never touched. The controller, the engines and the
client (a child process of /usr/bin/python3 with the same environment) are started in their
own sessions, so a Ctrl-C on the terminal reaches only this script, which then stops them.
They are stopped with SIGTERM (SIGKILL after a grace period), and so are the processes they
started (ipcontroller's scheduler processes, the engines' nannies), by PID only; the same
happens on SIGINT or SIGTERM to this script, which then exits with 128 + the signal number
and prints no JSON. The grace period grows with the number of processes (80 Python engines
exiting together on 2 cores take well over 10 s).

Limits
------
Everything is Python (all but the controller with ipcpp-controller) and shares the machine's
cores with the engines: on a 2-core machine the client's own pickling and ZeroMQ loop, the
controller (ipcontroller's hub and scheduler processes) and the engines all compete, so the
figures are end-to-end figures of this stack on this machine, not of any one part. Runs are
short (3 timed repetitions) and the figures move with other load on the machine; the script
warns when other controllers or engines are running. The scaling workload keeps 80 engines
and 80 nannies in memory: about 113 MB USS (145 MB RSS) per engine with its nanny, about
9 GB in all (the totals are printed). ipcontroller's heart monitor process writes its
heartbeat lines whatever ``--log-level`` says, and ipcpp-controller warns as the hearts of
the engines stop (they are stopped before it); after a run that worked these lines are left
out of the controller log this script prints.

This is a benchmark, not a test. It exits 0 when it completes and 1 when a run fails (a
controller or engine dies, an engine does not register, a workload times out or a gather
returns wrong data); the failing run's logs are printed to stderr.
"""

import argparse
import gc
import json
import math
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
TMP_PREFIX = "ipp-ref-bench-"

WORKLOADS = ("lb", "direct", "scatter_gather", "scaling")
THROUGHPUT_RUNS = 3
SCATTER_RUNS = 3
LATENCY_WARMUP = 50
GRACE_SECONDS = 10.0
CONNECTION_TIMEOUT = 60.0
PING_MS = 1000


class RunFailed(Exception):
    """A run that could not complete; the message says why, the logs are printed."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM to this script."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- client side


def noop(x=None):
    return x


def sleep_task(seconds):
    import time

    time.sleep(seconds)
    return seconds


def p99(values):
    ordered = sorted(values)
    rank = max(1, -(-99 * len(ordered) // 100))  # nearest rank: ceil(0.99 n)
    return ordered[rank - 1]


def client_main(workload, profile_dir, params):
    """Runs in the child process: connects, runs one workload, prints JSON on stdout."""
    import ipyparallel as ipp

    engines = params["engines"]
    rc = ipp.Client(profile_dir=profile_dir)
    try:
        t0 = time.perf_counter()
        rc.wait_for_engines(engines, timeout=params["engine_timeout"])
        out = {"wait_engines_s": time.perf_counter() - t0}
        get_timeout = params["get_timeout"]

        def reset_client(*views):
            # The client keeps every result, its metadata and its history; left to grow,
            # that slows each later run (more to garbage-collect), so each run starts clean.
            rc.purge_local_results("all")
            rc.history.clear()
            for v in views:
                v.history.clear()
            gc.collect()

        if workload == "lb":
            tasks = params["tasks"]
            lview = rc.load_balanced_view()
            lview.map_async(noop, range(tasks), chunksize=1).get(timeout=get_timeout)
            rates, submits = [], []
            for _ in range(THROUGHPUT_RUNS):
                reset_client(lview)
                t0 = time.perf_counter()
                ar = lview.map_async(noop, range(tasks), chunksize=1)
                t1 = time.perf_counter()
                ar.get(timeout=get_timeout)
                t2 = time.perf_counter()
                rates.append(tasks / (t2 - t0))
                submits.append(t1 - t0)
                del ar
            reset_client(lview)
            out.update(rates=rates, submit_s=submits)

        elif workload == "direct":
            view = rc[rc.ids[0]]
            for _ in range(LATENCY_WARMUP):
                view.apply_sync(noop)
            latencies = []
            for _ in range(params["roundtrips"]):
                t0 = time.perf_counter()
                view.apply_sync(noop)
                latencies.append((time.perf_counter() - t0) * 1e6)
            out.update(latencies_us=latencies)

        elif workload == "scatter_gather":
            import numpy

            dview = rc[:]
            x = numpy.arange(params["elements"], dtype=float)
            scatters, gathers = [], []
            for run in range(1 + SCATTER_RUNS):
                reset_client(dview)
                t0 = time.perf_counter()
                dview.scatter("a", x, block=True)
                t1 = time.perf_counter()
                y = dview.gather("a", block=True)
                t2 = time.perf_counter()
                if not (isinstance(y, numpy.ndarray) and numpy.array_equal(x, y)):
                    print(f"gather returned {type(y).__name__} "
                          f"{getattr(y, 'shape', len(y))}, not x", file=sys.stderr)
                    return 2
                del y
                if run:  # run 0 is the warm-up
                    scatters.append(t1 - t0)
                    gathers.append(t2 - t1)
            reset_client(dview)
            out.update(scatter_s=scatters, gather_s=gathers)

        elif workload == "scaling":
            dview = rc[:]
            t0 = time.perf_counter()
            dview.apply_sync(noop)
            out["warmup_s"] = time.perf_counter() - t0
            reset_client(dview)
            lview = rc.load_balanced_view()
            args = [params["seconds"]] * params["tasks"]
            t0 = time.perf_counter()
            ar = lview.map_async(sleep_task, args, chunksize=1)
            t1 = time.perf_counter()
            ar.get(timeout=get_timeout)
            t2 = time.perf_counter()
            out.update(wall_s=t2 - t0, submit_s=t1 - t0,
                       engines_used=len(set(ar.engine_id)))
        else:
            raise ValueError(workload)
    finally:
        rc.close()
    json.dump(out, sys.stdout)
    return 0


# ----------------------------------------------------------------------- process handling

_signal_state = {"deferring": 0, "pending": None}


def _on_signal(signum, frame):
    if _signal_state["pending"] is None:
        _signal_state["pending"] = signum
        if not _signal_state["deferring"]:
            raise Interrupted(signum)
    # a second signal, or one during cleanup: cleanup goes on, raised when it is done


class deferred_signals:
    """Cleanup runs to its end; a SIGINT/SIGTERM that arrives meanwhile is raised after."""

    def __enter__(self):
        _signal_state["deferring"] += 1

    def __exit__(self, exc_type, exc, tb):
        _signal_state["deferring"] -= 1
        signum = _signal_state["pending"]
        if signum is not None and exc_type is None and not _signal_state["deferring"]:
            raise Interrupted(signum)
        return False


class Tracked:
    """Every process this script started, and every process below them that it has seen.

    psutil.Process objects know their process's start time, so a PID reused by another
    process is never signalled."""

    def __init__(self):
        self.procs = {}  # pid -> psutil.Process
        self.owner = {}  # pid -> pid of the Popen it was started by (itself for a Popen)

    def started(self, popen):
        import psutil

        try:
            self.procs[popen.pid] = psutil.Process(popen.pid)
            self.owner[popen.pid] = popen.pid
        except psutil.Error:
            pass

    def snapshot(self, popens):
        """Remember the processes now below each of popens."""
        import psutil

        for p in popens:
            if p.poll() is not None:
                continue
            try:
                kids = psutil.Process(p.pid).children(recursive=True)
            except psutil.Error:
                continue
            for k in kids:
                if k.pid not in self.procs:
                    self.procs[k.pid] = k
                    self.owner[k.pid] = p.pid

    def below(self, popens):
        """Processes seen below popens that are still running (reparented or not)."""
        own = {p.pid for p in popens}
        return self.alive([proc for pid, proc in self.procs.items()
                           if self.owner[pid] in own and pid not in own])

    def alive(self, procs=None):
        out = []
        for proc in (self.procs.values() if procs is None else procs):
            try:
                if proc.is_running() and proc.status() != "zombie":
                    out.append(proc)
            except Exception:
                pass
        return out


TRACKED = Tracked()


def stop_all(popens):
    """SIGTERM what we started and what it started, wait, SIGKILL after the grace period.

    Only our own Popen objects and the processes seen below them (now or in earlier
    snapshots) are touched, by PID. Returns descriptions of the processes that needed
    SIGKILL."""
    import psutil

    TRACKED.snapshot(popens)
    below = TRACKED.below(popens)
    for p in popens:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except OSError:
                pass
    killed = []
    # Python processes exiting together on a small machine share its cores: 80 engines took
    # more than 10 s to exit after SIGTERM, so the grace period grows with their number.
    deadline = time.monotonic() + GRACE_SECONDS + 0.5 * len(popens)
    for p in popens:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            killed.append(f"pid {p.pid} {os.path.basename(p.args[0])}")
            p.kill()
            p.wait()
    # Children (ipcontroller's schedulers, the engines' nannies, which tell the controller
    # that their engine has gone) exit by themselves once their parent has gone: give them a
    # grace period of their own, then SIGTERM, then SIGKILL the stragglers, by PID.
    _, alive = psutil.wait_procs(below, timeout=GRACE_SECONDS + 0.25 * len(below))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for proc in alive:
            try:
                if sig == signal.SIGKILL:
                    killed.append(f"pid {proc.pid} {' '.join(proc.cmdline())[:80]}")
                proc.send_signal(sig)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(alive, timeout=5)
    return killed


def read_log(path, limit=60):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    if len(lines) > limit:
        lines = [f"... ({len(lines) - limit} earlier lines)"] + lines[-limit:]
    return "\n".join(lines) if lines else "(empty)"


def wait_connection_files(security, controller):
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


def is_ipcpp(controller):
    """True for an ipcpp-controller (by its name), False for an ipcontroller."""
    return os.path.basename(controller).startswith("ipcpp")


def controller_command(controller, profile_dir, record_limit):
    """The controller's command line: the same settings in either program's syntax."""
    if is_ipcpp(controller):
        return [controller, "--profile-dir", str(profile_dir), "--ip", "127.0.0.1",
                "--ping", str(PING_MS), "--log-level", "warning",
                "--record-limit", str(record_limit)]
    return [controller, f"--profile-dir={profile_dir}", "--ip=127.0.0.1", f"--ping={PING_MS}",
            "--log-level=WARN", f"--DictDB.record_limit={record_limit}"]


def registered_engines(controller, profile_dir):
    """Engines the hub has registered, from its engine state file (None: not readable now).

    ipcontroller keeps it in <profile>/log/engines.json, ipcpp-controller in
    <profile>/security/ipcontroller-engines.json (replaced atomically); both are
    {"engines": {id: uuid, ...}, ...} and are written when a registration completes."""
    if is_ipcpp(controller):
        paths = [profile_dir / "security" / "ipcontroller-engines.json"]
    else:
        paths = list((profile_dir / "log").glob("engines*.json"))
    for path in paths:
        try:
            return len(json.loads(path.read_text())["engines"])
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError):
            return None
    return 0


def memory_mb(popens):
    """(RSS, USS) in MB summed over popens and everything below them."""
    import psutil

    rss = uss = 0
    for p in popens:
        try:
            root = psutil.Process(p.pid)
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            continue
        for proc in procs:
            try:
                info = proc.memory_full_info()
                rss += info.rss
                uss += info.uss
            except psutil.Error:
                pass
    return rss / 2**20, uss / 2**20


# Lines ipcontroller's heart monitor process writes whatever the log level, and the ones of a
# normal shutdown (the engines are stopped before the controller; ipcpp-controller warns when
# their hearts stop): not worth showing after a run that worked.
ROUTINE_LOG = ("heartbeat::waiting for subscription", "heartbeat::subscription started",
               "Notifying hub of", "heartbeat::missed", "Received signal 15, shutting down",
               "terminating children...", "hearts stopped", "closed its connection",
               "unregistered: its heart stopped")


def unusual_lines(text):
    return [line for line in text.splitlines() if not any(r in line for r in ROUTINE_LOG)]


class Cluster:
    """One fresh controller and N ipengines in their own temporary HOME."""

    def __init__(self, workload, engines, record_limit, args):
        self.workload = workload
        self.n = engines
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{workload}-{engines}-"))
        self.profile_dir = self.tmp / "profile_bench"
        self.profile_dir.mkdir()
        self.env = dict(os.environ, HOME=str(self.tmp), IPYTHONDIR=str(self.tmp / "ipython"))
        self.controller_cmd = controller_command(args.controller, self.profile_dir,
                                                 record_limit)
        self.controller = None
        self.engines = []
        self.client = None
        self.files = []

    def popen(self, cmd, log_name, stdout=None):
        f = open(self.tmp / log_name, "wb")
        self.files.append(f)
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                             stdout=f if stdout is None else stdout,
                             stderr=subprocess.STDOUT if stdout is None else f,
                             env=self.env, cwd=self.tmp, start_new_session=True)
        TRACKED.started(p)
        return p

    def check_alive(self, when):
        """Raises RunFailed naming the first engine or the controller that has exited."""
        for i, p in enumerate(self.engines):
            if p.poll() is not None:
                raise RunFailed(f"engine {i} (pid {p.pid}) exited with {p.returncode} {when}")
        if self.controller.poll() is not None:
            raise RunFailed(f"controller exited with {self.controller.returncode} {when}")

    def start(self):
        t0 = time.perf_counter()
        self.controller = self.popen(self.controller_cmd, "controller.log")
        wait_connection_files(self.profile_dir / "security", self.controller)
        TRACKED.snapshot([self.controller])
        max_starting = max(1, self.args.max_starting)
        deadline = time.monotonic() + self.args.registration_timeout
        registered = 0
        last_report = time.monotonic()
        while True:
            reg = registered_engines(self.args.controller, self.profile_dir)
            if reg is not None:
                registered = reg
            if registered >= self.n:
                break
            self.check_alive(f"while {registered} of {self.n} engines had registered")
            while len(self.engines) < self.n and len(self.engines) - registered < max_starting:
                i = len(self.engines)
                self.engines.append(self.popen([IPENGINE, f"--profile-dir={self.profile_dir}"],
                                               f"engine-{i}.log"))
            if time.monotonic() > deadline:
                raise RunFailed(f"only {registered} of {self.n} engines registered within "
                                f"{self.args.registration_timeout:.0f} s")
            if self.n >= 20 and time.monotonic() - last_report > 15:
                last_report = time.monotonic()
                log(f"  ... {registered} of {self.n} engines registered after "
                    f"{time.perf_counter() - t0:.0f} s (load average "
                    f"{os.getloadavg()[0]:.1f})")
            time.sleep(0.05)
        self.register_s = time.perf_counter() - t0
        TRACKED.snapshot([self.controller] + self.engines)

    def run_client(self, params):
        params = dict(params, engines=self.n,
                      engine_timeout=float(self.args.registration_timeout),
                      get_timeout=float(self.args.timeout))
        out_path = self.tmp / "client.out"
        with open(out_path, "wb") as out:
            self.client = self.popen(
                [PYTHON, str(Path(__file__).resolve()), "--_client", self.workload,
                 "--_profile", str(self.profile_dir), "--_params", json.dumps(params)],
                "client.log", stdout=out)
            try:
                self.client.wait(timeout=self.args.timeout + 60)
            except subprocess.TimeoutExpired:
                raise RunFailed(f"the client did not finish within {self.args.timeout + 60:.0f}"
                                f" s (hang?)")
        if self.client.returncode != 0:
            raise RunFailed(f"the client exited with {self.client.returncode}")
        self.check_alive("during the run")
        try:
            return json.loads(out_path.read_text())
        except ValueError as e:
            raise RunFailed(f"the client's output is not JSON: {e}")

    def stop(self, failed, interrupted):
        """Stops everything (client, engines, controller); prints logs if failed."""
        t0 = time.perf_counter()
        # The client (done, unless interrupted) first, then the engines, so that their
        # nannies can still tell the controller they are going; then the controller.
        killed = []
        if self.client is not None:
            killed += stop_all([self.client])
        killed += stop_all(self.engines)
        if self.controller is not None:
            killed += stop_all([self.controller])
        stop_s = time.perf_counter() - t0
        for f in self.files:
            f.close()
        name = f"[{self.workload}, {self.n} engines]"
        if stop_s > 5:
            log(f"{name} stopping took {stop_s:.0f} s")
        if killed:
            log(f"{name} needed SIGKILL: {killed}")
        controller_log = read_log(self.tmp / "controller.log")
        if interrupted:
            log(f"{name} interrupted")
        elif failed is not None:
            log(f"\n=== {name} FAILED: {failed}")
            log(f"--- controller command: {' '.join(self.controller_cmd)}")
            log(f"--- controller log:\n{controller_log}")
            shown = range(len(self.engines))
            if len(self.engines) > 8:  # the ones that died, else the last few
                dead = [i for i, p in enumerate(self.engines)
                        if p.returncode is not None and p.returncode != -signal.SIGTERM]
                shown = dead[:8] or range(len(self.engines) - 4, len(self.engines))
            for i in shown:
                log(f"--- engine {i} log:\n{read_log(self.tmp / f'engine-{i}.log', 15)}")
            if self.client is not None:
                log(f"--- client log:\n{read_log(self.tmp / 'client.log')}")
        else:
            try:
                unusual = unusual_lines((self.tmp / "controller.log").read_text(errors="replace"))
            except OSError:
                unusual = []
            if unusual:
                log(f"{name} controller log (at warning level, routine heartbeat and shutdown "
                    f"lines left out):\n" + "\n".join(unusual[-60:]))
        if self.args.keep or (failed is not None and not interrupted):
            log(f"{name} logs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


CLUSTER_PROGRAMS = {"ipengine", "ipcontroller", "ipcpp-controller", "ipcpp-engine",
                    "ipcpp-cluster"}


def other_cluster_processes():
    """Controllers and engines on this machine that are not this script's: they share the
    CPUs, so the figures of a run that overlaps them are not clean."""
    import psutil

    out = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        argv = proc.info["cmdline"] or []
        names = {os.path.basename(a) for a in argv[:2]}
        if (names & CLUSTER_PROGRAMS or any(a.startswith("ipyparallel.") for a in argv[1:3])) \
                and proc.info["pid"] not in TRACKED.procs:
            out.append(f"{proc.info['pid']} {' '.join(argv)}")
    return out


def run_workload(workload, engines, record_limit, params, args):
    others = other_cluster_processes()
    log(f"{workload}: starting {os.path.basename(args.controller)} and {engines} engines "
        f"(load average {os.getloadavg()[0]:.2f}) ...")
    if others:
        log(f"  warning: {len(others)} other controller/engine processes running, the "
            f"figures are not clean:\n    " + "\n    ".join(o[:120] for o in others))
    cluster = Cluster(workload, engines, record_limit, args)
    failed = None
    interrupted = False
    try:
        cluster.start()
        note = f"  {engines} engines registered in {cluster.register_s:.1f} s"
        if workload == "scaling":
            crss, cuss = memory_mb([cluster.controller])
            ers, eus = memory_mb(cluster.engines)
            note += (f"; memory (RSS / USS): {os.path.basename(args.controller)} (with its "
                     f"schedulers, if any) {crss:,.0f} / {cuss:,.0f} MB, engines with their "
                     f"nannies {ers:,.0f} / {eus:,.0f} MB ({ers / engines:.0f} / "
                     f"{eus / engines:.0f} MB per engine)")
        log(note + "; running the client ...")
        result = cluster.run_client(params)
        result["register_s"] = cluster.register_s
        return result
    except RunFailed as e:
        failed = e
        raise
    except Interrupted as e:
        failed = f"interrupted by signal {e.signum}"
        interrupted = True
        raise
    except Exception as e:
        failed = f"{type(e).__name__}: {e}"
        raise
    finally:
        with deferred_signals():
            cluster.stop(failed, interrupted)


# ------------------------------------------------------------------------------- reporting


def versions():
    import platform

    import ipyparallel
    import numpy
    import zmq

    return {"python": platform.python_version(), "ipyparallel": ipyparallel.__version__,
            "pyzmq": zmq.__version__, "libzmq": zmq.zmq_version(), "numpy": numpy.__version__}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--controller", default=IPCONTROLLER,
                        help="the controller: an ipcontroller, or an ipcpp-controller (by its "
                        "name: ipcpp*), e.g. build/release/bin/ipcpp-controller "
                        f"(default {IPCONTROLLER})")
    parser.add_argument("--engines", type=int, help="engines for lb and direct (4)")
    parser.add_argument("--tasks", type=int, help="tasks per lb map (3000)")
    parser.add_argument("--roundtrips", type=int, help="timed direct round trips (1000)")
    parser.add_argument("--elements", type=int, help="scatter/gather array length (10^7)")
    parser.add_argument("--scatter-engines", type=int, help="engines for scatter_gather (4)")
    parser.add_argument("--scaling-tasks", type=int, help="sleep tasks (240)")
    parser.add_argument("--scaling-engines", type=int, help="engines for scaling (80)")
    parser.add_argument("--scaling-seconds", type=float, help="seconds per sleep task (1.0)")
    parser.add_argument("--skip-scaling", action="store_true", help="omit scaling")
    parser.add_argument("--only", help="comma-separated workloads: " + ",".join(WORKLOADS))
    parser.add_argument("--quick", action="store_true",
                        help="counts / 10, 10^6 elements, scaling 24 tasks on 8 engines")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--max-starting", type=int, default=2 * (os.cpu_count() or 1),
                        help="engines started but not yet registered at a time "
                        "(default: 2 per CPU)")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds one workload's client may take (default 900)")
    parser.add_argument("--registration-timeout", type=float, default=300.0,
                        help="seconds for a cluster's engines to register (default 300)")
    parser.add_argument("--_client", help=argparse.SUPPRESS)
    parser.add_argument("--_profile", help=argparse.SUPPRESS)
    parser.add_argument("--_params", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._client:
        return client_main(args._client, args._profile, json.loads(args._params))

    q = args.quick
    defaults = dict(engines=4, tasks=300 if q else 3000, roundtrips=100 if q else 1000,
                    elements=10**6 if q else 10**7, scatter_engines=4,
                    scaling_tasks=24 if q else 240, scaling_engines=8 if q else 80,
                    scaling_seconds=1.0)
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    for k in ("engines", "tasks", "roundtrips", "elements", "scatter_engines",
              "scaling_tasks", "scaling_engines"):
        if getattr(args, k) < 1:
            parser.error(f"--{k.replace('_', '-')} must be at least 1")
    controller = shutil.which(args.controller) if os.sep not in args.controller \
        else args.controller
    if not controller or not os.path.isfile(controller) or not os.access(controller, os.X_OK):
        parser.error(f"no controller program at {args.controller}"
                     + (": build it (cmake --preset release && cmake --build --preset release "
                        "-j2 --target ipcpp-controller)" if is_ipcpp(args.controller) else ""))
    # absolute: the controller runs in the cluster's temporary directory
    args.controller = os.path.abspath(controller)
    if args.only:
        chosen = [w.strip() for w in args.only.split(",") if w.strip()]
        bad = [w for w in chosen if w not in WORKLOADS]
        if bad:
            parser.error(f"unknown workload(s) {bad}; choose from {','.join(WORKLOADS)}")
    else:
        chosen = list(WORKLOADS)
    if args.skip_scaling and "scaling" in chosen:
        chosen.remove("scaling")
    chosen = [w for w in WORKLOADS if w in chosen]

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)

    status = 0
    out = {}
    t_start = time.perf_counter()
    try:
        vers = versions()
        log(f"controller {args.controller}; ipyparallel {vers['ipyparallel']}, pyzmq "
            f"{vers['pyzmq']}, libzmq "
            f"{vers['libzmq']}, Python {vers['python']}, numpy {vers['numpy']}; "
            f"{os.cpu_count()} CPUs; workloads {','.join(chosen)}")
        for w in chosen:
            t0 = time.perf_counter()
            if w == "lb":
                n = args.tasks
                r = run_workload(w, args.engines, max(1024, 2 * 4 * n), {"tasks": n}, args)
                rates = r["rates"]
                out[w] = {"engines": args.engines, "tasks": n,
                          "tasks_per_s": statistics.median(rates), "min": min(rates),
                          "max": max(rates)}
                log(f"  lb: {out[w]['tasks_per_s']:,.0f} tasks/s (min {min(rates):,.0f}, max "
                    f"{max(rates):,.0f}); submitting alone took "
                    f"{', '.join(f'{s:.2f}' for s in r['submit_s'])} s")
            elif w == "direct":
                n = args.roundtrips
                r = run_workload(w, args.engines, max(1024, 2 * (n + LATENCY_WARMUP)),
                                 {"roundtrips": n}, args)
                lat = r["latencies_us"]
                out[w] = {"engines": args.engines, "roundtrips": n,
                          "median_us": statistics.median(lat), "p99_us": p99(lat)}
                log(f"  direct: median {out[w]['median_us']:,.0f} us, p99 "
                    f"{out[w]['p99_us']:,.0f} us, max {max(lat):,.0f} us")
            elif w == "scatter_gather":
                n = args.elements
                r = run_workload(w, args.scatter_engines, 1024, {"elements": n}, args)
                s, g = statistics.median(r["scatter_s"]), statistics.median(r["gather_s"])
                out[w] = {"engines": args.scatter_engines, "elements": n, "scatter_s": s,
                          "gather_s": g, "gb_per_s": 2 * 8 * n / (s + g) / 1e9}
                log(f"  scatter_gather: scatter {s:.3f} s, gather {g:.3f} s, "
                    f"{out[w]['gb_per_s']:.3f} GB/s (runs: scatter "
                    f"{', '.join(f'{v:.3f}' for v in r['scatter_s'])}, gather "
                    f"{', '.join(f'{v:.3f}' for v in r['gather_s'])})")
            elif w == "scaling":
                n, e, secs = args.scaling_tasks, args.scaling_engines, args.scaling_seconds
                r = run_workload(w, e, max(1024, 2 * (n + e)),
                                 {"tasks": n, "seconds": secs}, args)
                out[w] = {"engines": e, "tasks": n, "task_seconds": secs,
                          "wall_s": r["wall_s"], "ideal_s": math.ceil(n / e) * secs}
                log(f"  scaling: {r['wall_s']:.2f} s wall, ideal {out[w]['ideal_s']:.2f} s; "
                    f"submitting took {r['submit_s']:.2f} s, warm-up no-op on every engine "
                    f"{r['warmup_s']:.2f} s, {r['engines_used']} engines ran tasks")
            log(f"  ({w} took {time.perf_counter() - t0:.0f} s in all)")
        out["controller"] = args.controller
        out["versions"] = vers
    except RunFailed:
        status = 1
    except Interrupted as e:
        log(f"interrupted by signal {e.signum}: everything started was stopped")
        status = 128 + e.signum
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        left = TRACKED.alive()
        if left:
            log("processes of this benchmark still running:\n" + "\n".join(
                f"  pid {p.pid}" for p in left))
            status = status or 1
        if _signal_state["pending"] is not None and status == 0:
            status = 128 + _signal_state["pending"]
    if status == 0:
        print(json.dumps(out), flush=True)
    log(f"total time {time.perf_counter() - t_start:.0f} s"
        + ("" if left else "; no process of this benchmark left running"))
    return status


if __name__ == "__main__":
    sys.exit(main())
