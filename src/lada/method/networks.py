"""The filter's two small networks and how they are trained.

f1 (exploitation) regresses the observed reward of an item from its features. f2 (exploration)
regresses the residual r - f1(x), the gain f1 has not captured yet, from a representation of x as
f1 sees it: f1's last hidden layer, or (EE-Net style) the gradient of f1's output with respect to
its last layers. Both are plain ReLU MLPs; they run on whatever device their parameters are on.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

ExplorationInput = Literal["hidden", "gradient"]

#: Rows per chunk when computing per-sample gradients (bounds memory to chunk x params).
GRADIENT_CHUNK = 128


class RewardMLP(nn.Module):
    """A ReLU MLP with a scalar head that also returns its last hidden layer."""

    def __init__(self, in_dim: int, hidden_size: int, n_hidden_layers: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(n_hidden_layers):
            layers += [nn.Linear(width, hidden_size), nn.ReLU()]
            width = hidden_size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(hidden_size, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.body(x)
        return self.head(hidden).squeeze(-1), hidden

    def last_layer_names(self) -> list[str]:
        """Parameters of the last hidden Linear and of the head (the EE-Net gradient's span).

        The head alone would not do: its gradient is just [hidden, 1], i.e. the 'hidden' input.
        """
        last_linear = max(i for i, m in enumerate(self.body) if isinstance(m, nn.Linear))
        return [
            f"body.{last_linear}.weight",
            f"body.{last_linear}.bias",
            "head.weight",
            "head.bias",
        ]


def exploration_features(
    f1: RewardMLP, x: torch.Tensor, mode: ExplorationInput, pool_size: int
) -> torch.Tensor:
    """Input of f2 for features x, detached from f1."""
    if mode == "hidden":
        with torch.no_grad():
            return f1(x)[1]
    if mode == "gradient":
        return pooled_gradient(f1, x, pool_size)
    raise ValueError(f"exploration_input: {mode!r} is not one of 'hidden', 'gradient'")


def pooled_gradient(f1: RewardMLP, x: torch.Tensor, pool_size: int) -> torch.Tensor:
    """Per-sample d f1(x) / d(last layers), mean-pooled to `pool_size` values, unit RMS per row.

    The RMS normalisation keeps f2's input on a fixed scale while f1's weights (and with them
    the raw gradient magnitude) change from round to round; the direction carries the signal.
    """
    names = f1.last_layer_names()
    all_params = {k: v.detach() for k, v in f1.named_parameters()}
    varied = {k: all_params[k] for k in names}
    fixed = {k: v for k, v in all_params.items() if k not in varied}

    def output(params: dict[str, torch.Tensor], row: torch.Tensor) -> torch.Tensor:
        return functional_call(f1, {**fixed, **params}, (row.unsqueeze(0),))[0].squeeze(0)

    per_sample = vmap(grad(output), in_dims=(None, 0))
    chunks = []
    for lo in range(0, len(x), GRADIENT_CHUNK):
        grads = per_sample(varied, x[lo : lo + GRADIENT_CHUNK].detach())
        flat = torch.cat([grads[k].reshape(grads[k].shape[0], -1) for k in names], dim=1)
        chunks.append(F.adaptive_avg_pool1d(flat.unsqueeze(1), pool_size).squeeze(1))
    if not chunks:
        return x.new_zeros((0, pool_size))
    pooled = torch.cat(chunks)
    rms = pooled.pow(2).mean(dim=1, keepdim=True).sqrt().clamp(min=torch.finfo(x.dtype).tiny)
    return pooled / rms


def exploration_dim(mode: ExplorationInput, hidden_size: int, pool_size: int) -> int:
    return hidden_size if mode == "hidden" else pool_size


def regression_loss(pred: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "mse":
        return F.mse_loss(pred, target)
    raise ValueError(f"loss: {kind!r} is not one of 'l1', 'mse'")


def fit_regressor(
    net: RewardMLP,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    loss: str,
    generator: torch.Generator,
) -> float:
    """Shuffled minibatch training; returns the mean loss of the last epoch."""
    net.train()
    last_epoch = 0.0
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator).to(inputs.device)
        total, seen = 0.0, 0
        for lo in range(0, len(order), batch_size):
            rows = order[lo : lo + batch_size]
            value = regression_loss(net(inputs[rows])[0], targets[rows], loss)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            total += float(value.detach()) * len(rows)
            seen += len(rows)
        last_epoch = total / max(seen, 1)
    net.eval()
    return last_epoch
