"""One wrapper around a Hugging Face causal LM, its tokenizer and (optionally) a LoRA adapter.

Every party (the server LLM, each client SLM) is a `ReasoningModel`. Hosts and the LaDa plug-in
only ever talk to models through the handful of methods here, so swapping a built-in tiny model
for a 7B hub model changes nothing above this layer.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, StoppingCriteria

from lada.tasks.prompts import ANSWER_MARKER

if TYPE_CHECKING:
    from peft import PeftModel

MODEL_CARD = "lada_model.json"


@dataclass
class PathScores:
    """Log-probabilities of paths under their prompts from one padded forward pass."""

    token_logprobs: torch.Tensor  # [B, T] log p of each path token, 0 where mask is 0
    mask: torch.Tensor  # [B, T] 1.0 on path tokens (prompt and padding masked out)
    total: torch.Tensor  # [B] summed path log-prob
    n_tokens: torch.Tensor  # [B] number of path tokens

    def mean(self) -> torch.Tensor:
        """Length-normalised log-probability per path."""
        return self.total / self.n_tokens.clamp(min=1)


class _AnswerLineStop(StoppingCriteria):
    """Stops a row once its generated text holds a complete `#### answer` line."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_len: int) -> None:
        self.tokenizer = tokenizer
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(
            input_ids[:, self.prompt_len :], skip_special_tokens=True
        )
        done = [_has_answer_line(t) for t in texts]
        # transformers declares the legacy `torch.BoolTensor`; a bool tensor is what it means.
        return cast(torch.BoolTensor, torch.tensor(done, dtype=torch.bool, device=input_ids.device))


def _has_answer_line(text: str) -> bool:
    at = text.find(ANSWER_MARKER)
    return at >= 0 and "\n" in text[at:]


def path_has_ended(path: str) -> bool:
    """Whether a path ends with a complete `#### answer` line (only whitespace after it).

    Generation stops right after that line, so a path without it was cut by the token limit
    (or is not in this project's format): nothing says the model chose to stop there.
    """
    at = path.find(ANSWER_MARKER)
    if at < 0:
        return False
    end = path.find("\n", at)
    return end >= 0 and not path[end + 1 :].strip()


def cut_after_answer(text: str) -> str:
    """Drop whatever a model wrote after its answer line."""
    at = text.find(ANSWER_MARKER)
    if at < 0:
        return text
    end = text.find("\n", at)
    return text if end < 0 else text[: end + 1]


class ReasoningModel:
    """A causal LM that writes, scores and learns reasoning paths.

    `prompts` and `paths` are plain strings (see `lada.tasks.prompts`). A path that ends with a
    complete `#### answer` line (`path_has_ended`) is scored with an end-of-sequence token
    appended, so training on paths also teaches the model to stop there. A path without that
    line was cut by the generation limit and gets no end-of-sequence token: it is scored as the
    prefix it is, never as if the model had chosen to stop where the limit cut it.
    """

    def __init__(
        self,
        model: PreTrainedModel | PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        name: str,
        add_bos: bool = True,
        max_length: int = 512,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        grad_clip: float = 1.0,
        source: dict[str, Any] | None = None,
    ) -> None:
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.add_bos = add_bos and tokenizer.bos_token_id is not None
        self.max_length = max_length
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        #: How to rebuild this model (preset name, hub id, LoRA spec); written by `save`.
        self.source: dict[str, Any] = dict(source or {})
        self._optimizer: torch.optim.Optimizer | None = None

    # ------------------------------------------------------------------ basics
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def num_parameters(self, trainable_only: bool = False) -> int:
        params = self.model.parameters()
        return sum(p.numel() for p in params if p.requires_grad or not trainable_only)

    def train(self) -> None:
        self.model.train()

    def eval(self) -> None:
        self.model.eval()

    # ---------------------------------------------------------------- encoding
    def _encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
        ids = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        if self.add_bos:
            ids = [[self.tokenizer.bos_token_id, *row] for row in ids]
        return ids

    def _encode_paths(self, paths: Sequence[str]) -> list[list[int]]:
        """Path token ids, with end-of-sequence appended only to paths that have ended."""
        ids = self.tokenizer(list(paths), add_special_tokens=False)["input_ids"]
        eos = self.tokenizer.eos_token_id
        return [
            [*row, eos] if path_has_ended(path) else list(row)
            for row, path in zip(ids, paths, strict=True)
        ]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts of texts under this model's tokenizer (for token-budget accounting)."""
        if not texts:
            return []
        return [
            len(row) for row in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        ]

    def path_token_counts(self, paths: Sequence[str]) -> list[int]:
        """Tokens each path is scored and trained on: its text, plus end-of-sequence if it ended.

        The count `pack` and `score_paths` use, for token-budget accounting and per-token means.
        """
        return [
            n + int(path_has_ended(path))
            for n, path in zip(self.count_tokens(paths), paths, strict=True)
        ]

    def pack(
        self, prompts: Sequence[str], paths: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded prompt+path ids, attention mask and a mask of path-token targets.

        Public for hosts that need raw logits over paths (logit distillation): position t of
        the mask marks whether logits[:, t] predicts a path token. A path that ends with a
        complete `#### answer` line is followed by end-of-sequence (a target too); a path cut by
        the generation limit is not, so stopping there is never a target.
        """
        if len(prompts) != len(paths):
            raise ValueError(f"paths: {len(paths)} paths for {len(prompts)} prompts")
        rows, starts = [], []
        for prompt_ids, path_ids in zip(
            self._encode_prompts(prompts), self._encode_paths(paths), strict=True
        ):
            seq = prompt_ids + path_ids
            start = len(prompt_ids)
            if len(seq) > self.max_length:  # keep the path; drop the prompt's oldest tokens
                cut = len(seq) - self.max_length
                seq, start = seq[cut:], max(start - cut, 1)
            rows.append(seq)
            starts.append(start)
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        target_mask = torch.zeros((len(rows), width - 1), dtype=torch.float32)
        for i, (row, start) in enumerate(zip(rows, starts, strict=True)):
            input_ids[i, : len(row)] = torch.tensor(row)
            attention[i, : len(row)] = 1
            target_mask[i, start - 1 : len(row) - 1] = 1.0  # position t predicts token t+1
        return input_ids.to(self.device), attention.to(self.device), target_mask.to(self.device)

    # ----------------------------------------------------------------- scoring
    def score_paths(
        self, prompts: Sequence[str], paths: Sequence[str], *, grad: bool = False
    ) -> PathScores:
        """Per-token and summed log p(path | prompt) in ONE padded forward pass.

        Callers that need several paths per prompt (a positive and a negative) put them in one
        list, so the model runs once per batch. End-of-sequence is scored only after a path that
        ended with its `#### answer` line (see `pack`); `n_tokens` counts it where it is scored.
        """
        input_ids, attention, target_mask = self.pack(prompts, paths)
        with torch.set_grad_enabled(grad):
            logits = self.model(input_ids=input_ids, attention_mask=attention).logits[:, :-1]
            logits = logits.float()
            targets = input_ids[:, 1:].unsqueeze(-1)
            picked = torch.gather(logits, -1, targets).squeeze(-1)
            token_lp = (picked - torch.logsumexp(logits, dim=-1)) * target_mask
        return PathScores(
            token_logprobs=token_lp,
            mask=target_mask,
            total=token_lp.sum(-1),
            n_tokens=target_mask.sum(-1),
        )

    @torch.no_grad()
    def sequence_logprobs(
        self,
        prompts: Sequence[str],
        paths: Sequence[str],
        *,
        batch_size: int = 32,
        normalize: bool = False,
    ) -> torch.Tensor:
        """Summed (or per-token mean) path log-probs for many items, in batches, on the CPU.

        Items are batched by length (order restored), so padding wastes little compute.
        """
        was_training = self.model.training
        self.model.eval()
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]) + len(paths[i]))
        out = torch.zeros(len(prompts))
        for lo in range(0, len(order), batch_size):
            rows = order[lo : lo + batch_size]
            scores = self.score_paths([prompts[i] for i in rows], [paths[i] for i in rows])
            out[rows] = (scores.mean() if normalize else scores.total).float().cpu()
        self.model.train(was_training)
        return out

    # -------------------------------------------------------------- generation
    @torch.no_grad()
    def generate_paths(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 96,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        batch_size: int = 32,
        seed: int | None = None,
    ) -> list[str]:
        """Paths written after each prompt; each stops after its `#### answer` line."""
        was_training = self.model.training
        self.model.eval()
        prompt_ids = self._encode_prompts(prompts)
        # Batches of similar prompt length waste less compute on padding; order is restored.
        order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
        prompt_ids = [prompt_ids[i] for i in order]
        out: list[str] = []
        rng_devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=rng_devices):
            if seed is not None:
                torch.manual_seed(seed)
            for lo in range(0, len(prompt_ids), batch_size):
                out.extend(
                    self._generate_batch(
                        prompt_ids[lo : lo + batch_size],
                        max_new_tokens=max_new_tokens,
                        do_sample=do_sample,
                        temperature=temperature,
                        top_p=top_p,
                    )
                )
        self.model.train(was_training)
        restored = [""] * len(out)
        for position, index in enumerate(order):
            restored[index] = out[position]
        return restored

    def _generate_batch(self, rows: list[list[int]], **kwargs: Any) -> list[str]:
        rows = [r[-(self.max_length - kwargs["max_new_tokens"]) :] for r in rows]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):  # left padding: every row ends where its path begins
            input_ids[i, width - len(row) :] = torch.tensor(row)
            attention[i, width - len(row) :] = 1
        sampling = {"temperature": kwargs["temperature"], "top_p": kwargs["top_p"], "top_k": 0}
        generate = getattr(self.model, "generate", None)
        if not callable(generate):
            raise TypeError(f"{self.name}: {type(self.model).__name__} cannot generate text")
        generated = generate(
            input_ids=input_ids.to(self.device),
            attention_mask=attention.to(self.device),
            max_new_tokens=kwargs["max_new_tokens"],
            do_sample=kwargs["do_sample"],
            pad_token_id=pad,
            eos_token_id=self.tokenizer.eos_token_id,
            stopping_criteria=[_AnswerLineStop(self.tokenizer, width)],
            **(sampling if kwargs["do_sample"] else {}),
        )
        texts = self.tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
        return [cut_after_answer(t) for t in texts]

    # -------------------------------------------------------------- embedding
    @torch.no_grad()
    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Mean-pooled last hidden state of each text (padding excluded): [N, hidden]."""
        was_training = self.model.training
        self.model.eval()
        chunks = []
        for lo in range(0, len(texts), batch_size):
            rows = self._encode_prompts(texts[lo : lo + batch_size])
            rows = [r[-self.max_length :] for r in rows]
            width = max(len(r) for r in rows)
            input_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id)
            attention = torch.zeros((len(rows), width), dtype=torch.long)
            for i, row in enumerate(rows):
                input_ids[i, : len(row)] = torch.tensor(row)
                attention[i, : len(row)] = 1
            attention = attention.to(self.device)
            out = self.model(
                input_ids=input_ids.to(self.device),
                attention_mask=attention,
                output_hidden_states=True,
            )
            hidden = out.hidden_states[-1].float()
            weights = attention.unsqueeze(-1).float()
            chunks.append(((hidden * weights).sum(1) / weights.sum(1)).cpu().numpy())
        self.model.train(was_training)
        if not chunks:
            return np.zeros((0, self.hidden_size), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32)

    # ---------------------------------------------------------------- training
    @property
    def optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            params = [p for p in self.model.parameters() if p.requires_grad]
            self._optimizer = torch.optim.AdamW(
                params, lr=self.learning_rate, weight_decay=self.weight_decay
            )
        return self._optimizer

    def set_learning_rate(self, lr: float) -> None:
        self.learning_rate = lr
        if self._optimizer is not None:
            for group in self._optimizer.param_groups:
                group["lr"] = lr

    def reset_optimizer(self) -> None:
        """Forget optimizer moments (e.g. after weights were replaced by aggregation)."""
        self._optimizer = None

    def train_step(self, loss: torch.Tensor) -> float:
        """Backward on any scalar loss, clip gradients, take one optimizer step."""
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss: non-finite value {loss.item()} for {self.name}")
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], self.grad_clip
            )
        self.optimizer.step()
        return float(loss.detach())

    # ---------------------------------------------------------- state transfer
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The weights this model learns (LoRA adapter only, when it has one), on the CPU."""
        return {
            name: p.detach().cpu().clone()
            for name, p in self.model.named_parameters()
            if p.requires_grad
        }

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        """Overwrite learned weights in place (e.g. with a FedAvg aggregate)."""
        params = dict(self.model.named_parameters())
        missing = [n for n in state if n not in params]
        if missing:
            raise KeyError(f"state: unknown parameters {missing[:3]} for {self.name}")
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value.to(params[name].device, params[name].dtype))

    def clone(self) -> ReasoningModel:
        """An independent deep copy (weights, tokenizer, settings; a fresh optimizer)."""
        twin = copy.copy(self)
        twin.model = copy.deepcopy(self.model)
        twin.source = dict(self.source)
        twin._optimizer = None
        return twin

    def __getstate__(self) -> dict[str, Any]:
        """Pickle support (round checkpoints, client state between Flower messages).

        `transformers` installs output-capturing forward hooks that are local functions and
        cannot be pickled; they are dropped here and reinstalled on the next forward pass.
        """
        _drop_capture_hooks(self.model)
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        _register_capture_specs(self.model)


def read_card(directory: Path) -> dict[str, Any]:
    card = directory / MODEL_CARD
    if not card.exists():
        raise FileNotFoundError(f"{card}: not a saved lada model (no {MODEL_CARD})")
    return json.loads(card.read_text())


def _drop_capture_hooks(model: torch.nn.Module) -> None:
    """Remove transformers' lazily installed output-capturing hooks (they reinstall on use)."""
    for module in model.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks):
            for key in [k for k, h in hooks.items() if _is_capture_hook(h)]:
                del hooks[key]
        if getattr(module, "_output_capturing_hooks_installed", False):
            # torch types Module attribute assignment as Tensor | Module only; plain flags are fine
            module._output_capturing_hooks_installed = False  # type: ignore[assignment]


def _is_capture_hook(hook: Any) -> bool:
    return getattr(hook, "__qualname__", "").startswith("install_output_capuring_hook.")


def _register_capture_specs(model: torch.nn.Module) -> None:
    """Tell transformers which outputs an unpickled model can capture.

    transformers records this per model class when a model is constructed; a process that only
    unpickles models never constructs one, and hidden states would silently come back empty.
    """
    from transformers import PreTrainedModel
    from transformers.utils.output_capturing import _CAN_RECORD_REGISTRY

    for module in model.modules():
        if isinstance(module, PreTrainedModel) and getattr(module, "_can_record_outputs", None):
            _CAN_RECORD_REGISTRY[module] = module._can_record_outputs
