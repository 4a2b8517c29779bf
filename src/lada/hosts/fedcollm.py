"""FedCoLLM: LoRA SLMs averaged by FedAvg, mutual LLM <-> SLM distillation on the server.

Every client holds the same SLM base with a LoRA adapter; only adapters are trained and sent.
A round of the original framework:

1. the server sends the global adapter (the aggregated SLM of the last round);
2. client k loads it, fine-tunes on its private split and uploads its adapter and example count;
3. the server averages the adapters (FedAvg weighted by examples) into its own copy of the SLM,
   then distils mutually on the public pool: the SLM learns from the LLM and the LLM from the
   SLM, each with `LM loss + kd_weight * KL(teacher top-k || student)` at `temperature`, for
   `budget.client_steps` optimizer steps of the SLM and `budget.server_steps` of the LLM;
4. the distilled global adapter goes to the clients with the evaluation request, and they are
   evaluated on it.

Timing. In both arms a client's SLM is evaluated after its private SFT *and* this round's
learning from the LLM, in that order (with LaDa both happen on the client, step 2; without it
the SLM learns on the server, step 3, and arrives in step 4), so the arms are evaluated after
the same number of distillations. Sending the adapter again at the start of the next round
would repeat what the client already holds: the server sends the tensors only to a client that
did not confirm the evaluation (it keeps its adapter otherwise), so no bytes are sent twice.

The server's SLM copy. The server needs the aggregated SLM to distil with, but it has no SLM of
its own and the host is built without the experiment config. So in `setup` each client uploads
an `SLMCard`: its warmed-up adapter, its model's source spec (preset, seed, LoRA settings) and a
fingerprint (sha256) of its frozen base weights. The server builds its copy from the card of the
lowest client id, exactly as that client built its SLM (a hub checkpoint, or a tiny preset's
seeded initialisation), checks the fingerprint, and loads the FedAvg of the setup adapters. No
base weights cross the wire, as in FedCoLLM where every party starts from one public checkpoint.

One base for all. Averaging adapters is only meaningful over one base. A client whose base
fingerprint differs (the tiny presets seed each client's SLM differently) receives the global
base's source spec with its first global adapter and rebuilds its frozen base from it (checked
by fingerprint); its setup adapter, trained on another base, is left out of the first average.

Distillation targets. The LLM and SLM must share one tokenizer (checked: same vocabulary) so
their logits align position by position on the same token ids; use FedMKT otherwise. Both models
read the public items' gold paths; the KL term uses the teacher's top-`top_k` logits per path
position, softmaxed at `temperature`, against the student's full softmax at the same
temperature, scaled by temperature**2 (so its gradient scale does not depend on the
temperature).

With LaDa (the round of the design notes, which use this host as their example):
- down: the global adapter and the LLM's paths on the public pool (rewritten every round, the
  LLM changes);
- client k: loads the adapter, private SFT, then `receive_with_lada` on the LLM's paths (pair
  llm->slm_k) instead of the server-side LLM -> SLM distillation; uploads its adapter and its own
  paths on the public pool;
- server: FedAvg as above, then `receive_with_lada` on each client's paths (pair slm_k->llm)
  instead of the SLM -> LLM distillation, the pairs sharing `budget.server_steps`
  (`Host.server_lada`). There is no server-side KD in this mode: both directions are LaDa's,
  and the evaluation request carries nothing.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from lada.hosts.base import Exchange, Host
from lada.hosts.config import FedCoLLMConfig
from lada.hosts.parties import ClientParty, ServerParty, host_state, step_seed
from lada.hosts.payloads import Empty, Payload, PayloadError, PublicPaths, Weights
from lada.hosts.steps import write_public_paths
from lada.models.presets import build_model
from lada.models.training import TrainUsage, cycled_batches
from lada.models.wrapper import ReasoningModel
from lada.tasks.prompts import gold_path, render_prompt

#: Name of the server's copy of the aggregated SLM.
GLOBAL_SLM_NAME = "slm_global"


# --------------------------------------------------------------------------- payloads
@dataclass
class _CarriesPaths:
    """Reasoning paths on public items riding along with an adapter (LaDa mode only)."""

    sender: str = ""
    item_ids: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    token_counts: list[int] = field(default_factory=list)

    def public_paths(self) -> PublicPaths:
        return PublicPaths(
            sender=self.sender,
            item_ids=list(self.item_ids),
            paths=list(self.paths),
            logprobs=list(self.logprobs),
            token_counts=list(self.token_counts),
        )

    def set_paths(self, paths: PublicPaths) -> None:
        self.sender = paths.sender
        self.item_ids = list(paths.item_ids)
        self.paths = list(paths.paths)
        self.logprobs = list(paths.logprobs)
        self.token_counts = list(paths.token_counts)


@dataclass
class SLMCard(Weights):
    """A client's SLM after warm-up: its adapter, how to build its base, and the base's hash."""

    kind: ClassVar[str] = "slm_card"
    #: JSON of the model's source spec (`ReasoningModel.source`: preset, seed, LoRA settings).
    source: str = ""
    dtype: str = ""
    base_fingerprint: str = ""


@dataclass
class GlobalAdapter(Weights, _CarriesPaths):
    """The server's global adapter; with LaDa also the LLM's paths on the public pool."""

    kind: ClassVar[str] = "global_adapter"
    #: Source spec (JSON) of the global SLM base; set only for a client whose base differs.
    base_source: str = ""
    base_dtype: str = ""
    base_fingerprint: str = ""


@dataclass
class AdapterUpdate(Weights, _CarriesPaths):
    """A client's adapter after local training; with LaDa also its paths on the public pool."""

    kind: ClassVar[str] = "adapter_update"


# --------------------------------------------------------------------------- pure pieces
def fedavg(
    states: Sequence[Mapping[str, np.ndarray]],
    num_examples: Sequence[int],
    names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Average of adapter states weighted by example counts (uniform when every count is 0).

    Every state must hold the same tensor names and shapes (same LoRA settings on the same
    architecture); `names` label the states in the error otherwise.
    """
    if not states:
        raise ValueError("fedavg: no adapters to average")
    if len(states) != len(num_examples):
        raise ValueError(f"fedavg: {len(states)} adapters but {len(num_examples)} example counts")
    labels = list(names) if names is not None else [f"adapter {i}" for i in range(len(states))]
    reference = states[0]
    for label, state in zip(labels[1:], states[1:]):
        if set(state) != set(reference):
            extra = sorted(set(state) ^ set(reference))[:3]
            raise ValueError(
                f"fedavg: {label} has other adapter tensors than {labels[0]} (e.g. {extra}); "
                "FedCoLLM needs the same SLM architecture and LoRA settings on every client"
            )
        for key, array in state.items():
            if array.shape != reference[key].shape:
                raise ValueError(
                    f"fedavg: {label} tensor {key!r} has shape {array.shape}, "
                    f"{labels[0]} has {reference[key].shape}"
                )
    counts = np.asarray(num_examples, dtype=np.float64)
    if (counts < 0).any():
        raise ValueError(f"fedavg: negative example count in {list(num_examples)}")
    weights = counts / counts.sum() if counts.sum() > 0 else np.full(len(states), 1 / len(states))
    return {
        key: sum(w * np.asarray(s[key], dtype=np.float64) for w, s in zip(weights, states)).astype(
            reference[key].dtype
        )
        for key in reference
    }


def topk_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    *,
    top_k: int,
    temperature: float,
) -> torch.Tensor:
    """T^2 * KL(teacher top-k || student), mean over positions where `mask` is 1.

    The teacher's target keeps its `top_k` largest logits per position, softmaxed at
    temperature T (the other tokens get no mass); the student's log-probabilities of those
    tokens come from its softmax over the whole vocabulary at T. Logits: [B, T, V]; mask [B, T].
    """
    t = temperature
    values, indices = (
        teacher_logits.detach().float().topk(min(top_k, teacher_logits.shape[-1]), dim=-1)
    )
    log_p = F.log_softmax(values / t, dim=-1)
    log_q = torch.gather(F.log_softmax(student_logits.float() / t, dim=-1), -1, indices)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    return t * t * (kl * mask).sum() / mask.sum().clamp(min=1)


def _lm_loss(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token-mean NLL of the path tokens (the same loss as SFT)."""
    log_probs = F.log_softmax(logits.float(), dim=-1)
    picked = torch.gather(log_probs, -1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return -(picked * mask).sum() / mask.sum().clamp(min=1)


def check_shared_vocabulary(llm: ReasoningModel, slm: ReasoningModel) -> None:
    """Logit-level KD needs the same token at the same id in both models."""
    llm_size = int(llm.model.get_output_embeddings().weight.shape[0])
    slm_size = int(slm.model.get_output_embeddings().weight.shape[0])
    if llm_size != slm_size:
        raise ValueError(
            f"host.name='fedcollm': the LLM has {llm_size} output logits and the SLM {slm_size}; "
            "FedCoLLM distils logits token by token, so both need one tokenizer "
            "(use host.name='fedmkt' for heterogeneous vocabularies)"
        )
    if llm.tokenizer.get_vocab() != slm.tokenizer.get_vocab():
        raise ValueError(
            "host.name='fedcollm': the LLM and the SLM have vocabularies of the same size but "
            "different tokens; FedCoLLM needs one shared tokenizer (use host.name='fedmkt')"
        )


def mutual_distill(
    llm: ReasoningModel,
    slm: ReasoningModel,
    prompts: Sequence[str],
    paths: Sequence[str],
    *,
    kd_weight: float,
    temperature: float,
    top_k: int,
    slm_steps: int,
    llm_steps: int,
    batch_size: int,
    seed: int,
    usage: Mapping[str, TrainUsage] | None = None,
) -> dict[str, list[float]]:
    """Each batch: the SLM learns from the LLM and the LLM from the SLM, LM + kd_weight * KL.

    Batches cycle over reshuffled passes until the SLM has taken `slm_steps` optimizer steps
    and the LLM `llm_steps`; a model whose steps are spent only lends its logits (a forward
    pass without gradient). Both directions use the teacher's logits from the same forward
    pass, taken before either model's update on that batch. Returns the per-step losses of each
    model; `usage` (by model name) gets each model's steps and the tokens it forwarded with a
    gradient.
    """
    lengths = [len(p) + len(q) for p, q in zip(prompts, paths, strict=True)]
    rng = np.random.default_rng(seed)
    history: dict[str, list[float]] = {"slm": [], "llm": []}
    for batch in cycled_batches(lengths, batch_size, rng):
        learn_slm = len(history["slm"]) < slm_steps
        learn_llm = len(history["llm"]) < llm_steps
        if not (learn_slm or learn_llm):
            break
        batch_prompts = [prompts[i] for i in batch]
        batch_paths = [paths[i] for i in batch]
        # `pack` gives the padded ids and the path-token mask; the shared tokenizer makes
        # both models see identical ids, which the check below enforces.
        slm_ids, slm_attention, slm_mask = slm.pack(batch_prompts, batch_paths)
        llm_ids, llm_attention, llm_mask = llm.pack(batch_prompts, batch_paths)
        if not torch.equal(slm_ids.cpu(), llm_ids.cpu()):
            raise ValueError(
                "fedcollm: the LLM and the SLM encode the same text differently (add_bos or "
                "max_length differ); logit KD needs identical token sequences"
            )
        slm.train()
        llm.train()
        with torch.set_grad_enabled(learn_slm):
            slm_logits = slm.model(input_ids=slm_ids, attention_mask=slm_attention).logits[:, :-1]
        with torch.set_grad_enabled(learn_llm):
            llm_logits = llm.model(input_ids=llm_ids, attention_mask=llm_attention).logits[:, :-1]
        kd = functools.partial(topk_kl, top_k=top_k, temperature=temperature)
        if learn_slm:
            slm_loss = _lm_loss(slm_logits, slm_ids, slm_mask) + kd_weight * kd(
                slm_logits, llm_logits.detach().to(slm_logits.device), slm_mask
            )
        if learn_llm:
            llm_loss = _lm_loss(llm_logits, llm_ids, llm_mask) + kd_weight * kd(
                llm_logits, slm_logits.detach().to(llm_logits.device), llm_mask
            )
        for model, key, learns, attention in (
            (slm, "slm", learn_slm, slm_attention),
            (llm, "llm", learn_llm, llm_attention),
        ):
            if not learns:
                continue
            history[key].append(model.train_step(slm_loss if key == "slm" else llm_loss))
            if usage is not None:
                usage[model.name].add(1, int(attention.sum()))
    return history


# --------------------------------------------------------------------------- model helpers
def adapter_arrays(model: ReasoningModel) -> dict[str, np.ndarray]:
    """The model's trainable (LoRA) weights as float32 arrays for the wire."""
    return {k: v.float().numpy() for k, v in model.trainable_state().items()}


def load_adapter(model: ReasoningModel, arrays: Mapping[str, np.ndarray]) -> None:
    """Overwrite the adapter and drop optimizer moments that belonged to the old weights."""
    mine = set(model.trainable_state())
    if set(arrays) != mine:
        extra = sorted(set(arrays) ^ mine)[:3]
        raise PayloadError(
            f"fedcollm: the global adapter does not fit {model.name} (tensors differ, e.g. "
            f"{extra}); every SLM needs the same architecture and LoRA settings"
        )
    model.load_trainable_state({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
    model.reset_optimizer()


def base_fingerprint(model: ReasoningModel) -> str:
    """sha256 of the frozen (non-adapter) weights, by name: equal bases give equal hashes."""
    digest = hashlib.sha256()
    for name, param in sorted(model.model.named_parameters()):
        if not param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()


def dtype_name(model: ReasoningModel) -> str:
    return str(next(model.model.parameters()).dtype).removeprefix("torch.")


def build_from_source(source_json: str, *, device: torch.device, dtype: str) -> ReasoningModel:
    """Rebuild a model (architecture, base weights, fresh adapter) from its source spec."""
    # Tiny presets seed torch while building; keep the caller's random stream untouched.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return build_model(json.loads(source_json), device=str(device), dtype=dtype)


def require_lora(client: ClientParty) -> None:
    from peft import PeftModel

    if not isinstance(client.model.model, PeftModel):
        raise ValueError(
            f"slms: host.name='fedcollm' trains and averages LoRA adapters, but the SLM of "
            f"client {client.client_id} ({client.model.name}) has none; set `lora` in its spec "
            '(e.g. slms = [{preset = "tiny-1m", lora = {r = 4}}])'
        )


# --------------------------------------------------------------------------- the host
@dataclass
class FedCoLLMServerState:
    """What the FedCoLLM server keeps: the global SLM and what each client holds of it."""

    slm: ReasoningModel | None = None  # the global SLM (the clients' base + the FedAvg adapter)
    examples: int = 0  # examples behind the current global adapter (its FedAvg weight)
    base_source: str = ""  # source spec (JSON) of the global SLM's base
    base_dtype: str = ""
    base_fingerprint: str = ""
    #: Base fingerprint each client was last known to hold.
    client_bases: dict[int, str] = field(default_factory=dict)
    #: Clients that hold the current global adapter already (no need to send it again).
    holders: set[int] = field(default_factory=set)
    #: Clients the distilled adapter went to with this round's evaluation request.
    delivered: set[int] = field(default_factory=set)

    def global_slm(self) -> ReasoningModel:
        if self.slm is None:
            raise RuntimeError("fedcollm: no global SLM yet (the setup exchange builds it)")
        return self.slm


class FedCoLLM(Host[FedCoLLMConfig]):
    name: ClassVar[str] = "fedcollm"
    exchanges: ClassVar[tuple[str, ...]] = ("train",)

    def round_steps(self) -> dict[str, Exchange]:
        return {"train": Exchange(self.send_train, self.client_train, self.receive_train)}

    # ------------------------------------------------------------------ setup
    def client_setup(self, client: ClientParty, payload: Payload, round_idx: int) -> Payload:
        require_lora(client)
        super().client_setup(client, payload, round_idx)
        return SLMCard(
            tensors=adapter_arrays(client.model),
            num_examples=len(client.train),
            source=json.dumps(client.model.source, sort_keys=True),
            dtype=dtype_name(client.model),
            base_fingerprint=base_fingerprint(client.model),
        )

    def receive_setup(
        self, server: ServerParty, replies: dict[int, Payload], round_idx: int
    ) -> None:
        cards = {cid: reply for cid, reply in replies.items() if isinstance(reply, SLMCard)}
        if len(cards) != len(replies) or not cards:
            raise PayloadError("fedcollm: every client must answer setup with an slm_card")
        first = min(cards)
        card = cards[first]
        with server.log.phase("aggregation"):
            slm = build_from_source(card.source, device=server.model.device, dtype=card.dtype)
            slm.name = GLOBAL_SLM_NAME
            if base_fingerprint(slm) != card.base_fingerprint:
                raise ValueError(
                    f"fedcollm: the server cannot rebuild the SLM base of client {first} from its "
                    f"source spec {card.source}; its weights must come from a preset, hub id or "
                    "directory the server can read as well"
                )
            check_shared_vocabulary(server.model, slm)
            same_base = sorted(
                c for c in cards if cards[c].base_fingerprint == card.base_fingerprint
            )
            global_state = fedavg(
                [cards[c].tensors for c in same_base],
                [cards[c].num_examples for c in same_base],
                names=[f"client {c}" for c in same_base],
            )
            load_adapter(slm, global_state)
        server.state = FedCoLLMServerState(
            slm=slm,
            examples=sum(cards[c].num_examples for c in same_base),
            base_source=card.source,
            base_dtype=card.dtype,
            base_fingerprint=card.base_fingerprint,
            client_bases={cid: c.base_fingerprint for cid, c in cards.items()},
        )
        server.log.count("base_resyncs", len(cards) - len(same_base))

    # ------------------------------------------------------------------ train
    def send_train(
        self, server: ServerParty, round_idx: int, client_ids: list[int]
    ) -> dict[int, Payload]:
        state = host_state(server, FedCoLLMServerState)
        tensors = adapter_arrays(state.global_slm())
        llm_paths = None
        if self.lada_enabled:  # the LLM learns every round: its paths are rewritten each time
            llm_paths = write_public_paths(
                server,
                server.public_pool,
                max_new_tokens=self.train.max_new_tokens,
                batch_size=self.train.generation_batch_size,
            )
        out: dict[int, Payload] = {}
        for cid in client_ids:
            # A client that was evaluated on the current global adapter still holds it.
            held = cid in state.holders
            message = GlobalAdapter(tensors={} if held else tensors, num_examples=state.examples)
            if state.client_bases.get(cid) != state.base_fingerprint:
                message.base_source = state.base_source
                message.base_dtype = state.base_dtype
                message.base_fingerprint = state.base_fingerprint
                # The client checks on arrival that its rebuilt base has this fingerprint.
                state.client_bases[cid] = state.base_fingerprint
            if llm_paths is not None:
                message.set_paths(llm_paths)
            out[cid] = message
        return out

    def client_train(self, client: ClientParty, payload: Payload, round_idx: int) -> Payload:
        if not isinstance(payload, GlobalAdapter):
            raise PayloadError(f"fedcollm: client train expects global_adapter, got {payload.kind}")
        with client.log.phase("aggregation"):
            if payload.base_source:
                self._rebuild_base(client, payload)
            if payload.tensors:  # none: the client holds the global adapter since evaluation
                load_adapter(client.model, payload.tensors)
        seed = self.train_private(client, round_idx)
        reply = AdapterUpdate(num_examples=len(client.train))
        if self.lada_enabled:
            self.client_lada(client, payload.public_paths(), round_idx, seed)
            reply.set_paths(
                write_public_paths(
                    client,
                    client.public_pool,
                    max_new_tokens=self.train.max_new_tokens,
                    batch_size=self.train.generation_batch_size,
                )
            )
        reply.tensors = adapter_arrays(client.model)
        return reply

    def receive_train(
        self, server: ServerParty, replies: dict[int, Payload], round_idx: int
    ) -> None:
        state = host_state(server, FedCoLLMServerState)
        slm = state.global_slm()
        updates = {cid: r for cid, r in sorted(replies.items()) if isinstance(r, AdapterUpdate)}
        if len(updates) != len(replies):
            raise PayloadError("fedcollm: every client must answer train with an adapter_update")
        if not updates:
            return
        with server.log.phase("aggregation"):
            global_state = fedavg(
                [u.tensors for u in updates.values()],
                [u.num_examples for u in updates.values()],
                names=[f"client {cid}" for cid in updates],
            )
            load_adapter(slm, global_state)
        state.examples = sum(u.num_examples for u in updates.values())
        state.holders = set()  # a new global adapter: nobody holds it yet
        if self.lada_enabled:
            offers = [
                (update.public_paths(), step_seed(round_idx, 1000 + cid))
                for cid, update in updates.items()
            ]
            self.server_lada(server, offers, {it.id: it for it in server.public_pool}, round_idx)
        else:
            self._server_distill(server, slm, round_idx)

    # --------------------------------------------------------------- evaluate
    def send_evaluate(
        self, server: ServerParty, round_idx: int, client_ids: list[int]
    ) -> dict[int, Payload]:
        """Without LaDa: the adapter distilled this round, to each client on the global base.

        The SLM learned from the LLM on the server after the clients' step, so it reaches the
        clients before they are evaluated, as LaDa's client-side distillation does (see the
        module's "Timing"). With LaDa, and before round 1, the request carries nothing.
        """
        state = host_state(server, FedCoLLMServerState)
        if self.lada_enabled or round_idx == 0 or state.slm is None:
            return super().send_evaluate(server, round_idx, client_ids)
        tensors = adapter_arrays(state.slm)
        out: dict[int, Payload] = {}
        for cid in client_ids:
            on_global_base = state.client_bases.get(cid) == state.base_fingerprint
            out[cid] = (
                GlobalAdapter(tensors=tensors, num_examples=state.examples)
                if on_global_base
                else Empty()
            )
        state.delivered = {cid for cid, m in out.items() if isinstance(m, Weights)}
        return out

    def client_evaluate(self, client: ClientParty, payload: Payload, round_idx: int) -> Payload:
        if isinstance(payload, GlobalAdapter):
            with client.log.phase("aggregation"):
                load_adapter(client.model, payload.tensors)
            client.log.count("distilled_adapter_loaded")
            payload = Empty()
        return super().client_evaluate(client, payload, round_idx)

    def receive_evaluate(
        self, server: ServerParty, replies: dict[int, Payload], round_idx: int
    ) -> None:
        super().receive_evaluate(server, replies, round_idx)
        state = host_state(server, FedCoLLMServerState)
        state.holders = state.delivered & set(replies)
        state.delivered = set()

    # ---------------------------------------------------------------- helpers
    def _server_distill(self, server: ServerParty, slm: ReasoningModel, round_idx: int) -> None:
        """Mutual KD on the public pool: the aggregated SLM takes `budget.client_steps` steps
        (once for all clients, which receive it), the LLM `budget.server_steps`."""
        budget = self.budget
        if not server.public_pool or budget.client_steps + budget.server_steps == 0:
            return
        prompts = [render_prompt(it) for it in server.public_pool]
        paths = [gold_path(it) for it in server.public_pool]
        usage = {server.model.name: TrainUsage(), slm.name: TrainUsage()}
        with server.log.phase("distillation"):
            history = mutual_distill(
                server.model,
                slm,
                prompts,
                paths,
                kd_weight=self.config.kd_weight,
                temperature=self.config.temperature,
                top_k=self.config.top_k,
                slm_steps=budget.client_steps,
                llm_steps=budget.server_steps,
                batch_size=self.train.batch_size,
                seed=step_seed(round_idx, 999),
                usage=usage,
            )
        for name, spent in usage.items():
            server.log.spend(name, spent)
        server.log.losses["kd_llm_to_slm"].extend(history["slm"])
        server.log.losses["kd_slm_to_llm"].extend(history["llm"])

    @staticmethod
    def _rebuild_base(client: ClientParty, payload: GlobalAdapter) -> None:
        """Replace this client's frozen base by the global one (built locally from its spec)."""
        base = build_from_source(
            payload.base_source, device=client.model.device, dtype=payload.base_dtype
        )
        frozen = {n: p.detach() for n, p in base.model.named_parameters() if not p.requires_grad}
        client.model.load_trainable_state(frozen)
        if base_fingerprint(client.model) != payload.base_fingerprint:
            raise ValueError(
                f"fedcollm: client {client.client_id} rebuilt the global SLM base from "
                f"{payload.base_source} but its weights differ from the server's"
            )
        client.log.count("base_resync")
