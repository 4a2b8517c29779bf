"""The shipped pretrained bases: they load, say how they were made, and still do what they claim."""

from __future__ import annotations

import pytest

from lada.experiments.pretrain_cli import SAMPLE_PER_DOMAIN
from lada.models.presets import load_model
from lada.models.shipped import SHIPPED, WEIGHTS_DIR, measure

#: The levels the teacher is meant to teach, and the accuracy it must keep on them.
TAUGHT = ("chain_sum", "leg_counting", "basic_arithmetic")
TEACHER_FLOOR = 0.9


def test_shipped_weights_are_small() -> None:
    files = list(WEIGHTS_DIR.glob("*.safetensors"))
    assert {f.stem for f in files} == set(SHIPPED)
    assert sum(f.stat().st_size for f in files) <= 25e6


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_recorded_config_is_what_lada_pretrain_uses(name: str) -> None:
    record = SHIPPED[name].record()
    assert record["pretrain"] == SHIPPED[name].pretrain.model_dump(mode="json")
    assert record["name"] == name


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_loads_by_name_in_fp32(name: str) -> None:
    model = load_model(name, device="cpu", label="x")
    assert model.name == "x"
    assert next(model.model.parameters()).dtype.is_floating_point
    twin = load_model(name, device="cpu")
    for a, b in zip(model.model.parameters(), twin.model.parameters(), strict=True):
        assert a.equal(b)  # the same weights every time: nothing random survives the load


@pytest.mark.slow
def test_teacher_still_meets_its_documented_accuracy() -> None:
    shipped = SHIPPED["proof-teacher"]
    recorded = shipped.record()["sample"]
    model = load_model("proof-teacher", device="cpu", dtype="float32")
    measured = measure(model, shipped, per_domain=SAMPLE_PER_DOMAIN)
    for domain in TAUGHT:
        assert measured["per_domain"][domain] >= TEACHER_FLOOR, domain
        # Greedy decoding of the same weights on the same sample: at most one item may flip
        # between machines (float rounding can change one argmax).
        assert abs(measured["per_domain"][domain] - recorded["per_domain"][domain]) <= (
            1 / SAMPLE_PER_DOMAIN + 1e-9
        )


@pytest.mark.slow
def test_student_base_is_weak_where_the_setting_needs_it() -> None:
    record = SHIPPED["proof-student"].record()
    teacher = SHIPPED["proof-teacher"].record()
    for domain in TAUGHT:
        assert record["proof_levels"][domain] <= 0.5
        assert teacher["measured"]["per_domain"][domain] - record["proof_levels"][domain] >= 0.4
