"""Saving `ReasoningModel`s so that outputs round-trip exactly (loading them back is
`lada.models.presets.load_model`, which rebuilds the architecture first).

A saved model is a folder: `lada_model.json` (how to rebuild the architecture), the tokenizer,
and `weights.safetensors`. Tiny and fully fine-tuned models store every weight; LoRA models on a
hub base store only the adapter and rebuild the base from its id, so a 7B checkpoint stays small.
Files are written into a temporary sibling folder and renamed into place, so a crash mid-save
never leaves a half-written model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from lada.models.wrapper import MODEL_CARD, ReasoningModel

WEIGHTS = "weights.safetensors"
OPTIMIZER = "optimizer.pt"


def _stores_all_weights(model: ReasoningModel) -> bool:
    return model.source.get("kind") == "tiny" or not model.source.get("lora")


def save_model(model: ReasoningModel, directory: Path, *, with_optimizer: bool = False) -> None:
    partial = directory.with_name(directory.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    full = _stores_all_weights(model)
    state = model.model.state_dict() if full else model.trainable_state()
    # Tied weights share storage; safetensors wants each tensor once and contiguous.
    seen: dict[int, str] = {}
    tensors, aliases = {}, {}
    for name, tensor in state.items():
        key = tensor.data_ptr()
        if key in seen and tensor.data_ptr() != 0:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = tensor.detach().cpu().contiguous()
    save_file(tensors, str(partial / WEIGHTS))
    model.tokenizer.save_pretrained(partial / "tokenizer")
    card = {
        "source": model.source,
        "name": model.name,
        "full_weights": full,
        "aliases": aliases,
        "add_bos": model.add_bos,
        "max_length": model.max_length,
        "learning_rate": model.learning_rate,
        "weight_decay": model.weight_decay,
        "grad_clip": model.grad_clip,
        "dtype": str(next(model.model.parameters()).dtype).removeprefix("torch."),
    }
    (partial / MODEL_CARD).write_text(json.dumps(card, indent=2, sort_keys=True))
    if with_optimizer and model._optimizer is not None:
        torch.save(model._optimizer.state_dict(), partial / OPTIMIZER)
    if directory.exists():
        shutil.rmtree(directory)
    partial.rename(directory)
