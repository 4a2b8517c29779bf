"""FedMKT: mutual knowledge transfer between one LLM and heterogeneous SLMs via top-k logits.

One exchange per round, ("train",):

- `send_train`: the server computes the LLM's top-k next-token log-probabilities on the public
  pool, along each item's gold path (prompt + gold path, distributions at the path positions),
  and sends them with the LLM's vocabulary strings (what a receiver needs to align them).
- `client_train`: the client fine-tunes on its private split, computes its own top-k on the
  public pool (this is both its reply and its own candidate target), aligns the LLM's
  distributions to its vocabulary (minimum edit distance over token strings) and sequence
  (dynamic time warping, see `lada.hosts.token_alignment`), and distils selectively: per item
  the target is the LLM's aligned distribution only where the LLM's cross-entropy on the gold
  path is lower than the SLM's own, else the SLM's own distribution from before this step
  (`target_choice="weighted"`: the softmax(-CE)-weighted mean of the two). The loss is
  (1 - kd_weight) * LM loss + kd_weight * KD, KD being KL or CE at `temperature`. It replies
  with its top-k logits and its vocabulary strings; the private split never enters a payload.
- `receive_train`: the server aligns each client's distributions to the LLM's tokens and
  distils the LLM per item from the client target with the lowest cross-entropy (or their
  softmax(-CE)-weighted mean), with the same loss.

Cross-entropies are the token-mean negative log-likelihood of the gold path under each model's
own tokenizer (`ce_unit="character"` divides by characters instead, which compares models with
different tokenizers on one scale).

Budget: the client's distillation takes exactly `budget.client_steps` optimizer steps per
round, the server's `budget.server_steps` (`lada.hosts.budget`), with and without LaDa.

With LaDa: LaDa changes only which public items each party trains on and the loss on them;
the exchange is unchanged. The server's message additionally carries the LLM's paths on the
public pool, and each reply additionally carries the client's paths on it. A client then calls
`receive_with_lada` on the LLM's paths *instead of* the logit distillation (filter F_k, pair
"llm->slm_k"), and the server calls it on each client's paths instead of its logit
distillation (filter G_k, pair "slm_k->llm"; the pairs share `budget.server_steps`, see
`Host.server_lada`). Logits are still exchanged, as in the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from lada.hosts.base import Exchange, Host
from lada.hosts.config import FedMKTConfig
from lada.hosts.parties import ClientParty, Party, ServerParty, host_state, step_seed
from lada.hosts.payloads import Payload, PayloadError, PublicPaths
from lada.hosts.steps import write_public_paths
from lada.hosts.token_alignment import (
    SparseTarget,
    align_topk,
    mix_targets,
    softmax_rows,
    vocabulary_strings,
)
from lada.models.training import TrainUsage, fit, sequence_tokens
from lada.models.wrapper import ReasoningModel
from lada.tasks.item import ReasoningItem
from lada.tasks.prompts import gold_path, render_prompt

#: Log-probabilities are clipped here before being cast for the wire (float16 has no -1e5).
LOGPROB_FLOOR = -1.0e4
#: Seed offset of the server's distillation (clients use their id).
SERVER_SEED = 1009


# --------------------------------------------------------------------------- payload
@dataclass
class TopKLogits(Payload):
    """A model's top-k next-token log-probabilities along the gold paths of public items.

    Positions of item n are rows `offsets[n]:offsets[n+1]`; `tokens` is the gold token each
    position predicts (the path's tokens, then end-of-sequence), in the sender's vocabulary,
    whose strings are `vocab` (index = id). `nll` is the summed negative log-likelihood of each
    gold path under the full distribution. With LaDa the sender's paths on the same items ride
    along (`paths`, `path_logprobs`, `path_token_counts`; empty otherwise).
    """

    kind: ClassVar[str] = "topk_logits"
    sender: str = ""
    item_ids: list[str] = field(default_factory=list)
    vocab: list[str] = field(default_factory=list)
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    topk_ids: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), dtype=np.int32))
    topk_logprobs: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), np.float16))
    nll: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    paths: list[str] = field(default_factory=list)
    path_logprobs: list[float] = field(default_factory=list)
    path_token_counts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        n, p = len(self.item_ids), len(self.tokens)
        if self.offsets.shape != (n + 1,) or self.offsets[0] != 0 or self.offsets[-1] != p:
            raise PayloadError(f"topk_logits: offsets {self.offsets.shape} do not fit {n} items")
        if np.any(np.diff(self.offsets) < 0):
            raise PayloadError("topk_logits: offsets must not decrease")
        if self.topk_ids.shape != self.topk_logprobs.shape or self.topk_ids.shape[0] != p:
            raise PayloadError(
                f"topk_logits: top-k ids {self.topk_ids.shape} and log-probs "
                f"{self.topk_logprobs.shape} for {p} positions"
            )
        if self.nll.shape != (n,):
            raise PayloadError(f"topk_logits: {self.nll.shape} nll values for {n} items")
        if p and (self.tokens.max() >= len(self.vocab) or self.topk_ids.max() >= len(self.vocab)):
            raise PayloadError(f"topk_logits: token id beyond the {len(self.vocab)}-token vocab")
        if self.paths and len(self.paths) != n:
            raise PayloadError(f"topk_logits: {len(self.paths)} paths for {n} items")

    def rows(self, n: int) -> slice:
        return slice(int(self.offsets[n]), int(self.offsets[n + 1]))

    def n_tokens(self) -> np.ndarray:
        return np.diff(self.offsets)

    def public_paths(self) -> PublicPaths:
        """The sender's paths on the public items (sent only when LaDa is enabled)."""
        if not self.paths:
            raise PayloadError(f"topk_logits from {self.sender!r}: no paths (LaDa disabled?)")
        return PublicPaths(
            sender=self.sender,
            item_ids=list(self.item_ids),
            paths=list(self.paths),
            logprobs=list(self.path_logprobs),
            token_counts=list(self.path_token_counts),
        )


# --------------------------------------------------------------------------- model access
def path_logits(
    model: ReasoningModel, prompts: Sequence[str], paths: Sequence[str], *, grad: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits at every path position ([P, V], items one after another), the gold token each
    position predicts ([P]) and the positions per item ([B]), from one padded forward pass."""
    input_ids, attention, target_mask = model.pack(prompts, paths)
    selected = target_mask.bool()
    with torch.set_grad_enabled(grad):
        logits = model.model(input_ids=input_ids, attention_mask=attention).logits[:, :-1]
        logits = logits.float()[selected]
    return logits, input_ids[:, 1:][selected], selected.sum(-1)


def path_tokens(
    model: ReasoningModel, prompts: Sequence[str], paths: Sequence[str]
) -> list[np.ndarray]:
    """The gold token each path position predicts, per item (tokenization only, no forward)."""
    input_ids, _, target_mask = model.pack(prompts, paths)
    targets = input_ids[:, 1:].cpu().numpy()
    mask = target_mask.bool().cpu().numpy()
    return [row[keep] for row, keep in zip(targets, mask)]


@torch.no_grad()
def public_topk(
    party: Party,
    items: Sequence[ReasoningItem],
    *,
    top_k: int,
    batch_size: int,
    dtype: str,
) -> TopKLogits:
    """The party's top-k log-probabilities along the gold paths of `items`."""
    model = party.model
    n_vocab = len(model.tokenizer)  # logits may have padding columns beyond the vocabulary
    k = min(top_k, n_vocab)
    was_training = model.model.training
    model.eval()
    prompts = [render_prompt(it) for it in items]
    paths = [gold_path(it) for it in items]
    tokens, ids, values = [np.zeros(0)], [np.zeros((0, k))], [np.zeros((0, k))]
    counts: list[np.ndarray] = [np.zeros(0)]
    nll: list[float] = []
    for lo in range(0, len(items), batch_size):
        logits, gold, per_item = path_logits(
            model, prompts[lo : lo + batch_size], paths[lo : lo + batch_size], grad=False
        )
        logprobs = torch.log_softmax(logits[:, :n_vocab], dim=-1)
        top = torch.topk(logprobs, k, dim=-1)
        gold_nll = -logprobs.gather(-1, gold[:, None]).squeeze(-1)
        nll.extend(float(part.sum()) for part in torch.split(gold_nll, per_item.tolist()))
        tokens.append(gold.cpu().numpy())
        ids.append(top.indices.cpu().numpy())
        values.append(top.values.clamp(min=LOGPROB_FLOOR).cpu().numpy())
        counts.append(per_item.cpu().numpy())
    model.model.train(was_training)
    return TopKLogits(
        sender=model.name,
        item_ids=[it.id for it in items],
        vocab=own_vocab(party),
        offsets=np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64),
        tokens=np.concatenate(tokens).astype(np.int32),
        topk_ids=np.concatenate(ids).astype(np.int32),
        topk_logprobs=np.concatenate(values).astype(dtype),
        nll=np.asarray(nll, dtype=np.float32),
    )


@dataclass
class FedMKTState:
    """What a FedMKT party (server or client) keeps: its vocabulary strings, computed once."""

    vocab: list[str] | None = None


def own_vocab(party: Party) -> list[str]:
    """The party's vocabulary strings, computed once (public: it says nothing about data)."""
    state = host_state(party, FedMKTState)
    if state.vocab is None:
        state.vocab = vocabulary_strings(party.model.tokenizer)
    return state.vocab


# --------------------------------------------------------------------------- selection, loss
def item_ce(logits: TopKLogits, paths_by_id: dict[str, str], unit: str) -> np.ndarray:
    """Cross-entropy of each item's gold path: per own token, or per character of the path."""
    if unit == "token":
        return logits.nll / np.maximum(logits.n_tokens(), 1)
    chars = np.array([len(paths_by_id[i]) + 1 for i in logits.item_ids])  # + end of sequence
    return logits.nll / chars


def target_weights(ce: np.ndarray, choice: str) -> np.ndarray:
    """Weights of the candidate targets of each item: [C candidates, N items] -> [C, N].

    "lowest_ce" puts all weight on the candidate with the lowest cross-entropy (the first on
    ties); "weighted" uses softmax(-CE) over the candidates. Missing candidates have CE = inf.
    """
    ce = np.asarray(ce, dtype=np.float64)
    if choice == "lowest_ce":
        weights = np.zeros_like(ce)
        weights[np.argmin(ce, axis=0), np.arange(ce.shape[1])] = 1.0
        return weights
    if choice == "weighted":
        shifted = -(ce - np.min(ce, axis=0, keepdims=True))
        weights = np.exp(shifted)
        return weights / weights.sum(axis=0, keepdims=True)
    raise ValueError(f"host.target_choice: unknown choice {choice!r}")


@dataclass
class KDLoss:
    """The distillation objective and its two parts (token means over the batch)."""

    total: torch.Tensor
    lm: torch.Tensor
    kd: torch.Tensor


def kd_loss(
    logits: torch.Tensor,
    gold: torch.Tensor,
    target_ids: torch.Tensor,
    target_probs: torch.Tensor,
    *,
    kd_weight: float,
    temperature: float,
    kind: str,
) -> KDLoss:
    """(1 - kd_weight) * LM loss + kd_weight * KD over path positions.

    `logits` [P, V] and `gold` [P] are the student's; the target is sparse ([P, m] ids and
    probabilities, padding at probability 0; a row names each id once, see `merge_sparse`).
    KD is CE(q, p_T) = -sum q log p_T or KL(q || p_T) = CE - H(q), with
    p_T = softmax(logits / temperature); there is no T^2 factor.
    """
    lm = F.cross_entropy(logits, gold)
    log_p = torch.log_softmax(logits / temperature, dim=-1).gather(-1, target_ids)
    per_position = -(target_probs * log_p).sum(-1)
    if kind == "kl":
        per_position = per_position + torch.xlogy(target_probs, target_probs).sum(-1)
    elif kind != "ce":
        raise ValueError(f"host.kd_loss: unknown loss {kind!r}")
    kd = per_position.mean()
    return KDLoss(total=(1 - kd_weight) * lm + kd_weight * kd, lm=lm, kd=kd)


def own_targets(logits: TopKLogits, temperature: float) -> list[SparseTarget]:
    """A party's own top-k distributions as targets on its own positions."""
    out = []
    for n in range(len(logits.item_ids)):
        rows = logits.rows(n)
        out.append(
            SparseTarget(
                ids=logits.topk_ids[rows].astype(np.int64),
                probs=softmax_rows(logits.topk_logprobs[rows], temperature),
            )
        )
    return out


def aligned_target(
    logits: TopKLogits,
    n: int,
    receiver_tokens: np.ndarray,
    receiver_vocab: Sequence[str],
    temperature: float,
) -> SparseTarget:
    rows = logits.rows(n)
    return align_topk(
        receiver_tokens,
        receiver_vocab,
        logits.tokens[rows],
        logits.vocab,
        logits.topk_ids[rows],
        logits.topk_logprobs[rows],
        temperature=temperature,
    )


def _stack(targets: Sequence[SparseTarget], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Concatenate items' sparse targets along positions, padding m with probability 0."""
    width = max(t.ids.shape[1] for t in targets)
    ids = np.concatenate([np.pad(t.ids, ((0, 0), (0, width - t.ids.shape[1]))) for t in targets])
    probs = np.concatenate(
        [np.pad(t.probs, ((0, 0), (0, width - t.probs.shape[1]))) for t in targets]
    )
    return torch.from_numpy(ids).long().to(device), torch.from_numpy(probs).float().to(device)


# --------------------------------------------------------------------------- the host
class FedMKT(Host[FedMKTConfig]):
    name: ClassVar[str] = "fedmkt"
    exchanges: ClassVar[tuple[str, ...]] = ("train",)

    def round_steps(self) -> dict[str, Exchange]:
        return {"train": Exchange(self.send_train, self.client_train, self.receive_train)}

    # ------------------------------------------------------------------ train
    def send_train(
        self, server: ServerParty, round_idx: int, client_ids: list[int]
    ) -> dict[int, Payload]:
        message = self._knowledge(server, server.public_pool)
        return {cid: message for cid in client_ids}

    def client_train(self, client: ClientParty, payload: Payload, round_idx: int) -> Payload:
        if not isinstance(payload, TopKLogits):
            raise PayloadError(f"fedmkt client_train: expected topk_logits, got {payload.kind}")
        seed = self.train_private(client, round_idx)
        # The reply is computed before distillation: it is also the SLM's own candidate target.
        reply = self._knowledge(client, client.public_pool)
        if self.lada_enabled:
            self.client_lada(client, payload.public_paths(), round_idx, seed)
        else:
            self._client_distill(client, payload, reply, seed)
        return reply

    def receive_train(
        self, server: ServerParty, replies: dict[int, Payload], round_idx: int
    ) -> None:
        knowledge: dict[int, TopKLogits] = {}
        for cid, reply in replies.items():
            if not isinstance(reply, TopKLogits):
                raise PayloadError(f"fedmkt receive_train: client {cid} sent {reply.kind}")
            knowledge[cid] = reply
        seed = step_seed(round_idx, SERVER_SEED)
        if self.lada_enabled:
            offers = [(k.public_paths(), seed + cid) for cid, k in sorted(knowledge.items())]
            self.server_lada(server, offers, {it.id: it for it in server.public_pool}, round_idx)
        else:
            self._server_distill(server, [knowledge[c] for c in sorted(knowledge)], seed)

    # ---------------------------------------------------------------- helpers
    def _knowledge(self, party: Party, items: Sequence[ReasoningItem]) -> TopKLogits:
        """The party's top-k logits on `items` (and, with LaDa, its paths on them)."""
        with party.log.phase("logits"):
            message = public_topk(
                party,
                items,
                top_k=self.config.top_k,
                batch_size=self.train.generation_batch_size,
                dtype=self.config.logit_dtype,
            )
        if self.lada_enabled:
            paths = write_public_paths(
                party,
                items,
                max_new_tokens=self.train.max_new_tokens,
                batch_size=self.train.generation_batch_size,
            )
            message = replace(
                message,
                paths=paths.paths,
                path_logprobs=paths.logprobs,
                path_token_counts=paths.token_counts,
            )
        return message

    def _client_distill(
        self, client: ClientParty, teacher: TopKLogits, own: TopKLogits, seed: int
    ) -> None:
        """Selective KD from the LLM: its aligned target only where its CE beats the SLM's."""
        config = self.config
        by_id = client.public_by_id()
        items = [by_id[i] for i in own.item_ids]
        paths_by_id = {item_id: gold_path(it) for item_id, it in by_id.items()}
        teacher_ce = dict(zip(teacher.item_ids, item_ce(teacher, paths_by_id, config.ce_unit)))
        teacher_row = {item_id: n for n, item_id in enumerate(teacher.item_ids)}
        own_ce = item_ce(own, paths_by_id, config.ce_unit)
        ce = np.stack([own_ce, [teacher_ce.get(i, np.inf) for i in own.item_ids]])
        weights = target_weights(ce, config.target_choice)
        vocab = own_vocab(client)
        own_dists = own_targets(own, config.temperature)
        targets: list[SparseTarget] = []
        with client.log.phase("alignment"):
            for n, item_id in enumerate(own.item_ids):
                candidates, w = [own_dists[n]], [weights[0, n]]
                if weights[1, n] > 0:
                    tokens = own.tokens[own.rows(n)]
                    row = teacher_row[item_id]
                    candidates.append(
                        aligned_target(teacher, row, tokens, vocab, config.temperature)
                    )
                    w.append(weights[1, n])
                targets.append(mix_targets(candidates, w))
        client.log.count("kd_items", len(items))
        client.log.count("kd_teacher_items", float(weights[1].sum()))
        self._distill(client, items, targets, self.budget.client_steps, seed)

    def _server_distill(self, server: ServerParty, replies: list[TopKLogits], seed: int) -> None:
        """Selective KD of the LLM: per item, the client target with the lowest CE."""
        if not replies:
            return
        config = self.config
        items = list(server.public_pool)
        paths_by_id = {it.id: gold_path(it) for it in items}
        ce = np.full((len(replies), len(items)), np.inf)
        rows: list[dict[str, int]] = []
        for c, reply in enumerate(replies):
            rows.append({item_id: n for n, item_id in enumerate(reply.item_ids)})
            reply_ce = item_ce(reply, paths_by_id, config.ce_unit)
            for n, it in enumerate(items):
                if it.id in rows[c]:
                    ce[c, n] = reply_ce[rows[c][it.id]]
        keep = np.isfinite(ce).any(axis=0)
        items = [it for it, k in zip(items, keep) if k]
        ce = ce[:, keep]
        weights = target_weights(ce, config.target_choice)
        vocab = own_vocab(server)
        prompts = [render_prompt(it) for it in items]
        llm_tokens = path_tokens(server.model, prompts, [paths_by_id[it.id] for it in items])
        targets: list[SparseTarget] = []
        with server.log.phase("alignment"):
            for n, it in enumerate(items):
                chosen = [c for c in range(len(replies)) if weights[c, n] > 0]
                candidates = [
                    aligned_target(
                        replies[c], rows[c][it.id], llm_tokens[n], vocab, config.temperature
                    )
                    for c in chosen
                ]
                targets.append(mix_targets(candidates, [weights[c, n] for c in chosen]))
        server.log.count("kd_items", len(items))
        for c, reply in enumerate(replies):
            server.log.count(f"kd_target_{reply.sender}", float(weights[c].sum()))
        self._distill(server, items, targets, self.budget.server_steps, seed)

    def _distill(
        self,
        party: Party,
        items: Sequence[ReasoningItem],
        targets: Sequence[SparseTarget],
        steps: int,
        seed: int,
    ) -> None:
        """Train on the gold paths of `items` with (1 - w) * LM + w * KD against `targets`,
        for exactly `steps` optimizer steps (the party's budget this round)."""
        if steps <= 0 or not items:
            return
        config = self.config
        model = party.model
        prompts = [render_prompt(it) for it in items]
        paths = [gold_path(it) for it in items]
        aligned = [t.aligned_fraction for t in targets]
        party.log.count("kd_aligned_fraction", float(np.mean(aligned)))
        parts: dict[str, list[float]] = {"lm": [], "kd": []}

        def loss_fn(batch: list[int]) -> torch.Tensor:
            logits, gold, _ = path_logits(
                model, [prompts[i] for i in batch], [paths[i] for i in batch], grad=True
            )
            ids, probs = _stack([targets[i] for i in batch], logits.device)
            if ids.shape[0] != logits.shape[0]:
                raise ValueError(
                    f"fedmkt: {ids.shape[0]} target positions for {logits.shape[0]} path "
                    f"positions of {party.name}"
                )
            loss = kd_loss(
                logits,
                gold,
                ids,
                probs,
                kd_weight=config.kd_weight,
                temperature=config.temperature,
                kind=config.kd_loss,
            )
            parts["lm"].append(float(loss.lm.detach()))
            parts["kd"].append(float(loss.kd.detach()))
            return loss.total

        lengths = [len(p) + len(q) for p, q in zip(prompts, paths)]
        usage = TrainUsage()
        with party.log.phase("distillation"):
            losses = fit(
                model,
                lengths,
                loss_fn,
                steps=steps,
                batch_size=self.train.batch_size,
                seed=seed,
                desc=f"{party.name} distill",
                max_nonfinite_skips=self.train.max_nonfinite_skips,
                log=party.log,
                example_tokens=sequence_tokens(model, prompts, paths),
                usage=usage,
            )
        party.log.spend(model.name, usage)
        party.log.losses["distillation"].extend(losses)
        party.log.losses["distillation_lm"].extend(parts["lm"])
        party.log.losses["distillation_kd"].extend(parts["kd"])
