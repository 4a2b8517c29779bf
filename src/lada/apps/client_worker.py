"""A long-lived worker that answers a deployment node's ClientApp messages.

Flower starts a fresh ClientApp process for every message a SuperNode receives, and the pinned
Flower has no long-lived ClientApp. A fresh process spends most of a small model's step
importing torch, transformers and Flower and reading the client's party back from disk. So the
ClientApp of a deployment (`lada.apps.client_front`) imports only Flower and forwards each
message over a Unix socket to this worker, which keeps the imports and the client's party (see
`lada.federation.client_state`: its in-memory copy is reused while the step counter agrees)
alive across the messages of the node. The party is still written to the client's disk after
every step, so a worker that dies loses nothing: the next message starts a new one, which reads
the party back.

The worker serves one message at a time, on a socket only its user can open, and exits when
the process that started it (the SuperNode) is gone or after `idle_s` seconds without a message.
Beside its socket it keeps a `.pid` file with its process id, removed when it exits. A worker
that dies mid-message loses that message, as a ClientApp process that dies does: the server
counts the client as lost.

Wire: each request and reply is a sequence of frames, each an 8-byte big-endian length and its
bytes. A request is [JSON header, Message protobuf, Context protobuf]; a reply is [JSON header,
RecordDict protobuf of the reply's content (empty on error), RecordDict protobuf of the
node's updated state]. The header of a reply says {"ok": true, "error": null} or carries the
reply's error code and reason ({"ok": true, "error": [code, reason]}), or {"ok": false,
"failure": "..."} when the step raised.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import Any

#: Version of the wire between the front and the worker; both sides check it.
WIRE_VERSION = 1
_LENGTH = struct.Struct(">Q")


class WorkerError(RuntimeError):
    """The worker could not be reached, or the connection broke mid-message."""


# --------------------------------------------------------------------------- frames
def send_frames(conn: socket.socket, frames: list[bytes]) -> None:
    conn.sendall(b"".join(_LENGTH.pack(len(f)) + f for f in frames))


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = conn.recv(min(left, 1 << 20))
        if not chunk:
            raise WorkerError("the connection closed mid-message")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def recv_frames(conn: socket.socket, count: int) -> list[bytes]:
    return [_recv_exact(conn, _LENGTH.unpack(_recv_exact(conn, 8))[0]) for _ in range(count)]


def header_bytes(header: dict[str, Any]) -> bytes:
    return json.dumps({"wire": WIRE_VERSION, **header}).encode()


def read_header(raw: bytes) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(raw)
    if header.get("wire") != WIRE_VERSION:
        raise WorkerError(f"wire version {header.get('wire')!r}, expected {WIRE_VERSION}")
    return header


# --------------------------------------------------------------------------- serving
def _alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no procfs (macOS): the signal test above is all there is
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _answer(conn: socket.socket) -> None:
    """Read one request, run the ClientApp's handler on it, send the reply."""
    # Deferred: the front imports this module for the wire alone, without torch.
    from flwr.common.serde import (
        context_from_proto,
        message_from_proto,
        recorddict_to_proto,
    )
    from flwr.proto.message_pb2 import Context as ProtoContext
    from flwr.proto.message_pb2 import Message as ProtoMessage

    from lada.apps.client_app import handle

    raw_header, raw_message, raw_context = recv_frames(conn, 3)
    read_header(raw_header)
    message = message_from_proto(ProtoMessage.FromString(raw_message))
    context = context_from_proto(ProtoContext.FromString(raw_context))
    try:
        reply = handle(message, context)
    except Exception as err:  # the step raised: the front raises it as the ClientApp's error
        print(traceback.format_exc(), file=sys.stderr, flush=True)
        failure = f"{type(err).__name__}: {err}"
        send_frames(conn, [header_bytes({"ok": False, "failure": failure}), b"", b""])
        return
    error = [reply.error.code, reply.error.reason] if reply.has_error() else None
    content = b"" if reply.has_error() else recorddict_to_proto(reply.content).SerializeToString()
    state = recorddict_to_proto(context.state).SerializeToString()
    send_frames(conn, [header_bytes({"ok": True, "error": error}), content, state])


def serve(socket_path: Path, parent_pid: int, idle_s: float) -> None:
    """Answer requests on `socket_path` until the parent is gone or nothing came for `idle_s`."""
    import lada.apps.client_app  # noqa: F401  (deferred as above; paid once, before the first message)

    # SIGTERM (a SuperNode's shutdown, `kill`) ends the loop through `finally`: no stale socket.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    socket_path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(socket_path))
    os.chmod(socket_path, 0o600)
    server.listen(4)
    server.settimeout(1.0)
    pid_file = socket_path.with_suffix(".pid")
    pid_file.write_text(f"{os.getpid()}\n")
    last = time.monotonic()
    try:
        while _alive(parent_pid) and time.monotonic() - last < idle_s:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(None)
                try:
                    _answer(conn)
                except (WorkerError, OSError) as err:  # the front went away mid-message
                    print(f"dropped a request: {err}", file=sys.stderr, flush=True)
            last = time.monotonic()
    finally:
        socket_path.unlink(missing_ok=True)  # first: a front that comes now starts a new worker
        server.close()
        pid_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--idle-s", type=float, default=1800.0)
    args = parser.parse_args(argv)
    serve(args.socket, args.parent_pid, args.idle_s)


if __name__ == "__main__":
    main()
