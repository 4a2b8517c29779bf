"""`lada local`: each preset trains at its own rate unless the user sets one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lada.cli import app
from lada.models.presets import PRETRAINED_LEARNING_RATE, TINY_PRESETS, default_learning_rate

RUNNER = CliRunner()
SMALL = ["--suite", "easy", "--train-per-domain", "2", "--test-per-domain", "1", "--epochs", "1"]


def _run(tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "local.json"
    args = ["local", "-m", "tiny-1m", "-m", "tiny-2m", *SMALL, "--device", "cpu"]
    result = RUNNER.invoke(app, [*args, "--out", str(out), *extra])
    assert result.exit_code == 0, result.output
    assert "all" in result.stdout
    return json.loads(out.read_text())


def test_each_preset_trains_at_its_own_rate_by_default(tmp_path: Path) -> None:
    payload = _run(tmp_path)
    assert payload["learning_rates"] == {
        "tiny-1m": TINY_PRESETS["tiny-1m"].learning_rate,
        "tiny-2m": TINY_PRESETS["tiny-2m"].learning_rate,
    }
    assert payload["schedule"]["decay"] == "cosine"
    assert [label.split()[0] for label in payload["results"]] == ["tiny-1m", "tiny-2m"]


def test_a_given_rate_and_schedule_apply_to_every_model(tmp_path: Path) -> None:
    payload = _run(tmp_path, "--lr", "2e-4", "--decay", "constant")
    assert payload["learning_rates"] == {"tiny-1m": 2e-4, "tiny-2m": 2e-4}
    assert payload["schedule"]["decay"] == "constant"


def test_an_unknown_decay_is_refused_before_training(tmp_path: Path) -> None:
    result = RUNNER.invoke(app, ["local", *SMALL, "--decay", "step"])
    assert result.exit_code != 0
    assert "--decay: 'step' is not constant, linear or cosine" in result.output


@pytest.mark.parametrize("name", ["smollm2-135m", "Qwen/Qwen2.5-0.5B-Instruct", "/some/dir"])
def test_pretrained_weights_default_to_a_fine_tuning_rate(name: str) -> None:
    assert default_learning_rate(name) == PRETRAINED_LEARNING_RATE


def test_wider_presets_default_to_lower_rates() -> None:
    # Rates fall with width (tiny-1m's stability cliff, scaled): a wider preset never gets a
    # higher default than a narrower one.
    by_width = sorted(TINY_PRESETS.values(), key=lambda spec: spec.hidden)
    rates = [spec.learning_rate for spec in by_width]
    assert rates == sorted(rates, reverse=True)
