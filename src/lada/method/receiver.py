"""What LaDa's hooks need from a receiving model.

`lada.models.wrapper.ReasoningModel` has all of it; a host that brings its own model wrapper
implements these methods (with the same meaning) and the plug-in works unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from lada.models.wrapper import ReasoningModel


class Receiver(Protocol):
    """A model that learns from another party's paths through the LaDa plug-in."""

    name: str

    def score_paths(
        self, prompts: Sequence[str], paths: Sequence[str], *, grad: bool = False
    ) -> Any:
        """Per-token and summed log p(path | prompt) in one padded forward pass (`PathScores`)."""
        ...

    def embed(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Mean-pooled last hidden state of each text: [N, hidden]."""
        ...

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
        """The model's own paths after each prompt (the negatives), each ending after its answer."""
        ...

    def pack(
        self, prompts: Sequence[str], paths: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Padded ids, attention mask and path-target mask (token accounting reads the mask)."""
        ...

    def train_step(self, loss: torch.Tensor) -> float:
        """Backward on the loss and one optimizer step."""
        ...

    def clone(self) -> ReasoningModel:
        """An independent copy ('rho_loss' trains its irreducible-loss model on one)."""
        ...
