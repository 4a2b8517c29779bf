"""CrossLM: the LLM writes task items, the SLMs score them, both sides train on the kept ones.

Two exchanges per round:

- generate: the server samples public seed items (with replacement, in proportion to their
  sampling weights) and prompts the LLM with "Q: " plus the seed question's leading non-digit
  text ("legs: ", "gcd(", nothing for plain arithmetic; at most `max_prefix_words` words). The
  LLM samples a continuation at `temperature`, parsed as "question\\nA: path". A generation is a
  valid item only if it has a question, a path with a readable `#### answer` line, and a question
  that differs from every public question and every earlier generation of the round; the
  invalid ones are counted by reason. Valid items take the seed's domain, answer kind and
  choices, and the LLM's own answer (source "generated"). They go to the clients as
  `PublicItems`; each SLM scores every item (`score`: its per-token log-likelihood of the LLM's
  path, or 1/0 for whether its own greedy answer agrees with the LLM's) and replies with
  `ItemScores` only. The server keeps the top `keep_fraction` (ceil) by the clients' mean score.
- train: the server sends the kept items' ids with the LLM's paths (`PublicPaths`; the items
  themselves crossed in "generate"). Each client fine-tunes on its private split, then on the
  kept items with the LLM's paths; the LLM trains on the kept items with its own paths (a
  self-training step). The clients take `budget.client_steps` optimizer steps on the kept
  items per round, the LLM `budget.server_steps`, with and without LaDa (none when nothing
  was kept).

Feedback steers generation: every kept generation adds `steer_boost` to its seed item's sampling
weight (weights start at 1), so seeds whose generations the SLMs found useful are sampled more
in later rounds; `steer_boost = 0` keeps uniform seed sampling.

The LLM must have learned to write questions as well as paths (pretrained with loss on the
question text); an LLM trained on paths only writes few valid items.

With LaDa: in "train", client k calls `receive_with_lada` on the kept items with the LLM's paths
(pair llm->slm_k, candidates = kept items) instead of plain SFT on them, and uploads its own
paths on the kept items; the server calls `receive_with_lada` on each client's paths (pair
slm_k->llm; the pairs share `budget.server_steps`, see `Host.server_lada`) instead of the LLM's
self-training. Generated items have no gold answer independent of the LLM: their `answer` is the
LLM's, so LaDa's correctness gate compares paths against the LLM's own answer there and cannot
certify correctness (and this host has no `correctness_gate` option of its own: it would replace
nothing).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from lada.hosts.base import Exchange, Host
from lada.hosts.config import CrossLMConfig
from lada.hosts.lada_steps import receive_with_lada
from lada.hosts.parties import ClientParty, ServerParty, host_state, step_seed
from lada.hosts.payloads import Empty, Payload, PayloadError, PublicItems, PublicPaths
from lada.hosts.steps import paths_sft, write_public_paths
from lada.models.wrapper import ReasoningModel
from lada.tasks.answers import extract_answer, is_correct
from lada.tasks.holdout import is_reserved
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import ANSWER_MARKER, OPTION_LETTERS, gold_path, render_prompt

GENERATED_SOURCE = "generated"
#: Reasons a generation is not a valid item, in the order they are checked.
INVALID_REASONS = ("no_question", "no_choices", "no_answer", "duplicate", "reserved")

_LEADING_NON_DIGIT = re.compile(r"[^\d]*")
_ANSWER_LINE = re.compile(rf"^[ \t]*{re.escape(ANSWER_MARKER)}[ \t]*(\S[^\n]*)$", re.MULTILINE)
_OPTION = re.compile(rf"\(([{OPTION_LETTERS}])\)\s*(.*?)(?=\s*\([{OPTION_LETTERS}]\)|$)")


# --------------------------------------------------------------------------- payloads
@dataclass
class ItemScores(Payload):
    """A client's scores of the generated items (numbers only, by item id)."""

    kind: ClassVar[str] = "item_scores"
    item_ids: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.item_ids) != len(self.scores):
            raise PayloadError(
                f"item_scores: {len(self.scores)} scores for {len(self.item_ids)} item ids"
            )


# --------------------------------------------------------------------------- generation
def seed_prefix(question: str, max_words: int) -> str:
    """The seed question's leading non-digit text, cut to `max_words` words."""
    prefix = _LEADING_NON_DIGIT.match(question.strip()).group(0)  # type: ignore[union-attr]
    words = prefix.split()
    if len(words) <= max_words:
        return prefix
    return " ".join(words[:max_words]) + " " if max_words else ""


def normalize_question(question: str) -> str:
    """Whitespace-insensitive key for duplicate checks."""
    return " ".join(question.split())


def parse_generated(
    text: str, seed: ReasoningItem, *, item_id: str, known_questions: set[str]
) -> tuple[ReasoningItem | None, str]:
    """An item from the text the LLM wrote after "Q: ", or None with the reason it is invalid.

    Expected text: "question\\n[Options: (A) .. (B) ..\\n]A: steps\\n#### answer\\n". The item
    inherits the seed's domain, answer kind and difficulty; its answer is the one written.
    Returns (item, "valid") or (None, one of `INVALID_REASONS`). `known_questions` holds
    normalised questions that count as duplicates; the caller adds accepted ones.
    """
    head, separator, path = text.partition("\nA:")
    lines = [line for line in head.strip().splitlines() if line.strip()]
    choices: tuple[str, ...] = ()
    if lines and lines[-1].lstrip().startswith("Options:"):
        choices = tuple(c.strip() for _, c in _OPTION.findall(lines.pop().split(":", 1)[1]))
    question = "\n".join(line.strip() for line in lines)
    if not separator or not question:
        return None, "no_question"
    if seed.answer_kind == "option" and len(choices) < 2:
        return None, "no_choices"
    markers = list(_ANSWER_LINE.finditer(path))
    if not markers:
        return None, "no_answer"
    marker = markers[-1]  # the last answer line counts, as in answer extraction
    answer = extract_answer(f"{ANSWER_MARKER} {marker.group(1)}", seed.answer_kind, choices)
    if answer is None:
        return None, "no_answer"
    if normalize_question(question) in known_questions:
        return None, "duplicate"
    rationale = path[: marker.start()]
    item = ReasoningItem(
        id=item_id,
        domain=seed.domain,
        question=question,
        answer=answer,
        answer_kind=seed.answer_kind,
        rationale="\n".join(line.strip() for line in rationale.splitlines() if line.strip()),
        choices=choices if seed.answer_kind == "option" else (),
        difficulty=seed.difficulty,
        source=GENERATED_SOURCE,
        meta={"seed_id": seed.id},
    )
    return item, "valid"


def keep_top(scores: Sequence[float], fraction: float) -> list[int]:
    """Positions of the ceil(fraction * n) highest scores, best first (ties: earlier first)."""
    n = len(scores)
    if n == 0:
        return []
    count = min(n, math.ceil(fraction * n))
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [int(i) for i in order[:count]]


def mean_scores(replies: Mapping[int, ItemScores], item_ids: Sequence[str]) -> np.ndarray:
    """Per item, the mean of the clients' scores; every client must score every item."""
    total = np.zeros(len(item_ids), dtype=np.float64)
    for cid, reply in sorted(replies.items()):
        by_id = dict(zip(reply.item_ids, reply.scores, strict=True))
        missing = [i for i in item_ids if i not in by_id]
        if missing:
            raise PayloadError(
                f"crosslm: client {cid} scored {len(item_ids) - len(missing)} of "
                f"{len(item_ids)} generated items (missing e.g. {missing[:3]})"
            )
        total += np.array([float(by_id[i]) for i in item_ids])
    return total / max(1, len(replies))


def score_items(
    model: ReasoningModel,
    items: Sequence[ReasoningItem],
    how: str,
    *,
    batch_size: int,
    max_new_tokens: int,
) -> list[float]:
    """An SLM's feedback on generated items: likelihood of the LLM's path, or answer agreement."""
    if not items:
        return []
    prompts = [render_prompt(it) for it in items]
    if how == "likelihood":
        paths = [gold_path(it) for it in items]  # the LLM's path: its rationale and answer
        scores = model.sequence_logprobs(prompts, paths, batch_size=batch_size, normalize=True)
        return [float(s) for s in scores]
    if how == "agreement":
        own = model.generate_paths(prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
        return [float(is_correct(path, it)) for path, it in zip(own, items, strict=True)]
    raise ValueError(f"host.score: unknown score {how!r}; expected 'likelihood' or 'agreement'")


# --------------------------------------------------------------------------- the host
@dataclass
class CrossLMServerState:
    """What the CrossLM server keeps between the round's exchanges and across rounds."""

    #: Sampling weight of each public seed item; kept items' seeds gain `steer_boost`.
    seed_weights: dict[str, float] = field(default_factory=dict)
    generated: list[ReasoningItem] = field(default_factory=list)  # this round's valid items
    kept: list[ReasoningItem] = field(default_factory=list)  # those the clients scored best
    llm_paths: PublicPaths | None = None  # the LLM's paths on the kept items


@dataclass
class CrossLMClientState:
    """The items the server generated this round, by id, as the client received them."""

    generated_by_id: dict[str, ReasoningItem] = field(default_factory=dict)


def _llm_paths(state: CrossLMServerState) -> PublicPaths:
    if state.llm_paths is None:
        raise RuntimeError("crosslm: train before generate (no kept items with the LLM's paths)")
    return state.llm_paths


class CrossLM(Host[CrossLMConfig]):
    name: ClassVar[str] = "crosslm"
    exchanges: ClassVar[tuple[str, ...]] = ("generate", "train")

    def round_steps(self) -> dict[str, Exchange]:
        return {
            "generate": Exchange(self.send_generate, self.client_generate, self.receive_generate),
            "train": Exchange(self.send_train, self.client_train, self.receive_train),
        }

    # --------------------------------------------------------------- generate
    def send_generate(
        self, server: ServerParty, round_idx: int, client_ids: list[int]
    ) -> dict[int, Payload]:
        items = self._generate(server, round_idx)
        host_state(server, CrossLMServerState).generated = items
        payload = PublicItems(items=[it.to_dict() for it in items])
        return {cid: payload for cid in client_ids}

    def client_generate(self, client: ClientParty, payload: Payload, round_idx: int) -> Payload:
        if not isinstance(payload, PublicItems):
            raise PayloadError(f"crosslm: generate expects public_items, got {payload.kind}")
        items = [ReasoningItem.from_dict(d) for d in payload.items]
        host_state(client, CrossLMClientState).generated_by_id = {it.id: it for it in items}
        with client.log.phase("scoring"):
            scores = score_items(
                client.model,
                items,
                self.config.score,
                batch_size=self.train.generation_batch_size,
                max_new_tokens=self.train.max_new_tokens,
            )
        return ItemScores(item_ids=[it.id for it in items], scores=scores)

    def receive_generate(
        self, server: ServerParty, replies: dict[int, Payload], round_idx: int
    ) -> None:
        state = host_state(server, CrossLMServerState)
        generated = state.generated
        scores = {cid: r for cid, r in replies.items() if isinstance(r, ItemScores)}
        if len(scores) != len(replies):
            raise PayloadError("crosslm: every client must answer generate with item_scores")
        mean = mean_scores(scores, [it.id for it in generated]) if scores else np.zeros(0)
        positions = keep_top(mean.tolist(), self.config.keep_fraction)
        kept = [generated[i] for i in positions]
        weights = state.seed_weights
        for item in kept:
            weights[item.meta["seed_id"]] += self.config.steer_boost
        server.log.count("kept", len(kept))
        if positions:
            server.log.count("score_mean_generated", float(mean.mean()))
            server.log.count("score_mean_kept", float(mean[positions].mean()))
        prompts = [render_prompt(it) for it in kept]
        paths = [gold_path(it) for it in kept]
        logprobs = server.model.sequence_logprobs(
            prompts, paths, batch_size=self.train.generation_batch_size
        )
        state.kept = kept
        state.llm_paths = PublicPaths(
            sender=server.model.name,
            item_ids=[it.id for it in kept],
            paths=paths,
            logprobs=[float(x) for x in logprobs],
            token_counts=server.model.path_token_counts(paths),
        )

    # ------------------------------------------------------------------ train
    def send_train(
        self, server: ServerParty, round_idx: int, client_ids: list[int]
    ) -> dict[int, Payload]:
        llm_paths = _llm_paths(host_state(server, CrossLMServerState))
        return {cid: llm_paths for cid in client_ids}

    def client_train(self, client: ClientParty, payload: Payload, round_idx: int) -> Payload:
        if not isinstance(payload, PublicPaths):
            raise PayloadError(f"crosslm: train expects public_paths, got {payload.kind}")
        seed = self.train_private(client, round_idx)
        by_id = host_state(client, CrossLMClientState).generated_by_id
        unknown = [i for i in payload.item_ids if i not in by_id]
        if unknown:
            raise PayloadError(f"crosslm: kept items {unknown[:3]} were never sent to this client")
        kept = [by_id[i] for i in payload.item_ids]
        if not self.lada_enabled:
            paths_sft(
                client,
                [render_prompt(it) for it in kept],
                payload.paths,
                steps=self.budget.client_steps,
                batch_size=self.train.batch_size,
                max_nonfinite_skips=self.train.max_nonfinite_skips,
                seed=seed,
                phase="distillation",
            )
            return Empty()
        if not kept:
            return PublicPaths(sender=client.model.name)
        receive_with_lada(
            client,
            payload,
            by_id,
            client.train,
            round_idx=round_idx,
            train=self.train,
            steps=self.budget.client_steps,
            seed=seed,
        )
        return write_public_paths(
            client,
            kept,
            max_new_tokens=self.train.max_new_tokens,
            batch_size=self.train.generation_batch_size,
        )

    def receive_train(
        self, server: ServerParty, replies: dict[int, Payload], round_idx: int
    ) -> None:
        state = host_state(server, CrossLMServerState)
        kept = state.kept
        if not self.lada_enabled:
            llm_paths = _llm_paths(state)
            paths_sft(
                server,
                [render_prompt(it) for it in kept],
                llm_paths.paths,
                steps=self.budget.server_steps,
                batch_size=self.train.batch_size,
                max_nonfinite_skips=self.train.max_nonfinite_skips,
                seed=step_seed(round_idx, 999),
                phase="self_training",
            )
            return
        by_id = {it.id: it for it in kept}
        offers = []
        for cid, reply in sorted(replies.items()):
            if not isinstance(reply, PublicPaths):
                raise PayloadError(f"crosslm: client {cid} answered train with {reply.kind}")
            if not reply.item_ids:
                continue
            unknown = [i for i in reply.item_ids if i not in by_id]
            if unknown:
                raise PayloadError(
                    f"crosslm: client {cid} sent paths on unknown items {unknown[:3]}"
                )
            offers.append((reply, step_seed(round_idx, 1000 + cid)))
        self.server_lada(server, offers, by_id, round_idx)

    # ---------------------------------------------------------------- helpers
    def _generate(self, server: ServerParty, round_idx: int) -> list[ReasoningItem]:
        """The round's valid generated items; invalid generations are counted by reason."""
        pool = server.public_pool
        if not pool:
            return []
        state = host_state(server, CrossLMServerState)
        if not state.seed_weights:
            state.seed_weights = {it.id: 1.0 for it in pool}
        weights = state.seed_weights
        p = np.array([weights[it.id] for it in pool], dtype=np.float64)
        rng = np.random.default_rng(step_seed(round_idx, 17))
        picks = rng.choice(len(pool), size=self.config.generate_per_round, p=p / p.sum())
        seeds = [pool[i] for i in picks]
        prefixes = [seed_prefix(s.question, self.config.max_prefix_words) for s in seeds]
        with server.log.phase("item_generation"):
            texts = server.model.generate_paths(
                ["Q: " + prefix for prefix in prefixes],
                max_new_tokens=self.config.max_new_tokens,
                do_sample=True,
                temperature=self.config.temperature,
                batch_size=self.train.generation_batch_size,
                seed=step_seed(round_idx, 31),
            )
        known = {normalize_question(it.question) for it in pool}
        items = []
        for k, (seed, prefix, text) in enumerate(zip(seeds, prefixes, texts, strict=True)):
            item, verdict = parse_generated(
                prefix + text, seed, item_id=f"gen-r{round_idx}-{k}", known_questions=known
            )
            if item is not None and is_reserved(item.question, self.config.reserved_share):
                item, verdict = None, "reserved"  # a question kept for evaluation only
            server.log.count(f"generated_{verdict}")
            if item is not None:
                known.add(normalize_question(item.question))
                items.append(item)
        server.log.count("generated", len(texts))
        return items
