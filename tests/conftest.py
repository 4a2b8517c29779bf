"""Shared test setup: offline hub, a private cache, and small deterministic models."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from lada.models.presets import load_model  # noqa: E402
from lada.models.wrapper import ReasoningModel  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep converted/pretrained models of the tests out of the user's cache."""
    if "LADA_CACHE" not in os.environ:
        os.environ["LADA_CACHE"] = str(tmp_path_factory.mktemp("lada-cache"))
    torch.set_num_threads(1)  # tiny models: one thread avoids oversubscription on small CPUs


def spread_weights(model: ReasoningModel, seed: int = 0, std: float = 0.4) -> ReasoningModel:
    """Re-draw weights with a large spread so an untrained model's outputs depend on its input."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return model


@pytest.fixture
def varied_tiny() -> ReasoningModel:
    """tiny-1m with weights that make greedy outputs differ from prompt to prompt."""
    return spread_weights(load_model("tiny-1m", device="cpu", seed=0))
