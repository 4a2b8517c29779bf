"""The deployment's `ClientApp`: a light front that hands each message to the node's worker.

Flower runs a fresh ClientApp process for every message of a deployment. This front imports
Flower alone, so that process starts in about a second, and forwards the message to a
long-lived worker (`lada.apps.client_worker`) that keeps torch, the models and the client's
party loaded between messages. The first message of a node starts the worker; a worker that
died is started again by the next message and reads the party back from the client's disk.

Node config (`flower-supernode --node-config`), beside the keys `lada.apps.client_app` reads:
  client-worker    "auto" (default): forward when this process is Flower's one-message
                   `flwr-clientapp` process (a deployment node), answer in this process otherwise
                   (Flower's simulation actors live across messages); "true" or "false" force it
  worker-idle-s    seconds a worker waits for the next message before it exits (default 1800)
  worker-start-s   seconds the first message waits for a new worker to listen (default 600)

The worker's socket and log live in `$TMPDIR/lada-<uid>/`, one per node and package copy
(`n<node id>-<hash of the package folder>.sock` and `.log`); the folder is private to the user.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flwr.app import Context, Error, Message
from flwr.clientapp import ClientApp
from flwr.common.serde import context_to_proto, message_to_proto, recorddict_from_proto
from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict

from lada.apps.client_worker import (
    WorkerError,
    header_bytes,
    read_header,
    recv_frames,
    send_frames,
)

#: Every message type a host step sends (`lada.federation.protocol.all_message_types`, which
#: imports the hosts and so torch; a test checks that the two agree), and the hello.
MESSAGE_TYPES = (
    "query.hello",
    "query.setup",
    "evaluate.report",
    "train.crosslm_generate",
    "train.crosslm_generate_lada",
    "train.crosslm_train",
    "train.crosslm_train_lada",
    "train.fedcollm_train",
    "train.fedcollm_train_lada",
    "train.fedcot_train",
    "train.fedcot_train_lada",
    "train.fedmkt_train",
    "train.fedmkt_train_lada",
)
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def uses_worker(context: Context) -> bool:
    """Whether to forward: node config `client-worker` is true, or auto (the default) and this
    process is a one-message `flwr-clientapp` process. Flower's simulation runs the ClientApp in
    long-lived actors that keep imports and parties already: there a worker gains nothing."""
    value = str(context.node_config.get("client-worker", "auto")).strip().lower()
    if value not in ("auto", "true", "false"):
        raise ValueError(f"node config: client-worker must be auto, true or false, got {value!r}")
    if value == "auto":
        return Path(sys.argv[0]).name == "flwr-clientapp"
    return value == "true"


def _seconds(context: Context, key: str, default: float) -> float:
    try:
        value = float(context.node_config.get(key, default))
    except (TypeError, ValueError) as err:
        raise ValueError(f"node config: {key} must be a number of seconds") from err
    if value <= 0:
        raise ValueError(f"node config: {key} must be positive, got {value}")
    return value


def worker_folder() -> Path:
    folder = Path(tempfile.gettempdir()) / f"lada-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def worker_socket(node_id: int) -> Path:
    """The node's worker socket: one per node and per copy of the package (a new app version
    installed elsewhere gets a worker of its own, never one running older code)."""
    code = hashlib.sha256(str(PACKAGE_DIR).encode()).hexdigest()[:12]
    return worker_folder() / f"n{node_id}-{code}.sock"


def _connect(path: Path) -> socket.socket | None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        return None
    return conn


def _start_worker(path: Path, context: Context) -> subprocess.Popen[bytes]:
    idle = _seconds(context, "worker-idle-s", 1800.0)
    env = dict(os.environ)
    # The worker runs this copy of the package (Flower may load the app from an installed FAB).
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PACKAGE_DIR.parent), env.get("PYTHONPATH", "")) if p
    )
    log = path.with_suffix(".log").open("ab")
    command = [
        sys.executable,
        "-m",
        "lada.apps.client_worker",
        "--socket",
        str(path),
        "--parent-pid",
        str(os.getppid()),  # the SuperNode: the worker ends with it
        "--idle-s",
        str(idle),
    ]
    return subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
    )


def connect_worker(context: Context) -> socket.socket:
    """A connection to the node's worker, started first when none listens."""
    path = worker_socket(context.node_id)
    conn = _connect(path)
    if conn is not None:
        return conn
    with path.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one start per node, however many messages wait
        conn = _connect(path)
        if conn is not None:
            return conn
        process = _start_worker(path, context)
        deadline = time.monotonic() + _seconds(context, "worker-start-s", 600.0)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise WorkerError(
                    f"the client worker exited with code {process.returncode} before it "
                    f"listened; see {path.with_suffix('.log')}"
                )
            conn = _connect(path)
            if conn is not None:
                return conn
            time.sleep(0.1)
        process.kill()
        raise WorkerError(f"the client worker did not listen on {path} in time")


def forward(message: Message, context: Context) -> Message:
    """Answer `message` in the node's worker; the node's state comes back with the reply."""
    if not uses_worker(context):
        from lada.apps.client_app import handle  # deferred: this process then needs torch

        return handle(message, context)
    with connect_worker(context) as conn:
        request = [
            header_bytes({}),
            message_to_proto(message).SerializeToString(),
            context_to_proto(context).SerializeToString(),
        ]
        send_frames(conn, request)
        raw_header, content, state = recv_frames(conn, 3)
    header = read_header(raw_header)
    if not header["ok"]:
        raise RuntimeError(f"client step failed: {header['failure']}")
    context.state = recorddict_from_proto(ProtoRecordDict.FromString(state))
    if header["error"] is not None:
        code, reason = header["error"]
        return Message(Error(code=int(code), reason=str(reason)), reply_to=message)
    return Message(recorddict_from_proto(ProtoRecordDict.FromString(content)), reply_to=message)


def make_front_app() -> ClientApp:
    """A `ClientApp` that forwards every host step's message type to the node's worker."""
    client_app = ClientApp()
    register = {"train": client_app.train, "evaluate": client_app.evaluate}
    register["query"] = client_app.query
    for full in MESSAGE_TYPES:
        category, action = full.split(".")
        register[category](action)(forward)
    return client_app


app = make_front_app()
