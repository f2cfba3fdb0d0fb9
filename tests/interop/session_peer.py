"""A jupyter_client Session peer for ipcpp's signing interop test.

Run with Debian's /usr/bin/python3 (the reference jupyter_client):

    session_peer.py ENDPOINT KEY COUNT

Connects a DEALER to ENDPOINT, sends one message signed by jupyter_client's Session with
KEY, then receives COUNT messages and checks each with Session.deserialize. For every
received message it prints one JSON line: {"accepted": true, ...what it read...} or
{"accepted": false, "error": "..."}. Exits 0 when it has printed COUNT lines, 3 when a
message takes longer than 20 s to come.
"""
import datetime
import json
import sys

import zmq
from jupyter_client.session import Session


def main():
    endpoint, key, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    session = Session(key=key.encode("ascii"), signature_scheme="hmac-sha256", username="py")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)

    session.send(
        sock,
        "interop_request",
        content={"n": 1, "text": "h\u00e9llo \u2713", "list": [1.5, None, True]},
        metadata={"from": "python"},
        buffers=[b"\x00\x01raw\xffbytes"],
    )

    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    for _ in range(count):
        if not poller.poll(20000):
            print(json.dumps({"accepted": False, "error": "timeout"}), flush=True)
            sys.exit(3)
        frames = sock.recv_multipart(copy=True)
        try:
            idents, rest = session.feed_identities(frames, copy=True)
            msg = session.deserialize(rest, content=True, copy=True)
        except Exception as e:  # noqa: BLE001 - the verdict is what we report
            print(json.dumps({"accepted": False, "error": f"{type(e).__name__}: {e}"}), flush=True)
            continue
        header = msg["header"]
        print(
            json.dumps(
                {
                    "accepted": True,
                    "msg_type": msg["msg_type"],
                    "session": header["session"],
                    "date_is_datetime": isinstance(header["date"], datetime.datetime),
                    "version": header["version"],
                    "parent_msg_id": msg["parent_header"].get("msg_id"),
                    "metadata": msg["metadata"],
                    "content": msg["content"],
                    "buffers": [bytes(b).hex() for b in msg["buffers"]],
                }
            ),
            flush=True,
        )
    sock.close()
    ctx.term()


if __name__ == "__main__":
    main()
