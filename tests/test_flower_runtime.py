"""The Flower runtime's failure handling, over an in-memory grid that runs the real ClientApp."""

from __future__ import annotations

import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from rich.console import Console

from lada.apps.client_app import MALFORMED, handle
from lada.apps.server_app import serve
from lada.experiments.config import validate
from lada.federation.flower_runtime import FederationError
from tests.test_end_to_end import tiny_config


class MemoryGrid:
    """Delivers messages to `handle` in this process; some nodes can be made to fail."""

    def __init__(self, n_nodes: int) -> None:
        self.contexts = {
            100 + i: Context(
                run_id=7,
                node_id=100 + i,
                node_config={"partition-id": i, "num-partitions": n_nodes},
                state=RecordDict(),
                run_config={},
            )
            for i in range(n_nodes)
        }
        self.dead: set[int] = set()  # never answer
        self.garbling: set[int] = set()  # answer steps after the hello with a malformed record
        self.die_after: dict[int, str] = {}  # node -> message type after which it dies
        self.seen: list[tuple[int, str]] = []
        self._pushed = 0
        self._replies: list[Message] = []

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def push_messages(self, messages):
        """Deliver at once; the replies wait for `pull_messages` (the SuperLink's ids)."""
        messages = list(messages)
        for message in messages:
            self._pushed += 1
            message.metadata.__dict__["_message_id"] = f"m{self._pushed}"
        self._replies.extend(self.send_and_receive(messages))
        return [m.metadata.message_id for m in messages]

    def pull_messages(self, message_ids):
        wanted = set(message_ids)
        out = [r for r in self._replies if r.metadata.reply_to_message_id in wanted]
        self._replies = [r for r in self._replies if r not in out]
        return out

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            kind = message.metadata.message_type
            self.seen.append((node, kind))
            if node in self.dead:
                continue
            if self.die_after.get(node) == kind:
                self.dead.add(node)
            if node in self.garbling and kind != "query.hello":
                content = RecordDict({"header": ConfigRecord({"kind": "public_paths"})})
                replies.append(Message(content, reply_to=message))
                continue
            replies.append(handle(message, self.contexts[node]))
        return replies


@pytest.fixture(autouse=True)
def _task_identity():
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 7, 1
    yield


def _config(tmp_path, n_clients: int, **federation):
    data = tiny_config(tmp_path, "fedcot", True, rounds=1)
    data["data"]["split"]["n_clients"] = n_clients
    # A dead node never answers: each step waits this long for it, polling every 0.05 s.
    data["federation"] = {"round_timeout_s": 1.0, "reply_poll_s": 0.05, **federation}
    return validate(data)


def test_a_client_lost_mid_round_is_logged_and_the_round_ends_with_the_others(tmp_path):
    grid = MemoryGrid(3)
    grid.die_after[102] = "evaluate.report"  # answers round 0, silent from round 1 on
    console = Console(record=True, width=200)
    result = serve(grid, _config(tmp_path, 3, min_clients=2), console=console, wait_for_clients_s=1)

    assert set(result.summary["final"]["slm_accuracy"]) == {"0", "1"}
    assert set(result.summary["start"]["slm_accuracy"]) == {"0", "1", "2"}
    assert "lost client 2 in train" in console.export_text()
    train_messages = [n for n, kind in grid.seen if kind == "train.fedcot_train_lada"]
    assert sorted(train_messages) == [100, 101, 102]
    evaluated = [n for n, kind in grid.seen if kind == "evaluate.report"]
    assert evaluated.count(102) == 1  # not asked again once lost


def test_too_few_clients_stop_the_run_with_a_clear_error(tmp_path):
    grid = MemoryGrid(2)
    grid.die_after[101] = "query.setup"
    with pytest.raises(FederationError, match="1 of 2 clients answered.*min_clients=2"):
        serve(grid, _config(tmp_path, 2), console=Console(quiet=True), wait_for_clients_s=1)


def test_a_malformed_reply_is_rejected_with_its_reason_and_the_server_goes_on(tmp_path):
    grid = MemoryGrid(2)
    grid.garbling.add(101)
    console = Console(record=True, width=200)
    result = serve(grid, _config(tmp_path, 2, min_clients=1), console=console, wait_for_clients_s=1)
    text = console.export_text()
    assert "lost client 1 in setup: rejected reply" in text and "malformed 'header'" in text
    assert set(result.summary["final"]["slm_accuracy"]) == {"0"}


def test_the_client_answers_a_malformed_message_with_an_error_and_keeps_its_state(tmp_path):
    grid = MemoryGrid(1)
    config = _config(tmp_path, 1)
    context = grid.contexts[100]
    from lada.federation.protocol import HELLO, hello_content

    hello = Message(hello_content(config.model_dump_json()), dst_node_id=100, message_type=HELLO)
    assert not handle(hello, context).has_error()
    step = context.state.config_records["lada"]["step"]

    bad = [
        RecordDict(),  # no header
        RecordDict({"header": ConfigRecord({"kind": "nope", "exchange": "train", "round": 1})}),
        RecordDict({"header": ConfigRecord({"kind": "empty", "exchange": "x", "round": "one"})}),
    ]
    for content in bad:
        reply = handle(
            Message(content, dst_node_id=100, message_type="train.fedcot_train"), context
        )
        assert reply.has_error() and reply.error.code == MALFORMED
        assert reply.error.reason.startswith("malformed:")
    assert context.state.config_records["lada"]["step"] == step  # nothing was applied
