"""Resuming a Flower run: clients re-attach to their own saved state, or are refused by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from flwr.app import Context, RecordDict
from flwr.supercore.task_identity import TaskIdentity
from rich.console import Console

from lada.apps.server_app import serve
from lada.experiments.checkpoint import list_checkpoints
from lada.experiments.config import validate
from lada.federation.client_state import (
    ClientStateStore,
    SavedClient,
    StateRoundError,
    default_state_base,
)
from lada.federation.flower_runtime import FederationError
from lada.federation.progress import round_mismatch
from tests.test_end_to_end import tiny_config
from tests.test_flower_runtime import MemoryGrid
from tests.test_resume import _metrics, _selections

QUIET = Console(quiet=True)


@pytest.fixture(autouse=True)
def _task_identity():
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 7, 1
    yield


def test_the_refusal_names_the_clients_round_and_the_servers():
    older = round_mismatch(1, 0, 2, 2)
    assert older is not None
    assert "client 1" in older and "ends with round 0" in older
    assert "resumes after round 2" in older and "older than the server's" in older
    newer = round_mismatch(0, 3, 1, 1)
    assert newer is not None and "round 3" in newer and "newer than the server's" in newer
    assert round_mismatch(0, 1, 1, 1) is None
    assert round_mismatch(0, 0, 2, 0) is None  # it took no part in rounds 1 and 2: its state holds


def _store(tmp_path: Path) -> ClientStateStore:
    context = Context(
        run_id=1,
        node_id=1,
        node_config={"partition-id": 0, "state-dir": str(tmp_path)},
        state=RecordDict(),
        run_config={},
    )
    return ClientStateStore(context, 0, "key")


def _step(store: ClientStateStore, saved: SavedClient, round_idx: int, keep: int = 2) -> None:
    store.close_rounds(saved, round_idx, keep)
    saved.party = f"party after round {round_idx}"  # type: ignore[assignment]
    saved.round_idx = round_idx
    store.save(saved)


def test_a_client_keeps_the_state_at_the_end_of_its_last_rounds_and_re_attaches(tmp_path):
    store = _store(tmp_path)
    saved = SavedClient("built", -1)  # type: ignore[arg-type]
    store.start(saved)
    for round_idx in (0, 1, 3):  # it takes no part in round 2
        _step(store, saved, round_idx)
    assert store.kept_rounds() == [2, 1]  # round 2's state is round 1's
    assert store.reattach(2).party == "party after round 1"
    assert store.kept_rounds() == [2, 1]
    assert torch.load(store.path, weights_only=False).round_idx == 1

    _step(store, saved, 2)  # the resumed run goes on; round 3 again
    _step(store, saved, 3)
    with pytest.raises(StateRoundError) as refused:
        store.reattach(0)  # older than anything it keeps
    message = str(refused.value)
    assert "resumes after round 0" in message and "as of round 3" in message
    assert "rounds [1, 2]" in message


def test_a_client_without_state_is_refused_by_name(tmp_path):
    with pytest.raises(StateRoundError, match="client 0: the server resumes after round 1, but"):
        _store(tmp_path).reattach(1)


def _cut(run_dir: Path, to: Path, last_round: int) -> Path:
    """A copy of a run folder as a server killed after `last_round` leaves it."""
    shutil.copytree(run_dir, to)
    for path in list_checkpoints(to):
        if int(path.stem.split("-")[1]) > last_round:
            path.unlink()
    (to / "summary.json").unlink()
    return to


@pytest.mark.slow
def test_a_resumed_flower_server_and_its_re_attached_clients_continue_exactly(tmp_path):
    data = tiny_config(tmp_path, "fedcot", True, rounds=2)
    config = validate(data)
    reference = serve(MemoryGrid(2), config, console=QUIET, wait_for_clients_s=1)

    cut = _cut(reference.run_dir, tmp_path / "cut", 1)
    console = Console(record=True, width=300)
    serve(MemoryGrid(2), config, run_dir=cut, resume=True, console=console, wait_for_clients_s=1)
    assert "resuming" in console.export_text()
    assert _metrics(cut) == _metrics(reference.run_dir)
    assert _selections(cut) == _selections(reference.run_dir)
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["final"] == reference.summary["final"]

    # A client whose state after round 1 is gone (its newer state only) refuses to re-attach.
    again = _cut(cut, tmp_path / "again", 1)
    key = torch.load(list_checkpoints(again)[0], weights_only=False)["state"]["runtime"].run_key
    client_1 = default_state_base() / f"run-{key}" / "client-1"  # in the tests' private cache
    (client_1 / "rounds" / "round-0001.pt").unlink()
    console = Console(record=True, width=300)
    with pytest.raises(FederationError, match="hello: 1 of 2 clients answered"):
        serve(MemoryGrid(2), config, run_dir=again, resume=True, console=console)
    text = console.export_text()
    assert "client 1: the server resumes after round 1, but this client's state is as of" in text
    assert "round 2" in text

    # A checkpoint whose record of a client's last round disagrees with the client's state.
    checkpoint = list_checkpoints(again)[0]
    saved = torch.load(checkpoint, weights_only=False)
    saved["state"]["runtime"].answered[0] = 0
    torch.save(saved, checkpoint)
    console = Console(record=True, width=300)
    with pytest.raises(FederationError):
        serve(MemoryGrid(2), config, run_dir=again, resume=True, console=console)
    assert "client 0: its saved state ends with round 1, but the server resumes after round 1" in (
        console.export_text()
    )


def test_a_resume_moves_client_states_from_where_earlier_simulations_kept_them(
    tmp_path, monkeypatch
):
    from lada.apps.simulation import adopt_earlier_client_state
    from lada.experiments.checkpoint import save_checkpoint
    from lada.federation.client_state import STATE_DIR_ENV
    from lada.federation.progress import RunProgress

    base = tmp_path / "earlier-base"
    monkeypatch.setenv(STATE_DIR_ENV, str(base))
    run_dir = tmp_path / "run"
    save_checkpoint(run_dir, 0, [], {"runtime": RunProgress(run_key="k0")}, keep=2)
    save_checkpoint(run_dir, 1, [], {"runtime": RunProgress(run_key="abc")}, keep=2)
    (base / "run-abc" / "client-0").mkdir(parents=True)
    (base / "run-abc" / "client-0" / "state.pt").write_bytes(b"state")
    (base / "run-other").mkdir()

    console = Console(record=True, width=300)
    moved = adopt_earlier_client_state(run_dir, console)
    assert moved == run_dir / "client-state" / "run-abc"  # the newest checkpoint's run key
    assert (moved / "client-0" / "state.pt").read_bytes() == b"state"
    assert not (base / "run-abc").exists() and (base / "run-other").is_dir()
    assert "moved the clients' states of this run" in console.export_text()
    assert adopt_earlier_client_state(run_dir, console) is None  # it has its own states now

    in_process = tmp_path / "in-process"  # a checkpoint no Flower run wrote: nothing to move
    save_checkpoint(in_process, 1, [], {"parties": None}, keep=2)
    assert adopt_earlier_client_state(in_process, console) is None
    assert not (in_process / "client-state").exists()
