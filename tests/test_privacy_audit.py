"""The privacy audit finds private texts however they are dressed, and only private texts.

`PayloadAudit.leaks` on hand-built strings (re-spaced and re-cased questions, slices of gold
paths, public texts that share a format with private ones), then a client that leaks on purpose,
caught on the in-process runtime and on the Flower runtime (which records exactly the same).
"""

from __future__ import annotations

import json

import pytest
from flwr.app import ConfigRecord, Error, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from rich.console import Console

from lada.apps.client_app import MALFORMED
from lada.apps.server_app import serve
from lada.experiments.config import validate
from lada.experiments.runner import Runner, private_texts
from lada.experiments.setup import load_split
from lada.federation.records import read_header, to_records
from lada.federation.traffic import (
    PASSAGE_MIN_CHARS,
    QUESTION_MIN_CHARS,
    WINDOW_CHARS,
    PayloadAudit,
    PrivateTexts,
    normalise,
)
from lada.hosts.payloads import Empty, Payload, PublicItems, PublicPaths
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path, render_prompt
from tests.test_end_to_end import tiny_config
from tests.test_flower_runtime import MemoryGrid

QUIET = Console(quiet=True)
INTRO = "Count every animal and the legs each one has, then add them up."


def _item(id: str, question: str, rationale: str, answer: str) -> ReasoningItem:
    return ReasoningItem(id, "legs", question, answer, "numeric", rationale=rationale)


PRIVATE = [
    _item(
        "client0-legs-7",
        "How many legs do 3 spiders and 2 ducks have together?",
        f"{INTRO}\n3 spiders * 8 = 24 legs\n2 ducks * 2 = 4 legs\n24 + 4 = 28",
        "28",
    ),
    _item("client0-gcd-3", "gcd(24, 20)", "24 = 1 * 20 + 4\n20 = 5 * 4 + 0", "4"),
    _item("client1-sum-9", "2 + 2 = ?", "2 + 2 = 4", "4"),
]
PUBLIC = [
    _item(
        "public-legs-1",
        "How many legs do 5 spiders and 1 duck have together?",
        f"{INTRO}\n5 spiders * 8 = 40 legs\n1 duck * 2 = 2 legs\n40 + 2 = 42",
        "42",
    ),
    _item("public-gcd-1", "lcm(24, 20)", "gcd(24, 20) = 4\n24 * 20 / 4 = 120", "120"),
]


def _leaks(*texts: str, private: PrivateTexts | None = None):
    audit = PayloadAudit()
    audit.record_strings("train/up", "public_paths", texts)
    return audit.leaks(private or PrivateTexts.from_items(PRIVATE, PUBLIC))


def _old_rule_flags(text: str, items: list[ReasoningItem]) -> bool:
    """The audit's former rule: equal to a private question, rationale or id, or holding a
    question as `Q: <question>\\n`."""
    texts = {t for it in items for t in (it.id, it.question, it.rationale) if t}
    return text in texts or any(f"Q: {t}\n" in text for t in texts)


def test_thresholds_sit_between_an_answer_line_and_a_few_steps():
    assert len("#### 4") < QUESTION_MIN_CHARS < PASSAGE_MIN_CHARS < WINDOW_CHARS <= 50
    assert normalise("  Q:\tHow  MANY\nlegs? ") == "q: how many legs?"


@pytest.mark.parametrize(
    "text, rule",
    [
        # the question re-spaced and re-cased, bare inside other text
        ("note:  HOW many   LEGS do 3 Spiders\nand 2 ducks have together?  thanks", "question"),
        # a short question, as a prompt
        ("Q: GCD(24,  20)\nA:", "question"),
        # a short question as a whole string (an item record's field)
        ("2 + 2 = ?", "equal"),
        # an id as a whole string
        ("client0-legs-7", "equal"),
        # 50 characters from the middle of a gold path, inside an otherwise normal path
        (" 5 * 8 = 40\n" + gold_path(PRIVATE[0])[60:110] + "\n#### 42\n", "window"),
        # the same slice with its case and line breaks changed
        (" " + gold_path(PRIVATE[0])[60:110].upper().replace(" ", "\n "), "window"),
        # a short gold path, whole, inside a longer string
        ("first 24 = 1 * 20 + 4\n20 = 5 * 4 + 0\n#### 4\n then more", "passage"),
    ],
)
def test_leaks_finds_a_private_text_however_it_is_dressed(text: str, rule: str):
    assert not _old_rule_flags(text, PRIVATE) or rule == "equal"
    [leak] = _leaks(text)
    assert (leak.where, leak.kind, leak.text, leak.rule) == ("train/up", "public_paths", text, rule)
    texts = [t for it in PRIVATE for t in (it.id, it.question, it.rationale, gold_path(it))]
    assert leak.private in {normalise(t) for t in texts}


@pytest.mark.parametrize(
    "text",
    [
        *(t for it in PUBLIC for t in (it.id, it.question, it.rationale, gold_path(it))),
        *(render_prompt(it) + gold_path(it) for it in PUBLIC),
        # the shared 64-character intro is in the public pool too: no evidence of a leak
        f" {INTRO}\n7 spiders * 8 = 56 legs\n#### 56\n",
        # short strings that any path may hold
        "#### 4",
        "4",
        " 2 + 2 = 4\n#### 4\n",
        # a short question inside a public path's computation (not a prompt)
        " gcd(24, 20) = 4\n#### 4\n",
        # a short gold path as part of a longer number
        " 124 = 1 * 20 + 4\n20 = 5 * 4 + 0\n#### 4\n",
        "",
    ],
)
def test_leaks_leaves_public_and_common_texts_alone(text: str):
    assert _leaks(text) == []


def test_a_private_text_the_public_pool_also_holds_is_no_evidence():
    twin = _item("public-twin", PRIVATE[0].question, "other steps\n1 + 1 = 2", "2")
    private = PrivateTexts.from_items(PRIVATE, [*PUBLIC, twin])
    assert _leaks(f"Q: {PRIVATE[0].question}\nA:", private=private) == []
    assert _leaks(gold_path(PRIVATE[0]), private=private)  # its path is still private


def test_leaks_lists_each_leaking_record_once_in_the_order_they_crossed():
    audit = PayloadAudit()
    audit.record("setup/down", PublicItems(items=[it.to_dict() for it in PUBLIC]))
    both = f"Q: {PRIVATE[0].question}\nA:{gold_path(PRIVATE[0])}"  # question and path: one leak
    leaky = PublicPaths(sender="slm_0", item_ids=["a", "b", "c"], paths=["fine", both, both])
    audit.record("train/up", leaky)
    audit.record("evaluate/up", PublicItems(items=[PRIVATE[2].to_dict()]))
    found = [
        (x.where, x.text, x.rule) for x in audit.leaks(PrivateTexts.from_items(PRIVATE, PUBLIC))
    ]
    assert found == [
        ("train/up", both, "question"),
        ("train/up", both, "question"),  # two records, each listed once
        ("evaluate/up", "client1-sum-9", "equal"),
        ("evaluate/up", "2 + 2 = ?", "equal"),  # its rationale and gold path are too short
    ]


def test_a_plain_set_of_strings_is_still_accepted():
    audit = PayloadAudit()
    audit.record_strings("train/up", "public_paths", ["x", "so  GCD(24, 20)  it is", "gcd(24, 20)"])
    assert [x.text for x in audit.leaks({"gcd(24, 20)", ""})] == ["gcd(24, 20)"]
    long = PRIVATE[0].question
    audit.record_strings("train/up", "public_paths", [f"say {long.upper()}!"])
    assert [x.rule for x in audit.leaks({long})] == ["question"]


# ------------------------------------------------------------------ a client that leaks
@pytest.fixture(autouse=True)
def _task_identity():
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 7, 1
    yield


def _private(split) -> PrivateTexts:
    every = [it for share in split.clients for it in (*share.train, *share.test)]
    return PrivateTexts.from_items(every, split.public_pool)


def _leaky_reply(split) -> PublicPaths:
    """Client 0's train reply with a leak in two of its three paths: 50 characters of a private
    test item's gold path, and a private train item's question re-spaced and re-cased."""
    mine, public = split.clients[0], split.public_pool
    path = normalise(gold_path(max(mine.test, key=lambda it: len(normalise(gold_path(it))))))
    question = max(mine.train, key=lambda it: len(it.question)).question
    assert len(path) >= 50 and len(normalise(question)) >= QUESTION_MIN_CHARS
    paths = [
        gold_path(public[0]),
        f" {gold_path(public[1]).strip()}\n{path[:50]}\n#### 1\n",
        f" so   {'  '.join(question.upper().split())}\n#### 7\n",
    ]
    return PublicPaths(sender="slm_0", item_ids=[it.id for it in public[:3]], paths=paths)


def _check_caught(audit: PayloadAudit, split, reply: PublicPaths) -> None:
    leaks = audit.leaks(_private(split))
    assert [x[:3] for x in leaks] == [
        ("train/up", "public_paths", reply.paths[1]),
        ("train/up", "public_paths", reply.paths[2]),
    ]
    assert [x.rule for x in leaks] == ["window", "question"]
    every = [it for share in split.clients for it in (*share.train, *share.test)]
    assert not any(_old_rule_flags(x.text, every) for x in leaks)  # the former rule missed both


@pytest.fixture(scope="module")
def inprocess_run(tmp_path_factory):
    """A FedCoT round whose client 0 sends `_leaky_reply` instead of its (empty) train reply."""
    # No checkpoints: they would pickle the host, leaking step and all.
    data = tiny_config(tmp_path_factory.mktemp("leak"), "fedcot", False)
    config = validate({**data, "checkpoint": {"enabled": False}})
    split = load_split(config)
    reply = _leaky_reply(split)
    runner = Runner(config, audit=True, console=QUIET)
    host = runner.federation.host
    step = host.client_step

    def leaking_step(exchange, client, payload, round_idx) -> Payload:
        out = step(exchange, client, payload, round_idx)
        if exchange == "train" and client.client_id == 0:
            assert isinstance(out, Empty)
            return reply
        return out

    host.client_step = leaking_step
    return config, split, reply, runner.run()


def test_a_leaking_client_is_caught_on_the_inprocess_runtime(inprocess_run):
    config, split, reply, result = inprocess_run
    private = private_texts(result.federation)
    # Every client's train and test questions and gold paths are private.
    assert private == _private(split)
    every = [it for share in split.clients for it in (*share.train, *share.test)]
    assert {gold_path(it) for it in every} | {it.question for it in every} <= (
        private.passages | private.questions
    )
    _check_caught(result.audit, split, reply)


class LeakingGrid(MemoryGrid):
    """Node 100 (client 0) answers the train step with `reply`, when given; node 101 (client 1)
    answers it with `garble`, when given, in a malformed record ("rejected") or as the reason of
    an error reply ("error")."""

    def __init__(
        self, n_nodes: int, reply: PublicPaths | None = None, garble: str = "", how: str = ""
    ) -> None:
        super().__init__(n_nodes)
        self.reply, self.garble, self.how = reply, garble, how

    def send_and_receive(self, messages, *, timeout=None):
        out = []
        for message in messages:
            for reply in super().send_and_receive([message], timeout=timeout):
                out.append(self._dress(message, reply))
        return out

    def _dress(self, message: Message, reply: Message) -> Message:
        if not message.metadata.message_type.startswith("train.") or reply.has_error():
            return reply
        node = message.metadata.dst_node_id
        if node == 100 and self.reply is not None:
            header = read_header(message.content)
            return Message(to_records(self.reply, "train", header.round_idx), reply_to=message)
        if node == 101 and self.how == "error":
            return Message(Error(code=MALFORMED, reason=self.garble), reply_to=message)
        if node == 101 and self.how == "rejected":
            fields = ConfigRecord({"paths": json.dumps([self.garble])})
            content = RecordDict({"header": ConfigRecord({"kind": "x"}), "fields": fields})
            return Message(content, reply_to=message)
        return reply


def test_the_flower_runtime_records_what_the_inprocess_one_does_and_catches_the_leak(
    inprocess_run,
):
    config, split, reply, inprocess = inprocess_run
    grid = LeakingGrid(2, reply)
    result = serve(grid, config, console=QUIET, wait_for_clients_s=1, audit=True)
    assert result.audit.records and sorted(result.audit.records) == sorted(inprocess.audit.records)
    _check_caught(result.audit, split, reply)


@pytest.mark.parametrize("how", ["rejected", "error"])
def test_the_flower_runtime_audits_a_reply_it_rejects_and_an_error_reason(tmp_path, how: str):
    config = validate(tiny_config(tmp_path, "fedcot", False, federation={"min_clients": 1}))
    split = load_split(config)
    garble = f"look: {gold_path(split.clients[1].test[0])}"
    grid = LeakingGrid(2, garble=garble, how=how)
    result = serve(grid, config, console=QUIET, wait_for_clients_s=1, audit=True)
    # Client 1 was dropped, but what it sent had crossed.
    assert result.summary["final"]["slm_accuracy"].keys() == {"0"}
    leaks = result.audit.leaks(_private(split))
    assert [x[:3] for x in leaks] == [("train/up", how, garble)]
