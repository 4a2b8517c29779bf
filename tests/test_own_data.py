"""A user's own data files with the tiny presets: typographic text is normalised, end to end."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from lada.apps.client_app import own_items
from lada.experiments.config import ConfigError, load_config, validate
from lada.experiments.runner import Runner
from lada.experiments.setup import load_items, load_split, normalization_alphabet
from lada.models.coverage import CoverageError
from lada.models.tokenizer import CHAR_ALPHABET
from lada.tasks.item import ReasoningItem
from tests.test_end_to_end import tiny_config

ASCII = frozenset(CHAR_ALPHABET)
REPO = Path(__file__).parents[1]
# 8 public + 2 clients x (6 train + 3 test) = 26 of 30 items.
SPLIT = {"n_public": 8, "n_clients": 2, "n_train": 6, "n_test": 3, "evaluation_share": None}


def write_gsm8k(path: Path, n: int = 30) -> Path:
    """GSM8K rows whose rationales use an en dash, curly quotes, '×' and a non-breaking space."""
    rows = []
    for i in range(n):
        boxes, pens = i + 2, i % 5 + 3
        total = boxes * pens
        rows.append(
            {
                "question": f"Tom has {boxes} boxes with {pens} pens in each. How many pens?",
                "answer": f"Each box holds {pens} pens \u2013 so Tom\u2019s {boxes}\u00a0boxes "
                f"hold {boxes} \u00d7 {pens} = <<{boxes}*{pens}={total}>>{total} pens.\n"
                f"That is \u201c{total}\u201d in all.\n#### {total}",
            }
        )
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def write_csqa(path: Path, n: int = 30) -> Path:
    """CommonsenseQA rows (nested `question.stem`/`question.choices`, `answerKey`), some with an
    ECQA-style explanation and a curly apostrophe."""
    places = ["kitchen", "garden", "garage", "bathroom", "bedroom"]
    things = ["spoon", "rake", "wrench", "towel", "pillow"]
    rows = []
    for i in range(n):
        k, turn = i % 5, 2 * i % 5
        order = places[turn:] + places[:turn]  # the right room moves through the positions
        answer = "ABCDE"[order.index(places[k])]
        row = {
            "answerKey": answer,
            "id": f"csqa-{i}",
            "question": {
                "question_concept": things[k],
                "choices": [{"label": "ABCDE"[j], "text": room} for j, room in enumerate(order)],
                "stem": f"Where does the family\u2019s {things[k]} number {i} usually belong?",
            },
        }
        if i % 3 == 0:
            row["explanation"] = f"A {things[k]} is used in the {places[k]}."
        rows.append(row)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def gsm8k_config(tmp_path: Path, **data) -> dict:
    path = write_gsm8k(tmp_path / "user_gsm8k.jsonl")
    return tiny_config(
        tmp_path,
        "fedcot",
        True,
        data={"path": str(path), "format": "gsm8k", "split": SPLIT, **data},
    )


def _texts(item: ReasoningItem) -> str:
    return "".join([item.question, item.rationale, item.answer, *item.choices])


def _held_items(runner: Runner) -> list[ReasoningItem]:
    federation = runner.federation
    assert federation is not None
    held = list(federation.server.public_pool)
    for client in federation.clients:
        held += [*client.train, *client.test]
    return held


def test_a_gsm8k_file_with_typographic_text_runs_end_to_end(tmp_path, caplog) -> None:
    config = validate(gsm8k_config(tmp_path))
    with caplog.at_level(logging.WARNING, logger="lada.data"):
        runner = Runner(config)
    result = runner.run()

    held = _held_items(runner)
    assert held and all(set(_texts(item)) <= ASCII for item in held)
    assert any("Tom's" in item.rationale and " * " in item.rationale for item in held)
    records = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in records] == [0, 1]
    assert set(records[-1]["clients"]) == {"0", "1"}

    report = json.loads((result.run_dir / "summary.json").read_text())["text_normalization"]
    assert report["items"] == 30 and report["items_changed"] == 30
    assert {"\u2013", "\u2019", "\u00d7", "\u00a0", "\u201c", "\u201d"} <= set(report["rewritten"])
    assert report["unmapped"] == {}
    logged = [r.getMessage() for r in caplog.records if r.name == "lada.data"]
    assert any("user_gsm8k.jsonl" in m and "changed 30 of 30 items" in m for m in logged)


def test_without_normalisation_the_gsm8k_file_fails_naming_file_item_and_field(tmp_path) -> None:
    config = validate(gsm8k_config(tmp_path, normalize_text="none"))
    with pytest.raises(CoverageError) as caught:
        Runner(config)
    message = str(caught.value)
    assert str(tmp_path / "user_gsm8k.jsonl") in message
    assert "item 'user_gsm8k:" in message and "rationale" in message
    assert "'\u2013'" in message and "'\u00d7'" in message


def test_a_commonsenseqa_file_runs_end_to_end_on_the_shipped_bases(tmp_path) -> None:
    path = write_csqa(tmp_path / "csqa.jsonl")
    config = validate(
        tiny_config(
            tmp_path,
            "fedcot",
            True,
            data={"path": str(path), "format": "mc", "split": SPLIT},
            llm={"preset": "proof-teacher"},
            slms=[{"preset": "proof-student"}],
        )
    )
    runner = Runner(config)
    result = runner.run()

    held = _held_items(runner)
    assert all(item.answer_kind == "option" and len(item.choices) == 5 for item in held)
    assert all(set(_texts(item)) <= ASCII for item in held)
    assert any("family's" in item.question for item in held)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["text_normalization"]["rewritten"] == {"\u2019": 30}
    assert set(summary["final"]["slm_accuracy"]) == {"0", "1"}


def test_a_flower_clients_own_file_is_normalised_as_the_run_data_is(tmp_path) -> None:
    config = validate(gsm8k_config(tmp_path))
    context = SimpleNamespace(
        node_config={"partition-id": 1, "data-path": config.data.path, "data-format": "gsm8k"}
    )
    train, test = own_items(config, context, 1)  # type: ignore[arg-type]
    expected = {item.id: item for item in load_items(config)}
    assert len(train) == 6 and len(test) == 3
    for item in [*train, *test]:
        assert item == expected[item.id] and set(_texts(item)) <= ASCII


def test_auto_normalises_only_for_tiny_tokenizers(tmp_path) -> None:
    def alphabet(**fields) -> str | None:
        return normalization_alphabet(
            validate(gsm8k_config(tmp_path, **fields.pop("data", {})) | fields)
        )

    hub = {"llm": {"preset": "qwen2.5-7b-instruct"}, "slms": [{"preset": "qwen2.5-0.5b-instruct"}]}
    assert alphabet() == CHAR_ALPHABET  # tiny-1m
    assert alphabet(slms=[{"preset": "proof-student"}]) == CHAR_ALPHABET
    assert alphabet(**hub) is None
    assert alphabet(data={"normalize_text": "ascii"}, **hub) == CHAR_ALPHABET
    assert alphabet(data={"normalize_text": "none"}) is None
    with pytest.raises(ConfigError, match="data.placeholder"):
        validate(gsm8k_config(tmp_path, placeholder="\u00a4"))


def test_the_shipped_multiple_choice_sample_fits_its_config(monkeypatch) -> None:
    monkeypatch.chdir(REPO)  # the config names the sample relative to the repository root
    config = load_config(REPO / "configs" / "mc-tiny.toml")
    assert config.data.path is not None and (REPO / config.data.path).exists()
    assert normalization_alphabet(config) == CHAR_ALPHABET
    items = load_items(config)
    assert 60 <= len(items) <= 100
    assert all(item.answer_kind == "option" and len(item.choices) == 5 for item in items)
    assert all(set(_texts(item)) <= ASCII for item in items)
    split = load_split(config)
    assert len(split.public_pool) == config.data.split.n_public
    assert normalization_alphabet(load_config(REPO / "configs" / "csqa-qwen.toml")) is None
