"""Scenarios run by the real ipyparallel Client against ipcpp engines (under ipcpp-controller
or the reference ipcontroller).

Usage: engine_scenarios.py SCENARIO --profile-dir DIR [--engines N] [options]

Each scenario prints one JSON object on its last line of stdout: what it observed. The C++
tests (tests/interop/test_interop_engine.cpp) start the controller and the engines and assert
on that object; this script only drives the client and reports.
"""
import argparse
import faulthandler
import json
import os
import sys
import time

import ipyparallel as ipp
from ipyparallel import error


def connect(args, n=None):
    """A client that sees n engines. The Python client can miss a registration notification
    that is published while it connects (it subscribes after asking for the engines); a new
    client asks again, as a user would."""
    n = n if n is not None else args.engines
    for _ in range(5):
        rc = ipp.Client(profile_dir=args.profile_dir, timeout=20)
        try:
            rc.wait_for_engines(n, timeout=12)
            return rc
        except TimeoutError:
            rc.close()
    raise TimeoutError(f"{n} engines did not register")


def remote_error(f):
    """Runs f; returns {ename, evalue, seconds} of the remote error it raised, or None."""
    start = time.monotonic()
    try:
        f()
    except error.CompositeError as e:
        ename, evalue = e.elist[0][0], e.elist[0][1]
        return {"ename": ename, "evalue": evalue, "seconds": time.monotonic() - start,
                "count": len(e.elist)}
    except error.RemoteError as e:
        return {"ename": e.ename, "evalue": e.evalue, "seconds": time.monotonic() - start}
    except Exception as e:  # noqa: BLE001 - reported
        return {"ename": type(e).__name__, "evalue": str(e), "seconds": time.monotonic() - start}
    return None


def with_output(ar):
    """ar, once its output has arrived too (iopub and the reply travel apart)."""
    ar.wait_for_output(30)
    return ar


def wait_for_text(ar, text, timeout=60):
    """Waits until the running request's stdout contains text."""
    deadline = time.monotonic() + timeout
    while text not in (ar.stdout or ""):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {text!r} in the output of {ar.msg_ids}: {ar.stdout!r}")
        time.sleep(0.01)


def report(out):
    # On its own line: the client may have printed something without a newline.
    print("\n" + json.dumps(out))


def results(ar):
    """application/json of each engine's execute_result (a list, even for one engine)."""
    replies = ar.get(60)
    ar.wait_for_output(30)  # execute_result comes on iopub
    if not isinstance(replies, list):
        replies = [replies]
    return [r.data.get("application/json") for r in replies]


def basics(args):
    rc = connect(args)
    dview = rc[:]
    out = {"ids": rc.ids}
    out["echo_stdout"] = with_output(dview.execute("!echo hi", block=True)).stdout
    out["stderr"] = with_output(dview.execute("!echo oops 1>&2", block=True)).stderr
    dview.execute("x = getpid()", block=True)
    out["pids"] = results(dview.execute("x", block=True))
    out["broadcast_pids"] = sorted(results(rc.broadcast_view().execute("x", block=True)))
    out["unknown_function"] = remote_error(lambda: dview.execute("nosuch(1, 2)", block=True))
    out["syntax_error"] = remote_error(lambda: rc[rc.ids[0]].execute("x = (", block=True))
    out["failed_command"] = remote_error(lambda: rc[rc.ids[0]].execute("!exit 3", block=True))
    out["pickle"] = remote_error(lambda: rc[rc.ids[0]].apply_sync(os.getpid))
    out["after_pickle"] = results(rc[rc.ids[0]].execute("echo(41)", block=True))
    out["sum"] = results(dview.execute('y = sum(range(10)); print("y is", y); y', block=True))
    out["print_stdout"] = with_output(rc[rc.ids[0]].execute('print("y is", y)', block=True)).stdout
    rc[rc.ids[0]].clear(block=True)
    out["after_clear"] = remote_error(lambda: rc[rc.ids[0]].execute("y", block=True))
    if args.load:
        out["minus"] = results(dview.execute("minus(5, 6)", block=True))
        out["functions"] = results(rc[rc.ids[0]].execute("functions()", block=True))[0]
    report(out)


def streaming(args):
    """Output of a running command reaches the client before the command ends: the command
    waits for a file that the client creates only once it has seen the first line."""
    rc = connect(args)
    engine = rc[rc.ids[0]]
    out = {}
    for name, first in [("shell", "!echo first"), ("function", 'print("first")')]:
        gate = os.path.join(args.profile_dir, "gate-" + name)
        code = f"{first}\n!while [ ! -e {gate} ]; do sleep 0.01; done\nprint(\"second\")"
        ar = engine.execute(code, block=False)
        seen_while_running = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if "first" in (ar.stdout or ""):
                seen_while_running = not ar.ready()
                break
            time.sleep(0.01)
        open(gate, "w").close()
        ar.get(30)
        ar.wait_for_output(30)  # iopub and the reply travel apart
        out[name] = {"seen_while_running": seen_while_running, "stdout": ar.stdout}
    report(out)


def busy(args):
    """A sleeping engine stays registered; abort and shutdown stop it at once."""
    rc = connect(args)
    first, second = rc.ids[0], rc.ids[1]
    out = {}
    ar = rc[first].execute('print("started"); sleep(20)', block=False)
    wait_for_text(ar, "started")
    time.sleep(args.wait)  # several heartbeat periods while it sleeps
    out["registered_while_sleeping"] = first in rc.ids
    out["queue_while_sleeping"] = rc.queue_status(targets=[first])[first]["queue"]
    start = time.monotonic()
    rc.abort(ar.msg_ids, targets=[first], block=False).result(timeout=30)
    out["abort"] = remote_error(lambda: ar.get(15))
    out["abort"]["seconds"] = time.monotonic() - start
    out["after_abort"] = results(rc[first].execute("echo(7)", block=True))

    out["shutdown_pid"] = results(rc[second].execute("getpid()", block=True))[0]
    ar = rc[second].execute('print("started"); sleep(20)', block=False)
    wait_for_text(ar, "started")  # it runs: shutdown must interrupt it
    start = time.monotonic()
    # Client.shutdown(targets=[second], block=True), with a bound on the wait for the reply.
    rc._send_control_request(targets=[second], msg_type="shutdown_request",
                             content={"restart": False}, block=False).result(timeout=30)
    out["shutdown_error"] = remote_error(lambda: ar.get(15))
    while second in rc.ids and time.monotonic() - start < 15:
        time.sleep(0.01)
    out["shutdown_seconds"] = time.monotonic() - start
    out["ids_after_shutdown"] = rc.ids
    report(out)


def crash(args):
    """A task that crashes its engine fails with EngineError; the other engines go on."""
    rc = connect(args)
    victim = rc.ids[0]
    out = {"ids_before": rc.ids}
    ar = rc[victim].execute("abort_process()", block=False)
    out["crash"] = remote_error(lambda: ar.get(15))
    deadline = time.monotonic() + 15
    while victim in rc.ids and time.monotonic() < deadline:
        time.sleep(0.01)
    out["ids_after"] = rc.ids
    others = rc[[i for i in rc.ids]]
    out["others_pids"] = results(others.execute("getpid()", block=True))
    report(out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario")
    parser.add_argument("--profile-dir", required=True)
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--load", action="store_true", help="the example tasks are loaded")
    parser.add_argument("--wait", type=float, default=2.0)
    args = parser.parse_args()
    # A hang shows where it is: every thread's stack on stderr, then exit, before the C++
    # side's own timeout (180 s) stops the process without a word.
    faulthandler.dump_traceback_later(150, exit=True)
    {"basics": basics, "streaming": streaming, "busy": busy, "crash": crash}[args.scenario](args)
    sys.stdout.flush()
    os._exit(0)  # do not wait for the client's threads


if __name__ == "__main__":
    main()
