"""The deployment's light ClientApp front and its long-lived worker answer as the ClientApp."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from rich.console import Console

from lada.apps import client_front
from lada.apps.client_app import MALFORMED, handle
from lada.apps.server_app import serve
from lada.experiments.config import validate
from lada.federation.protocol import all_message_types
from tests.test_end_to_end import tiny_config
from tests.test_flower_runtime import MemoryGrid

QUIET = Console(quiet=True)


class ForwardingGrid(MemoryGrid):
    """A MemoryGrid whose nodes answer through the front (and so through the worker)."""

    def __init__(self, n_nodes: int) -> None:
        super().__init__(n_nodes)
        for context in self.contexts.values():
            context.node_config = {**context.node_config, "client-worker": "true"}

    def send_and_receive(self, messages, *, timeout=None):
        return [client_front.forward(m, self.contexts[m.metadata.dst_node_id]) for m in messages]


@pytest.fixture(autouse=True)
def _task_identity():
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 7, 1
    yield


@pytest.fixture
def supernode(monkeypatch):
    """A stand-in SuperNode process (the worker's parent) and a short private socket folder."""
    folder = Path(tempfile.mkdtemp(prefix="lw"))
    monkeypatch.setattr(client_front, "worker_folder", lambda: folder)
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    monkeypatch.setattr(client_front.os, "getppid", lambda: parent.pid)
    yield parent, folder
    parent.kill()
    parent.wait()
    shutil.rmtree(folder, ignore_errors=True)


def _records(run_dir: Path) -> list[dict]:
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        record.pop("wall_seconds")
        record["server_log"].pop("timings", None)
        for client in record["clients"].values():
            client["log"].pop("timings", None)
        record["traffic"].pop("total_bytes")
        record["traffic"]["bytes"].pop("evaluate/up/eval_report")  # carries the timings
        out.append(record)
    return out


def test_the_front_imports_no_torch_and_registers_every_host_message_type() -> None:
    code = "import sys, lada.apps.client_front; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert set(client_front.MESSAGE_TYPES) == {"query.hello", *all_message_types()}


@pytest.mark.slow
def test_a_run_through_the_worker_matches_the_clientapp_and_survives_a_killed_worker(
    tmp_path, supernode
) -> None:
    parent, folder = supernode
    data = tiny_config(tmp_path, "fedcot", True, rounds=2)
    data["output_dir"] = str(tmp_path / "direct")
    direct = serve(MemoryGrid(2), validate(data), console=QUIET, wait_for_clients_s=1)

    data["output_dir"] = str(tmp_path / "worker")
    grid = ForwardingGrid(2)
    killed: list[int] = []
    forward = client_front.forward

    def forward_then_kill_after_round_1(message, context):
        reply = forward(message, context)
        if message.metadata.message_type == "evaluate.report" and not killed:
            if message.content["header"]["round"] == 1:  # the workers die between rounds
                for pid_file in folder.glob("*.pid"):
                    pid = int(pid_file.read_text())
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                for sock in folder.glob("*.sock"):  # gone for good before the next message
                    while (conn := client_front._connect(sock)) is not None:
                        conn.close()
                        time.sleep(0.05)
        return reply

    grid.send_and_receive = lambda messages, timeout=None: [  # type: ignore[method-assign]
        forward_then_kill_after_round_1(m, grid.contexts[m.metadata.dst_node_id]) for m in messages
    ]
    through_worker = serve(grid, validate(data), console=QUIET, wait_for_clients_s=1)

    assert len(killed) == 2  # one worker per node, both killed after round 1, both restarted
    assert _records(through_worker.run_dir) == _records(direct.run_dir)
    assert through_worker.summary["final"] == direct.summary["final"]
    assert len(list(folder.glob("*.sock"))) == 2

    first = next(folder.glob("*.pid"))  # stopped politely, a worker leaves nothing behind
    os.kill(int(first.read_text()), signal.SIGTERM)
    deadline = time.monotonic() + 20
    while first.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not first.exists() and not first.with_suffix(".sock").exists()

    parent.kill()  # the SuperNode is gone: its workers end and take their sockets with them
    deadline = time.monotonic() + 20
    while list(folder.glob("*.sock")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert list(folder.glob("*.sock")) == []


@pytest.mark.slow
def test_the_worker_answers_a_malformed_message_as_the_clientapp_does(tmp_path, supernode):
    config = validate(tiny_config(tmp_path, "fedcot", True, rounds=1))
    from lada.federation.protocol import HELLO, hello_content

    contexts = [
        Context(
            run_id=7,
            node_id=300,
            node_config={"partition-id": 0, "num-partitions": 1},
            state=RecordDict(),
            run_config={},
        )
        for _ in range(2)
    ]
    direct, forwarded = contexts
    forwarded.node_config = {
        **forwarded.node_config,
        "state-dir": str(tmp_path / "fwd"),
        "client-worker": "true",
    }
    hello = Message(hello_content(config.model_dump_json()), dst_node_id=300, message_type=HELLO)
    assert not handle(hello, direct).has_error()
    reply = client_front.forward(hello, forwarded)
    assert not reply.has_error()
    assert reply.metadata.reply_to_message_id == hello.metadata.message_id
    assert forwarded.state.config_records["lada"]["step"] == 1  # the node's state came back

    bad = RecordDict({"header": ConfigRecord({"kind": "nope", "exchange": "train", "round": 1})})
    message = Message(bad, dst_node_id=300, message_type="train.fedcot_train")
    expected, got = handle(message, direct), client_front.forward(message, forwarded)
    assert got.has_error() and got.error.code == MALFORMED
    assert got.error.reason == expected.error.reason


def test_bad_worker_settings_in_the_node_config_are_named() -> None:
    context = Context(
        run_id=1,
        node_id=1,
        node_config={"client-worker": "maybe"},
        state=RecordDict(),
        run_config={},
    )
    message = Message(RecordDict(), dst_node_id=1, message_type="query.setup")
    with pytest.raises(ValueError, match="client-worker must be auto, true or false"):
        client_front.forward(message, context)
    context.node_config = {"worker-idle-s": "-1"}
    with pytest.raises(ValueError, match="worker-idle-s must be positive"):
        client_front._start_worker(Path("/nonexistent/x.sock"), context)


def test_by_default_only_a_one_message_clientapp_process_forwards(monkeypatch) -> None:
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    monkeypatch.setattr(sys, "argv", ["/venv/bin/flwr-clientapp", "--token", "x"])
    assert client_front.uses_worker(context)
    monkeypatch.setattr(sys, "argv", ["/venv/lib/ray/_private/workers/default_worker.py"])
    assert not client_front.uses_worker(context)  # a simulation actor answers in process
    context.node_config = {"client-worker": "true"}
    assert client_front.uses_worker(context)
    context.node_config = {"client-worker": "false"}
    monkeypatch.setattr(sys, "argv", ["/venv/bin/flwr-clientapp"])
    assert not client_front.uses_worker(context)
