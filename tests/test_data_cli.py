"""`lada data check` and `lada data show` through the real `lada` app."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from lada.cli import app

RUNNER = CliRunner()
GOOD = {"question": "Tom has 2 apples and buys 3. How many?", "answer": "2+3=5\n#### 5"}
MC = {"question": "Pick [b]", "choices": ["x", "y"], "answer": "B", "rationale": "y is [bold]"}


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    return path


def test_check_counts_items_per_answer_kind(tmp_path: Path) -> None:
    path = _write(tmp_path / "gsm.jsonl", [GOOD, GOOD, GOOD])
    result = RUNNER.invoke(app, ["data", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{path}: format gsm8k\n")
    numeric_row = next(line for line in result.stdout.splitlines() if "numeric" in line)
    assert "3" in numeric_row
    assert "option" not in result.stdout


def test_check_reports_first_bad_row_and_exits_1(tmp_path: Path) -> None:
    path = _write(tmp_path / "gsm.jsonl", [GOOD, {"question": "q", "answer": "none"}, [1]])
    result = RUNNER.invoke(app, ["data", "check", str(path)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"{path}:2: answer: no '#### <number>' line"


def test_check_skip_bad_lists_skipped_rows_and_succeeds(tmp_path: Path) -> None:
    path = _write(tmp_path / "gsm.jsonl", [GOOD, {"question": "q", "answer": "none"}, [1], GOOD])
    result = RUNNER.invoke(app, ["data", "check", str(path), "--skip-bad"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"skipped {path}:2: answer: no '#### <number>' line",
        f"skipped {path}:3: row: expected a JSON object, got array",
    ]
    skipped_row = next(line for line in result.stdout.splitlines() if "skipped" in line)
    assert "2" in skipped_row


def test_check_forced_format_and_missing_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "gsm.jsonl", [GOOD])
    forced = RUNNER.invoke(app, ["data", "check", str(path), "--format", "mc"])
    assert forced.exit_code == 1
    assert forced.stderr.strip() == f"{path}:1: choices: missing"
    missing = RUNNER.invoke(app, ["data", "check", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 1
    assert missing.stderr.strip() == f"{tmp_path / 'nope.jsonl'}: file: no such file or directory"


def test_check_all_rows_bad_with_skip_bad_exits_1(tmp_path: Path) -> None:
    path = _write(tmp_path / "gsm.jsonl", [{"question": "q", "answer": "none"}])
    result = RUNNER.invoke(app, ["data", "check", str(path), "--skip-bad"])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == f"{path}: no valid items"


def test_show_file_prints_sampled_items_verbatim(tmp_path: Path) -> None:
    rows = [{**MC, "question": f"Question {index} [b]"} for index in range(6)]
    path = _write(tmp_path / "mc.jsonl", rows)
    result = RUNNER.invoke(app, ["data", "show", str(path), "-n", "2", "--seed", "1"])
    assert result.exit_code == 0, result.output
    shown = [index for index in range(6) if f"Question {index} [b]" in result.stdout]
    assert len(shown) == 2
    assert "y is [bold]" in result.stdout  # brackets in data are not read as markup
    assert "(B) y" in result.stdout
    again = RUNNER.invoke(app, ["data", "show", str(path), "-n", "2", "--seed", "1"])
    assert again.stdout == result.stdout


def test_show_suite_by_name_and_unknown_name() -> None:
    from lada.tasks.gym_suite import load_suite

    expected = load_suite("default", n=2, seed=0)
    result = RUNNER.invoke(app, ["data", "show", "default", "-n", "2"])
    assert result.exit_code == 0, result.output
    for item in expected:
        assert item.id in result.stdout
    unknown = RUNNER.invoke(app, ["data", "show", "no-such-suite"])
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("no-such-suite: not a file and not a suite; suites:")
    assert "default" in unknown.stderr
