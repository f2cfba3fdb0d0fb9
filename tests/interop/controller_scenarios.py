"""Scenarios run by the real ipyparallel Client against a controller (ours or the reference).

Usage: controller_scenarios.py SCENARIO --profile-dir DIR [--engines N] [options]

Each scenario prints one JSON object on its last line of stdout: what it observed. The C++
tests (tests/interop/test_interop_controller.cpp) start the controller and the engines and
assert on that object; this script only drives the client and reports.
"""
import argparse
import faulthandler
import json
import os
import signal
import sys
import time

import ipyparallel as ipp
from ipyparallel import error


def connect(args, n=None):
    rc = ipp.Client(profile_dir=args.profile_dir, cluster_id=args.cluster_id, timeout=20)
    rc.wait_for_engines(n if n is not None else args.engines, timeout=60)
    return rc


def ename_of(exc):
    """The remote exception's name, from a RemoteError or a CompositeError."""
    if isinstance(exc, error.CompositeError):
        return exc.elist[0][0]
    if isinstance(exc, error.RemoteError):
        return exc.ename
    return type(exc).__name__


def raises(f):
    try:
        f()
    except Exception as e:  # noqa: BLE001 - we report what was raised
        return ename_of(e)
    return None


def basics(args):
    rc = connect(args)
    out = {"ids": rc.ids}
    out["pids"] = [rc[i].apply_sync(os.getpid) for i in rc.ids]
    lview = rc.load_balanced_view()
    squares = lview.map_sync(lambda x: x * x, range(1000))
    out["map_ok"] = squares == [x * x for x in range(1000)]
    dview = rc[:]
    dview.scatter("a", list(range(16)), block=True)
    out["gathered"] = list(dview.gather("a", block=True))
    dview.push({"x": 21}, block=True)
    out["pulled"] = dview.pull("x", block=True)
    dview.execute("y = x * 2", block=True)
    out["view_y"] = dview["y"]
    bview = rc.broadcast_view()
    out["broadcast_pids"] = sorted(bview.apply_sync(os.getpid))
    coalescing = rc.broadcast_view(is_coalescing=True)
    out["coalesced_pids"] = sorted(coalescing.apply_sync(os.getpid))
    ar = rc[rc.ids[-1]].apply_async(os.getpid)
    ar.get(timeout=20)
    md = ar.metadata
    out["metadata"] = {
        "engine_id": md["engine_id"],
        "submitted": md["submitted"] is not None,
        "started": md["started"] is not None,
        "completed": md["completed"] is not None,
        "ordered": bool(md["submitted"] <= md["started"] <= md["completed"]),
    }
    rc.close()
    return out


def spread(args):
    """200 short tasks: which engine ran each; and whether hwm held."""
    rc = connect(args)
    lview = rc.load_balanced_view()
    ars = [lview.apply_async(lambda: __import__("time").sleep(0.002)) for _ in range(200)]
    engines = {}
    for ar in ars:
        ar.get(timeout=60)
        engines[ar.metadata["engine_id"]] = engines.get(ar.metadata["engine_id"], 0) + 1
    out = {"ids": rc.ids, "per_engine": {str(k): v for k, v in engines.items()}}
    # hwm: with more blocked tasks than engines, no engine has more than hwm outstanding. The
    # tasks wait for a file that appears only after the queue status was taken, so the
    # snapshot does not depend on timing.
    gate = os.path.join(args.profile_dir, "spread-gate")

    def blocked(path):
        import os, time
        while not os.path.exists(path):
            time.sleep(0.005)

    slow = [lview.apply_async(blocked, gate) for _ in range(3 * len(rc.ids))]
    deadline = time.monotonic() + 60
    while True:  # until the hub has seen every one of them
        status = rc.queue_status()
        seen = sum(status[i]["tasks"] for i in rc.ids) + status["unassigned"]
        if seen == len(slow) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    out["max_tasks_per_engine"] = max(status[i]["tasks"] for i in rc.ids)
    out["unassigned_while_busy"] = status["unassigned"]
    open(gate, "w").close()
    for ar in slow:
        ar.get(timeout=60)
    rc.close()
    return out


def dependencies(args):
    rc = connect(args)
    lview = rc.load_balanced_view()
    out = {}

    def fail():
        raise ValueError("this task fails")

    failed = lview.apply_async(fail)
    out["failed_task"] = raises(lambda: failed.get(timeout=20))
    with lview.temp_flags(after=[failed]):
        after_failed = lview.apply_async(os.getpid)
    out["after_failed"] = raises(lambda: after_failed.get(timeout=20))
    with lview.temp_flags(after=ipp.Dependency([failed], success=False, failure=True)):
        after_failure_ok = lview.apply_async(lambda: "ran")
    out["after_failure_allowed"] = after_failure_ok.get(timeout=20)

    with lview.temp_flags(after=["no-such-msg-id"]):
        invalid = lview.apply_async(os.getpid)
    out["invalid"] = raises(lambda: invalid.get(timeout=20))

    # follow: every follower runs where the leader ran.
    leader = lview.apply_async(os.getpid)
    leader_pid = leader.get(timeout=20)
    with lview.temp_flags(follow=[leader]):
        followers = [lview.apply_async(os.getpid) for _ in range(8)]
    out["follow_same_engine"] = all(f.get(timeout=20) == leader_pid for f in followers)

    # retries: only one engine has ok=True; a task asserting it moves there.
    dview = rc[:]
    dview["ok"] = False
    good = rc.ids[-1]
    rc[good]["ok"] = True

    def needs_ok():
        assert ok  # noqa: F821 - engine namespace
        return __import__("os").getpid()

    good_pid = rc[good].apply_sync(os.getpid)
    with lview.temp_flags(retries=len(rc.ids)):
        retried = [lview.apply_async(needs_ok) for _ in range(4)]
    out["retries_moved"] = all(r.get(timeout=30) == good_pid for r in retried)

    # every engine fails it: the failure comes back instead of waiting forever
    dview["ok"] = False
    with lview.temp_flags(retries=len(rc.ids) + 3):
        hopeless = lview.apply_async(needs_ok)
    out["retries_exhausted"] = raises(lambda: hopeless.get(timeout=30))

    # timeout while waiting on a dependency
    slow = lview.apply_async(lambda: __import__("time").sleep(3))
    with lview.temp_flags(after=[slow], timeout=0.5):
        waiting = lview.apply_async(os.getpid)
    t0 = time.time()
    out["timeout"] = raises(lambda: waiting.get(timeout=20))
    out["timeout_seconds"] = round(time.time() - t0, 2)
    slow.get(timeout=20)
    rc.close()
    return out


def hub_queries(args):
    a = connect(args)
    b = connect(args)
    out = {}
    lview = a.load_balanced_view()
    done = lview.apply_async(lambda: 6 * 7)
    done.get(timeout=20)
    msg_id = done.msg_ids[0]
    # another client fetches it by msg_id
    out["other_client_result"] = b.get_result(msg_id).get(timeout=20)
    status = b.result_status([msg_id])
    out["result_status"] = {"pending": status["pending"], "completed": status["completed"]}
    qs = a.queue_status()
    out["queue_status_keys"] = sorted(str(k) for k in qs.keys())
    out["queue_completed_total"] = sum(qs[i]["completed"] for i in a.ids)
    hist = b.hub_history()
    out["history_has"] = msg_id in hist
    # db_query on completed tasks
    recs = b.db_query({"msg_id": msg_id, "queue": "task"}, keys=["msg_id", "engine_uuid", "completed"])
    out["db_both_keys"] = [r["msg_id"] for r in recs]
    later = b.db_query({"completed": {"$gt": recs[0]["completed"]}}, keys=["msg_id"])
    out["db_gt_excludes_self"] = msg_id not in [r["msg_id"] for r in later]
    # resubmit keeps targets
    target = a.ids[-1]
    tview = a.load_balanced_view(targets=[target])
    pinned = tview.apply_async(os.getpid)
    pinned_pid = pinned.get(timeout=20)
    again = b.resubmit(pinned.msg_ids)
    out["resubmit_same_engine"] = again.get(timeout=20) == [pinned_pid]
    # Frames of megabytes, which the controller copies for its records
    # (proto/large_buffer.hpp): the records and a resubmission from them have every byte.
    big = os.urandom(3 << 20)
    echo = lview.apply_async(lambda x: x, big)
    out["big_echo"] = echo.get(timeout=20) == big
    recs = b.db_query({"msg_id": echo.msg_ids[0]}, keys=["buffers", "result_buffers"])
    out["big_request_kept"] = any(bytes(x) == big for x in recs[0]["buffers"])
    out["big_result_kept"] = any(bytes(x) == big for x in recs[0]["result_buffers"])
    out["big_resubmitted"] = b.resubmit(echo.msg_ids).get(timeout=20) == [big]
    # purge
    b.purge_results(msg_id)
    out["after_purge"] = raises(lambda: b.get_result(msg_id).get(timeout=10))
    b.purge_results("all")
    out["db_after_purge_all"] = len(b.db_query({"completed": {"$ne": None}}, keys=["msg_id"]))
    b.close()
    if args.shutdown:
        a.shutdown(hub=True, block=True)
        out["shutdown"] = True
    else:
        a.close()
    return out


def killed(args):
    """Kill (or stop) one engine that runs a long task; report what the client saw."""
    rc = connect(args)
    victim = rc.ids[0]
    pid = rc[victim].apply_sync(os.getpid)
    long_task = rc[victim].apply_async(lambda: __import__("time").sleep(30))
    lview = rc.load_balanced_view(targets=[rc.ids[0]])
    lb_task = lview.apply_async(lambda: __import__("time").sleep(30))
    # a busy engine (CPU-bound) must not be declared dead meanwhile
    busy = rc[rc.ids[1]].apply_async(lambda: sum(i * i for i in range(40_000_000)))
    sleeper = rc[rc.ids[2]].apply_async(lambda: __import__("time").sleep(5) or "slept")
    time.sleep(1.0)
    t0 = time.time()
    os.kill(pid, signal.SIGSTOP if args.mode == "stop" else signal.SIGKILL)
    out = {"victim": victim, "victim_pid": pid}
    out["direct"] = raises(lambda: long_task.get(timeout=30))
    out["direct_seconds"] = round(time.time() - t0, 2)
    out["task"] = raises(lambda: lb_task.get(timeout=30))
    out["task_seconds"] = round(time.time() - t0, 2)
    while victim in rc.ids and time.time() - t0 < 30:
        time.sleep(0.05)
    out["left_ids_seconds"] = round(time.time() - t0, 2)
    out["ids_after"] = rc.ids
    out["busy_result_ok"] = busy.get(timeout=120) == sum(i * i for i in range(40_000_000))
    out["sleeper_result"] = sleeper.get(timeout=60)
    out["others_work"] = rc[rc.ids].apply_sync(lambda: 1) == [1] * len(rc.ids)
    out["ids_final"] = rc.ids
    rc.close()
    return out


def before_restart(args):
    rc = connect(args)
    ar = rc.load_balanced_view().apply_async(lambda: "kept across restart")
    ar.get(timeout=20)
    out = {"msg_id": ar.msg_ids[0], "ids": rc.ids}
    rc.close()
    return out


def after_restart(args):
    rc = connect(args)
    out = {"ids": rc.ids, "result": rc.get_result(args.msg_id).get(timeout=20)}
    out["runs"] = rc[:].apply_sync(lambda: "ok")
    rc.close()
    return out


def cluster_launch(args):
    """ipyparallel's own Cluster starts our controller (as its controller_cmd) and engines."""
    from traitlets.config import Config

    config = Config()
    config.LocalControllerLauncher.controller_cmd = [args.controller]
    cluster = ipp.Cluster(
        n=args.engines,
        profile_dir=args.profile_dir,
        controller_args=["--ping=500"],
        config=config,
        log_level=40,
    )
    rc = cluster.start_and_connect_sync()
    rc.wait_for_engines(args.engines, timeout=60)
    out = {"ids": rc.ids}
    out["controller_cmd"] = cluster.controller.args[0]
    out["results"] = rc.load_balanced_view().map_sync(lambda x: x + 1, range(20))
    out["pids"] = rc[:].apply_sync(os.getpid)
    rc.close()
    cluster.stop_cluster_sync()
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario")
    p.add_argument("--profile-dir", required=True)
    p.add_argument("--cluster-id", default="")
    p.add_argument("--engines", type=int, default=2)
    p.add_argument("--mode", default="kill")
    p.add_argument("--msg-id", default="")
    p.add_argument("--shutdown", action="store_true")
    p.add_argument("--controller", default="ipcpp-controller")
    args = p.parse_args()
    # A hang shows where it is (every thread's stack on stderr) before the C++ side's timeout.
    faulthandler.dump_traceback_later(170, exit=True)
    scenarios = {
        "basics": basics,
        "spread": spread,
        "dependencies": dependencies,
        "hub_queries": hub_queries,
        "killed": killed,
        "before_restart": before_restart,
        "after_restart": after_restart,
        "cluster_launch": cluster_launch,
    }
    out = scenarios[args.scenario](args)
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
