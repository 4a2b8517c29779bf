"""`LadaPlugin`: the object every host calls to add LaDa to its rounds."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lada.method.config import LadaConfig
from lada.method.contrastive import (
    DistillBatch,
    LossParts,
    PairLogprobs,
    distillation_loss,
    mean_nll,
    path_statistics,
    select_logprobs,
)
from lada.method.features import candidate_text, embed_texts, local_centroid
from lada.method.filter import FilterChoice, FilterFit, LearnabilityFilter
from lada.method.pairs import DistillPair, PairReport, build_pairs
from lada.method.receiver import Receiver
from lada.method.rewards import (
    ItemMeasures,
    ItemRewardKind,
    batch_value,
    finite_rows,
    item_reward_kind,
    item_term,
    learnability_gap,
    mix,
    relative_decrease,
)
from lada.method.rho_loss import IrreducibleLossModel, copy_state, path_losses, rho_scores
from lada.method.selection import matched_count, random_select, subset_select, top_count
from lada.models.guards import CountSink, NonFiniteGuard
from lada.models.training import TrainUsage, length_bucketed_batches, sequence_tokens
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import render_prompt

STATE_FORMAT = 1

LocalData = Sequence[str] | np.ndarray | None

#: Round-log counter of selections where the filter chose nothing from a non-empty offer.
EMPTY_SELECTION_COUNTER = "empty_selections"
#: Round-log counter of items whose reward was not finite (left out of the filter update).
NONFINITE_REWARD_COUNTER = "nonfinite_rewards_skipped"


def _finite_mean(values: np.ndarray) -> float:
    """Mean over the finite entries (NaN when there are none), for logged summaries."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


class EmptySelectionError(RuntimeError):
    """The filter selected nothing and `LadaConfig.empty_selection` is 'error'."""


def pair_name(sender: str, receiver: str) -> str:
    """Key of a directed pair, e.g. `pair_name('llm', 'slm_0') == 'llm->slm_0'`."""
    return f"{sender}->{receiver}"


@dataclass(frozen=True)
class Candidate:
    """A public item offered to the receiver with the sender's path for it.

    `sender_logprob` is the sender's own log p(path | prompt), summed over tokens (per-token
    mean when `normalize_logprobs` is on); only the 'gap' item reward needs it.
    """

    item: ReasoningItem
    path: str
    sender_logprob: float | None = None


@dataclass(frozen=True)
class Selection:
    """What the filter chose this round, with the features needed to learn from the outcome.

    `strategy` is the filter's (see `FilterChoice`), or 'empty' when nothing was offered; when
    the filter chose nothing from a non-empty offer it gets the suffix '+empty_top_k' or
    '+empty_skip' of the `LadaConfig.empty_selection` fallback that was applied.
    """

    pair: str
    round_idx: int
    candidates: list[Candidate]  # the selected candidates, best first
    indices: np.ndarray  # their positions in the offered list
    features: np.ndarray  # their feature rows, as the receiver saw them at selection time
    scores: np.ndarray | None  # filter scores of every offered candidate (None when unscored)
    strategy: str
    n_offered: int
    #: Numbers the selection mode measured on the way (count asked for, oracle matches,
    #: RHO-LOSS losses), for the selection record.
    stats: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.candidates)


@dataclass
class DistillBatchSet:
    """The round's training pairs with everything measured before training started."""

    pair: str
    round_idx: int
    pairs: list[DistillPair]
    kept: np.ndarray  # positions in `Selection.candidates` of the items that got a pair
    ref: PairLogprobs  # reference log-probs of positives and negatives (config normalisation)
    ref_losses: np.ndarray  # per-item token-mean NLL of the positive before training
    gap: np.ndarray | None  # the learnability gap, when the item reward reads it (`needs_gap`)
    report: PairReport = field(default_factory=PairReport)

    def __len__(self) -> int:
        return len(self.pairs)

    def batches(self, batch_size: int, *, seed: int) -> Iterator[DistillBatch]:
        """One shuffled pass over the pairs in minibatches of `batch_size`, bucketed by length.

        A minibatch forwards its positives and negatives as one padded batch, so pairs of
        similar length go together (`length_bucketed_batches`: shuffled, sorted by length
        within pools of a few batches, batches shuffled again); with random batches about a
        third of the distillation's forward passes went to padding.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        lengths = [len(p.prompt) + max(len(p.positive), len(p.negative)) for p in self.pairs]
        rng = np.random.default_rng(seed)
        for batch in length_bucketed_batches(lengths, batch_size, rng):
            rows = np.asarray(batch, dtype=np.int64)
            picked = [self.pairs[i] for i in rows]
            index = torch.as_tensor(rows, dtype=torch.long)
            yield DistillBatch(
                prompts=tuple(p.prompt for p in picked),
                positives=tuple(p.positive for p in picked),
                negatives=tuple(p.negative for p in picked),
                ref=PairLogprobs(self.ref.positive[index], self.ref.negative[index]),
            )


@dataclass(frozen=True)
class RoundRewards:
    """The rewards a round produced for one pair, and the filter update they drove."""

    pair: str
    round_idx: int
    item_ids: list[str]
    rewards: np.ndarray
    r_item: np.ndarray
    r_batch: float
    b_before: float
    b_after: float
    fit: FilterFit | None
    #: Items left out of the filter update because a value their reward needs was not finite.
    nonfinite_skipped: int = 0

    def summary(self) -> dict[str, float]:
        mean = float(self.rewards.mean()) if len(self.rewards) else float("nan")
        return {
            "n": float(len(self.rewards)),
            "reward_mean": mean,
            "r_batch": self.r_batch,
            "b_before": self.b_before,
            "b_after": self.b_after,
            "nonfinite_skipped": float(self.nonfinite_skipped),
        }


def _no_rewards(
    selection: Selection, r_batch: float, b_before: float, b_after: float, skipped: int
) -> RoundRewards:
    """A round whose rewards could not be computed: nothing learned, the filter unchanged."""
    empty = np.zeros(0)
    return RoundRewards(
        pair=selection.pair,
        round_idx=selection.round_idx,
        item_ids=[],
        rewards=empty,
        r_item=empty,
        r_batch=r_batch,
        b_before=b_before,
        b_after=b_after,
        fit=None,
        nonfinite_skipped=skipped,
    )


def negative_token_cap(config: LadaConfig, host_limit: int | None) -> int:
    """The token cap of the receiver's own paths: the config's override, else the host's limit.

    Both paths of a pair should be cut by the same limit, or the shorter-capped one is more
    often unfinished and the contrast partly measures the cap.
    """
    if host_limit is not None and host_limit < 1:
        raise ValueError(f"max_new_tokens: must be >= 1 or None, got {host_limit}")
    cap = config.negative_max_new_tokens
    if cap is None:
        cap = host_limit
    if cap is None:
        raise ValueError(
            "negative_max_new_tokens: None means the host's limit on the sender's paths, but "
            "prepare got no max_new_tokens; pass the host's limit or set the field"
        )
    return cap


class LadaPlugin:
    """LaDa as a plug-in: which public items a receiver trains on, and the loss it uses on them.

    One instance lives on each receiving side (on client k for 'llm->slm_k'; on the server for
    every 'slm_k->llm') and holds one `LearnabilityFilter` per directed pair it receives on. It
    needs nothing private from any other party: candidates are public items with the sender's
    paths, and the only local information used is the receiver's own local-data summary (an
    embedding centroid) which never leaves the receiver's side.

    A host calls four hooks per round and pair; a host that never calls them behaves exactly as
    the original framework:

    1. `select(receiver, candidates, pair=..., local_texts_or_embedding=..., round_idx=...,
       budget=...) -> Selection`: featurises the candidates with the receiver, then picks them
       (round 1: K-means clusters near the local centroid; later: f1 + w*f2 scores).
    2. `prepare(receiver, selection, max_new_tokens=...) -> DistillBatchSet`: the receiver
       writes its own paths (to the sender's length limit), the correctness gate forms
       positive/negative pairs, and the reference log-probs (the receiver at the start of the
       round) are recorded.
    3. `loss(receiver, batch) -> LossParts`: L_SFT + lambda * L_CD for one minibatch from
       `DistillBatchSet.batches`; the host backpropagates `parts.total` (or calls `fit`).
    4. `observe(receiver, selection, batch_set) -> RoundRewards`: after training, the loss
       change becomes rewards and the pair's filter learns from them.

    `state_dict`/`load_state_dict` (and `save`/`load`) carry all filters and reward baselines,
    and the RHO-LOSS irreducible-loss models of `selection_mode='rho_loss'`.
    """

    def __init__(self, config: LadaConfig | None = None, *, device: str = "cpu") -> None:
        self.config = config or LadaConfig()
        self.device = device
        self.filters: dict[str, LearnabilityFilter] = {}
        #: B measured after the last round's training, per pair ('previous_round' baseline).
        self.previous_b: dict[str, float] = {}
        #: RHO-LOSS irreducible-loss model per pair ('rho_loss'), trained at its first selection.
        self.irreducible: dict[str, IrreducibleLossModel] = {}
        #: Restored IL states waiting for a receiver to be rebuilt beside (see `load_state_dict`).
        self._irreducible_states: dict[str, dict[str, Any]] = {}

    def filter(self, pair: str) -> LearnabilityFilter:
        """The filter of a directed pair (created on first use)."""
        if pair not in self.filters:
            self.filters[pair] = LearnabilityFilter(self.config, name=pair, device=self.device)
        return self.filters[pair]

    # ------------------------------------------------------------------ hook 1
    def select(
        self,
        receiver: Receiver,
        candidates: Sequence[Candidate],
        *,
        pair: str,
        local_texts_or_embedding: LocalData = None,
        round_idx: int = 0,
        budget: int | None = None,
        log: CountSink | None = None,
        local_items: Sequence[ReasoningItem] | None = None,
    ) -> Selection:
        """Score the offered candidates for this receiver and pick this round's items.

        `local_texts_or_embedding`: the receiver's own local texts (embedded here), their
        embeddings [N, H] or centroid [H]; used only in round 1. A receiver without local data
        of its own (the server LLM) passes None, and round 1 then takes a share of every
        cluster. `budget=None` means `config.budget`. When the filter selects nothing from a
        non-empty offer, `config.empty_selection` decides, and `log` counts it.

        `local_items`: the receiver's own local items, needed by 'oracle' (their domains and
        levels) and 'rho_loss' (its irreducible-loss model trains on them); both stop with an
        error for a receiver without local data of its own. With `config.match_counts`, modes
        'random', 'oracle' and 'rho_loss' take the count given for this pair and `round_idx`
        (rounds count from 1); a count of 0 takes nothing, without the empty-selection fallback.
        An empty offer needs no count.
        """
        if budget is not None and budget < 1:
            raise ValueError(f"budget: must be >= 1 or None, got {budget}")
        candidates = list(candidates)
        filt = self.filter(pair)
        if not candidates:
            return Selection(
                pair,
                round_idx,
                [],
                np.zeros(0, dtype=np.int64),
                np.zeros((0, filt.in_dim or 0), dtype=np.float32),
                None,
                "empty",
                0,
            )
        count = None  # looked up before any model pass, so a missing entry fails fast
        if self.config.match_counts is not None:
            count = matched_count(self.config.match_counts, pair, round_idx)
        texts = [candidate_text(c.item, c.path) for c in candidates]
        embeddings = embed_texts(receiver, texts, batch_size=self.config.inference_batch_size)
        features = filt.featurize(embeddings)
        mode = self.config.selection_mode
        stats: dict[str, float] = {} if count is None else {"match_count": float(count)}
        if mode == "oracle":
            choice = self._oracle_choice(filt, candidates, local_items, budget, count, pair, stats)
        elif mode == "rho_loss":
            choice = self._rho_choice(
                receiver, candidates, local_items, budget, count, pair, stats, log
            )
        else:
            centroid = None
            round1 = mode in ("lada", "exploit_only") and not filt.is_trained
            if round1 and local_texts_or_embedding is not None:
                centroid = self._centroid(receiver, local_texts_or_embedding)
            choice = filt.choose(features, budget=budget, local_centroid=centroid, count=count)
        if len(choice.indices) == 0 and count != 0:
            if log is not None:
                log.count(EMPTY_SELECTION_COUNTER)
            choice = self._empty_fallback(
                filt, choice, len(candidates), budget, pair=pair, round_idx=round_idx
            )
        return Selection(
            pair=pair,
            round_idx=round_idx,
            candidates=[candidates[i] for i in choice.indices],
            indices=choice.indices,
            features=features[choice.indices],
            scores=choice.scores,
            strategy=choice.strategy,
            n_offered=len(candidates),
            stats=stats,
        )

    # ------------------------------------------------------------------ hook 2
    def prepare(
        self, receiver: Receiver, selection: Selection, *, max_new_tokens: int | None = None
    ) -> DistillBatchSet:
        """Receiver's own paths, gated pairs, and reference log-probs before any update.

        `max_new_tokens` is the host's cap on the sender's paths; the receiver's own paths get
        the same cap unless `config.negative_max_new_tokens` sets one, so that a pair's two paths
        are cut by the same limit.
        """
        config = self.config
        cap = negative_token_cap(config, max_new_tokens)
        items = [c.item for c in selection.candidates]
        prompts = [render_prompt(item) for item in items]
        receiver_paths = (
            receiver.generate_paths(
                prompts,
                max_new_tokens=cap,
                do_sample=config.negative_do_sample,
                temperature=config.negative_temperature,
                batch_size=config.inference_batch_size,
                seed=config.seed + selection.round_idx,
            )
            if prompts
            else []
        )
        sender_paths = [c.path for c in selection.candidates]
        pairs, kept, report = build_pairs(items, sender_paths, receiver_paths, config)
        n = len(pairs)
        totals, counts = path_statistics(
            receiver,
            [p.prompt for p in pairs] * 2,
            [p.positive for p in pairs] + [p.negative for p in pairs],
            batch_size=config.inference_batch_size,
        )
        logprobs = select_logprobs(totals, counts, config.normalize_logprobs)
        ref = PairLogprobs(
            torch.as_tensor(logprobs[:n], dtype=torch.float64),
            torch.as_tensor(logprobs[n:], dtype=torch.float64),
        )
        gap = None
        if item_reward_kind(config.item_reward).needs_gap:
            gap = self._gap(receiver, selection, pairs, kept, logprobs[:n])
        return DistillBatchSet(
            pair=selection.pair,
            round_idx=selection.round_idx,
            pairs=pairs,
            kept=np.asarray(kept, dtype=np.int64),
            ref=ref,
            ref_losses=mean_nll(totals[:n], counts[:n]),
            gap=gap,
            report=report,
        )

    # ------------------------------------------------------------------ hook 3
    def loss(self, receiver: Receiver, batch: DistillBatch) -> LossParts:
        """L_SFT + lambda * L_CD on one minibatch (one forward pass for y+ and y-)."""
        return distillation_loss(receiver, batch, batch.ref, self.config)

    def fit(
        self,
        receiver: Receiver,
        batch_set: DistillBatchSet,
        *,
        epochs: int | None = None,
        steps: int | None = None,
        batch_size: int,
        seed: int,
        log: CountSink | None = None,
        usage: TrainUsage | None = None,
    ) -> list[dict[str, float]]:
        """Convenience loop for hosts without their own: `loss` + `receiver.train_step`.

        Give exactly one of `epochs` (passes over the pairs) or `steps`: exactly that many
        optimizer steps whatever the number of pairs (the round's training budget), cycling
        through passes reshuffled with `seed + pass`; no pairs take no steps. A batch with a
        non-finite loss is skipped (counted in `log`, left out of the history, no step used up);
        more than `config.max_nonfinite_skips` in one call raise `NonFiniteLossError`.
        With `usage` (`lada.models.training.TrainUsage`), each step adds one step and the tokens
        its forward pass processed with a gradient: the prompt+positive and the prompt+negative
        sequences (the positives only when `cd_weight` is 0, as `loss` then scores only them).
        """
        if (epochs is None) == (steps is None):
            raise ValueError(f"fit: give exactly one of epochs or steps ({epochs=}, {steps=})")
        guard = NonFiniteGuard(self.config.max_nonfinite_skips, log=log)
        history: list[dict[str, float]] = []
        n_passes = epochs if epochs is not None else (1 if len(batch_set) else 0)
        done = 0
        while done < n_passes:
            for batch in batch_set.batches(batch_size, seed=seed + done):
                if steps is not None and len(history) >= steps:
                    return history
                parts = self.loss(receiver, batch)
                if not guard.check(parts.total, f"distillation {batch_set.pair}"):
                    continue
                receiver.train_step(parts.total)
                history.append(parts.as_floats())
                if usage is not None:
                    prompts, paths = list(batch.prompts), list(batch.positives)
                    if self.config.cd_weight > 0:
                        prompts, paths = prompts * 2, paths + list(batch.negatives)
                    usage.add(1, sum(sequence_tokens(receiver, prompts, paths)))
            done += 1
            if steps is not None and len(history) < steps:
                n_passes = done + 1  # not there yet: one more reshuffled pass
        return history

    # ------------------------------------------------------------------ hook 4
    def observe(
        self,
        receiver: Receiver,
        selection: Selection,
        batch_set: DistillBatchSet,
        *,
        log: CountSink | None = None,
    ) -> RoundRewards:
        """Turn the receiver's loss change on the trained items into rewards; update the filter.

        Sign convention: a falling loss gives a positive reward (see `lada.method.rewards`).
        An item whose reward would not be finite (a non-finite loss or log-prob) is left out of
        the update and counted in `log`; more than `config.max_nonfinite_skips` such items, or
        a non-finite batch term, raise `NonFiniteLossError`.
        """
        config = self.config
        pair = selection.pair
        ids = [p.item.id for p in batch_set.pairs]
        if len(batch_set) == 0:
            empty = np.zeros(0)
            return RoundRewards(
                pair, selection.round_idx, ids, empty, empty, 0.0, float("nan"), float("nan"), None
            )
        kind = item_reward_kind(config.item_reward)
        measures = self._measure_after(receiver, batch_set, kind)
        columns = kind.columns(measures)
        ok = finite_rows(measures.loss_before, measures.loss_after, *columns)
        guard = NonFiniteGuard(
            config.max_nonfinite_skips, log=log, counter=NONFINITE_REWARD_COUNTER
        )
        for k in np.flatnonzero(~ok):
            guard.check(float("nan"), f"reward of item {ids[k]!r} ({pair})")
        if not ok.any():
            nan = float("nan")
            return _no_rewards(selection, nan, nan, nan, guard.skipped)
        b_before = batch_value(measures.loss_before[ok])
        b_after = batch_value(measures.loss_after[ok])
        baseline = b_before
        if config.batch_reward_baseline == "previous_round":
            baseline = self.previous_b.get(pair, b_before)
        r_batch = relative_decrease(baseline, b_after)
        if not guard.check(r_batch, f"batch reward term ({pair})"):  # B overflowed
            return _no_rewards(selection, r_batch, b_before, b_after, guard.skipped)
        r_item = item_term(kind.raw(*(column[ok] for column in columns)))
        rewards = mix(r_item, r_batch, config.alpha)
        features = selection.features[batch_set.kept][ok]
        fit = self.filter(pair).update(features, rewards)
        self.previous_b[pair] = b_after
        return RoundRewards(
            pair,
            selection.round_idx,
            [item_id for item_id, good in zip(ids, ok, strict=True) if good],
            rewards,
            r_item,
            r_batch,
            b_before,
            b_after,
            fit,
            guard.skipped,
        )

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "config": self.config.model_dump(mode="json"),
            "filters": {pair: f.state_dict() for pair, f in self.filters.items()},
            "previous_b": dict(self.previous_b),
            "irreducible": {
                **{pair: copy_state(s) for pair, s in self._irreducible_states.items()},
                **{pair: m.state_dict() for pair, m in self.irreducible.items()},
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore filters and baselines; the saved config must equal this plug-in's."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"plug-in state: unknown format {state.get('format')!r}")
        if LadaConfig(**state["config"]) != self.config:
            raise ValueError("plug-in state: saved config differs from this plug-in's config")
        self.filters = {}
        for pair, filter_state in state["filters"].items():
            self.filter(pair).load_state_dict(filter_state)
        self.previous_b = {k: float(v) for k, v in state["previous_b"].items()}
        # An IL model is rebuilt beside the receiver at the pair's next selection.
        self.irreducible = {}
        self._irreducible_states = {
            pair: copy_state(s) for pair, s in state.get("irreducible", {}).items()
        }

    def save(self, path: Path | str) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path)

    @classmethod
    def load(cls, path: Path | str, *, device: str = "cpu") -> LadaPlugin:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        plugin = cls(LadaConfig(**state["config"]), device=device)
        plugin.load_state_dict(state)
        return plugin

    # ------------------------------------------------------------------ internals
    def _centroid(self, receiver: Receiver, local: Sequence[str] | np.ndarray) -> np.ndarray:
        if isinstance(local, np.ndarray):
            array = np.asarray(local, dtype=np.float64)
            return array if array.ndim == 1 else local_centroid(array)
        texts = list(local)
        if not texts:
            raise ValueError("local_texts_or_embedding: empty; pass None when there is no data")
        return local_centroid(
            embed_texts(receiver, texts, batch_size=self.config.inference_batch_size)
        )

    def _oracle_choice(
        self,
        filt: LearnabilityFilter,
        candidates: list[Candidate],
        local_items: Sequence[ReasoningItem] | None,
        budget: int | None,
        count: int | None,
        pair: str,
        stats: dict[str, float],
    ) -> FilterChoice:
        """Candidates of the receiver's own domains at learnable levels; a seeded subset if more.

        Without a count (`match_counts`) or budget, every matching candidate is taken. Fewer
        matches than the count take only the matches: the oracle never pads with other items.
        """
        levels = self._learnable_levels(local_items, pair)
        eligible = np.array(
            [c.item.difficulty in levels.get(c.item.domain, ()) for c in candidates], dtype=bool
        )
        wanted = count if count is not None else self._budget(budget)
        stats["oracle_matching"] = float(eligible.sum())
        return FilterChoice(subset_select(eligible, wanted, filt.rng), None, "oracle")

    def _learnable_levels(
        self, local_items: Sequence[ReasoningItem] | None, pair: str
    ) -> dict[str, set[int]]:
        """(domain -> levels) the receiver can learn: its local items' levels, or oracle_levels."""
        if not local_items:
            raise ValueError(
                f"{pair}: selection_mode 'oracle' needs the receiver's local items (its own "
                "domains and levels), and this receiver has none (the server has no local data "
                "of its own; run the oracle arm on a one-way host such as fedcot)"
            )
        own: dict[str, set[int]] = {}
        for item in local_items:
            own.setdefault(item.domain, set()).add(item.difficulty)
        override = self.config.oracle_levels or {}
        return {domain: set(override.get(domain, found)) for domain, found in own.items()}

    def _rho_choice(
        self,
        receiver: Receiver,
        candidates: list[Candidate],
        local_items: Sequence[ReasoningItem] | None,
        budget: int | None,
        count: int | None,
        pair: str,
        stats: dict[str, float],
        log: CountSink | None,
    ) -> FilterChoice:
        """RHO-LOSS: the top candidates by receiver loss minus irreducible loss on the sender path.

        `Selection.scores` then holds these raw scores (not min-max normalised).
        """
        wanted = count if count is not None else self._budget(budget)
        if wanted is None:
            raise ValueError(f"{pair}: 'rho_loss' needs match_counts or a budget to take top-n")
        il_model = self._irreducible_model(receiver, local_items, pair, log)
        prompts = [render_prompt(c.item) for c in candidates]
        paths = [c.path for c in candidates]
        batch = self.config.inference_batch_size
        receiver_loss = path_losses(receiver, prompts, paths, batch_size=batch)
        irreducible = il_model.losses(prompts, paths, batch_size=batch)
        scores = rho_scores(receiver_loss, irreducible)
        indices = top_count(scores, wanted)
        stats.update(
            {
                "rho_il_mean": _finite_mean(irreducible),
                "rho_receiver_loss_mean": _finite_mean(receiver_loss),
                "rho_score_mean_selected": _finite_mean(scores[indices]),
                "rho_il_items": float(il_model.n_items),
                "rho_il_train_loss": il_model.train_loss,
                "rho_il_steps": float(il_model.steps),
            }
        )
        return FilterChoice(indices, scores, "rho_loss")

    def _irreducible_model(
        self,
        receiver: Receiver,
        local_items: Sequence[ReasoningItem] | None,
        pair: str,
        log: CountSink | None,
    ) -> IrreducibleLossModel:
        """The pair's IL model: kept, rebuilt from a restored state, or trained now (once)."""
        if pair in self.irreducible:
            return self.irreducible[pair]
        if pair in self._irreducible_states:
            il_model = IrreducibleLossModel.from_state(receiver, self._irreducible_states.pop(pair))
        else:
            if not local_items:
                raise ValueError(
                    f"{pair}: selection_mode 'rho_loss' needs the receiver's local items to "
                    "train its irreducible-loss model, and this receiver has none (the server "
                    "has no local data of its own; run this arm on a one-way host such as fedcot)"
                )
            il_model = IrreducibleLossModel.train(
                receiver, local_items, self.config, pair=pair, log=log
            )
        self.irreducible[pair] = il_model
        return il_model

    def _budget(self, budget: int | None) -> int | None:
        return self.config.budget if budget is None else budget

    def _gap(
        self,
        receiver: Receiver,
        selection: Selection,
        pairs: list[DistillPair],
        kept: list[int],
        positive_logprobs: np.ndarray,
    ) -> np.ndarray:
        """log p_sender(path) - log p_receiver(path) on the sender's path, at round start.

        NaN for an item where either log-prob is not finite; `observe` sets such items aside.
        """
        candidates = [selection.candidates[i] for i in kept]
        missing = [c.item.id for c in candidates if c.sender_logprob is None]
        if missing:
            raise ValueError(
                f"Candidate.sender_logprob: required by item_reward='gap' but missing for items "
                f"{missing[:3]} (pair {selection.pair!r}); send it, or use 'loss_drop'/'margin'"
            )
        receiver_lp = positive_logprobs.copy()
        other = [k for k, p in enumerate(pairs) if p.positive_source != "sender"]
        if other:
            totals, counts = path_statistics(
                receiver,
                [pairs[k].prompt for k in other],
                [candidates[k].path for k in other],
                batch_size=self.config.inference_batch_size,
            )
            receiver_lp[other] = select_logprobs(totals, counts, self.config.normalize_logprobs)
        sender_lp = np.array([float(c.sender_logprob) for c in candidates])  # type: ignore[arg-type]
        ok = finite_rows(sender_lp, receiver_lp)
        gap = np.full(len(sender_lp), np.nan)
        gap[ok] = learnability_gap(sender_lp[ok], receiver_lp[ok])
        return gap

    def _measure_after(
        self, receiver: Receiver, batch_set: DistillBatchSet, kind: ItemRewardKind
    ) -> ItemMeasures:
        """The receiver's scores of the trained pairs after training, beside those `prepare`
        took before it: one pass over the positives (and the negatives, when `kind` reads them).
        """
        pairs = batch_set.pairs
        n = len(pairs)
        prompts = [p.prompt for p in pairs]
        paths = [p.positive for p in pairs]
        if kind.needs_negatives_after:
            prompts, paths = prompts * 2, paths + [p.negative for p in pairs]
        totals, counts = path_statistics(
            receiver, prompts, paths, batch_size=self.config.inference_batch_size
        )
        after = select_logprobs(totals, counts, self.config.normalize_logprobs)
        return ItemMeasures(
            loss_before=batch_set.ref_losses,
            loss_after=mean_nll(totals[:n], counts[:n]),
            ref_positive=batch_set.ref.positive.double().numpy(),
            ref_negative=batch_set.ref.negative.double().numpy(),
            policy_positive=after[:n],
            policy_negative=after[n:] if kind.needs_negatives_after else None,
            gap=batch_set.gap,
        )

    def _empty_fallback(
        self,
        filt: LearnabilityFilter,
        choice: FilterChoice,
        n_offered: int,
        budget: int | None,
        *,
        pair: str,
        round_idx: int,
    ) -> FilterChoice:
        """Apply `config.empty_selection` to a filter choice that selected nothing."""
        mode = self.config.empty_selection
        if mode == "error":
            raise EmptySelectionError(
                f"{pair}: round {round_idx}: the filter ({choice.strategy}) selected none of "
                f"the offered candidates; set lada.empty_selection to 'top_k' or 'skip' to go on"
            )
        if mode == "skip":
            return FilterChoice(choice.indices, choice.scores, f"{choice.strategy}+empty_skip")
        cap = self.config.budget if budget is None else budget
        k = min(self.config.empty_selection_k, n_offered, cap if cap is not None else n_offered)
        if choice.scores is not None:
            indices = np.argsort(-choice.scores, kind="stable")[:k].astype(np.int64)
        else:
            indices = random_select(n_offered, k, filt.rng)
        return FilterChoice(indices, choice.scores, f"{choice.strategy}+empty_top_k")
