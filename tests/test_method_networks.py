"""The filter's networks: the regression loss, the training loop's steps and reported loss, and
the exploration inputs' edge cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lada.method.networks import (
    RewardMLP,
    exploration_features,
    fit_regressor,
    pooled_gradient,
    regression_loss,
)


def _data(n: int = 10, dim: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, dim, generator=generator), torch.randn(n, generator=generator)


def _net(dim: int = 5) -> RewardMLP:
    torch.manual_seed(0)
    return RewardMLP(dim, hidden_size=8, n_hidden_layers=2)


class CountingSGD(torch.optim.SGD):
    """SGD that counts its steps."""

    def __init__(self, params, lr: float) -> None:
        super().__init__(params, lr=lr)
        self.steps = 0

    def step(self, closure=None):  # type: ignore[no-untyped-def, override]
        self.steps += 1
        return super().step(closure)


@pytest.mark.parametrize("kind", ["l1", "mse"])
def test_regression_loss_is_the_named_loss(kind: str) -> None:
    pred, target = torch.tensor([0.0, 2.0, -1.0]), torch.tensor([1.0, 0.0, -1.0])
    expected = F.l1_loss(pred, target) if kind == "l1" else F.mse_loss(pred, target)
    assert float(regression_loss(pred, target, kind)) == pytest.approx(float(expected))
    assert float(regression_loss(pred, target, "mse")) == pytest.approx(5 / 3)
    assert float(regression_loss(pred, target, "l1")) == pytest.approx(1.0)


def test_unknown_losses_and_exploration_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="loss: 'huber' is not one of 'l1', 'mse'"):
        regression_loss(torch.zeros(1), torch.zeros(1), "huber")
    with pytest.raises(ValueError, match="exploration_input: 'both' is not one of"):
        exploration_features(_net(), torch.zeros(2, 5), "both", 4)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["l1", "mse"])
def test_fit_takes_one_step_per_batch_and_reports_the_last_epochs_mean_loss(kind: str) -> None:
    """With a learning rate of 0 the weights stay put, so the mean batch loss of an epoch,
    weighted by batch size, is the loss over all rows (10 rows in batches of 4, 4 and 2)."""
    x, y = _data()
    net = _net()
    optimizer = CountingSGD(net.parameters(), lr=0.0)
    reported = fit_regressor(
        net, optimizer, x, y, epochs=3, batch_size=4, loss=kind, generator=torch.Generator()
    )
    assert optimizer.steps == 3 * math.ceil(10 / 4)
    with torch.no_grad():
        whole = float(regression_loss(net(x)[0], y, kind))
    assert reported == pytest.approx(whole, rel=1e-6)
    assert not net.training  # left in eval mode for scoring


def test_a_single_row_reports_its_own_loss() -> None:
    x, y = _data(n=1)
    net = _net()
    reported = fit_regressor(
        net, torch.optim.SGD(net.parameters(), lr=0.0), x, y,
        epochs=1, batch_size=4, loss="l1", generator=torch.Generator(),
    )  # fmt: skip
    with torch.no_grad():
        assert reported == pytest.approx(abs(float(net(x)[0][0]) - float(y[0])), rel=1e-6)


def test_fit_trains_on_every_row_and_zero_epochs_do_nothing() -> None:
    x, y = _data()
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    optimizer = CountingSGD(net.parameters(), lr=0.1)
    assert (
        fit_regressor(
            net, optimizer, x, y, epochs=0, batch_size=4, loss="l1", generator=torch.Generator()
        )
        == 0.0
    )
    assert optimizer.steps == 0
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())

    with torch.no_grad():
        start = float(regression_loss(net(x)[0], y, "mse"))
    fit_regressor(
        net, optimizer, x, y, epochs=30, batch_size=4, loss="mse", generator=torch.Generator()
    )
    with torch.no_grad():
        assert float(regression_loss(net(x)[0], y, "mse")) < 0.5 * start


def test_pooled_gradient_of_no_rows_is_an_empty_matrix() -> None:
    empty = pooled_gradient(_net(), torch.zeros(0, 5), pool_size=4)
    assert empty.shape == (0, 4)
    hidden = exploration_features(_net(), torch.zeros(3, 5), "hidden", 4)
    assert hidden.shape == (3, 8) and not hidden.requires_grad
