"""Loads a connection file with ipyparallel's own loading code, for ipcpp's interop tests.

Run with Debian's /usr/bin/python3 (ipyparallel 7.1):

    load_connection_file.py engine PATH   IPEngine.load_connector_file() on PATH
    load_connection_file.py client PATH   ipyparallel.Client(PATH): loads it and connects to
                                          the hub it names (a controller must be running)

Prints one JSON line with what was loaded; any complaint is an exception (exit status 1).
"""
import json
import sys


def engine(path):
    from ipyparallel.engine.app import IPEngine

    app = IPEngine(url_file=path)
    app.load_connector_file()
    session = app.config.Session
    print(
        json.dumps(
            {
                "registration_url": app.registration_url,
                "key": session.key.decode("ascii"),
                "signature_scheme": session.signature_scheme,
                "packer": session.packer,
                "location": app.location,
                "interface": app.connection_info["interface"],
            }
        )
    )


def client(path):
    import ipyparallel as ipp

    rc = ipp.Client(path, timeout=20)
    try:
        print(json.dumps({"ids": rc.ids, "task_scheme": rc._task_scheme}))
    finally:
        rc.close()


if __name__ == "__main__":
    {"engine": engine, "client": client}[sys.argv[1]](sys.argv[2])
