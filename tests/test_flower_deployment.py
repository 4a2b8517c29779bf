"""Real Flower deployments on 127.0.0.1: `flower-superlink`, `flower-supernode`, `flwr run`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import tomli_w

from lada.federation.local_deployment import LocalDeployment
from tests.test_end_to_end import tiny_config
from tests.test_flower_resume import _cut
from tests.test_resume import _metrics, _selections

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 600


def _wait_for(path: Path, deployment: LocalDeployment, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no {what} after {DEADLINE_S} s\nsuperlink log:\n"
                + deployment.log("superlink")[-4000:]
            )
        time.sleep(1.0)


def _experiment(tmp_path: Path, n_clients: int, **extra) -> Path:
    data = tiny_config(tmp_path, "fedcot", True, rounds=1, **extra)
    data["data"]["split"]["n_clients"] = n_clients
    path = tmp_path / "experiment.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_insecure_deployment_runs_a_round_and_survives_a_killed_client(tmp_path):
    config = _experiment(tmp_path, 3, federation={"min_clients": 2})
    run_dir = tmp_path / "run"
    with LocalDeployment(tmp_path / "deploy", 3) as deployment:
        deployment.submit(REPO, config, run_dir)
        _wait_for(run_dir / "metrics.jsonl", deployment, "round-0 metrics")
        deployment.kill_supernode(2)  # mid-run: its round-1 messages are never answered
        _wait_for(run_dir / "summary.json", deployment, "summary")
        processes = [deployment.superlink, *deployment.supernodes]
    assert all(p.poll() is not None for p in processes)  # every started process stopped

    rounds = _records(run_dir)
    assert [r["round"] for r in rounds] == [0, 1]
    assert set(rounds[0]["clients"]) == {"0", "1", "2"}
    assert set(rounds[1]["clients"]) == {"0", "1"}  # the round ended with the others
    lost = rounds[1]["traffic"]["lost_clients"]
    assert 2 in [cid for ids in lost.values() for cid in ids]
    assert rounds[1]["traffic"]["bytes"]["train/down/public_paths"] > 0
    assert {p.name for p in run_dir.iterdir()} >= {"config.toml", "summary.json", "checkpoints"}


@pytest.mark.slow
def test_tls_deployment_runs_a_round_and_a_fresh_deployment_resumes_it_exactly(tmp_path):
    """A TLS deployment with SuperNode authentication runs setup and round 1. Its run folder is
    then cut back to what a server killed after round 0 leaves, and a new deployment (a new
    SuperLink, new SuperNode processes with the same node configs) resumes it: the ServerApp
    reloads its checkpoint, each client re-attaches to its own saved state, and round 1 comes out
    as it did (metrics, bytes and selections)."""
    config = _experiment(tmp_path, 2)
    run_dir = tmp_path / "run"
    with LocalDeployment(tmp_path / "deploy", 2, tls=True, authenticate=True) as deployment:
        deployment.submit(REPO, config, run_dir)
        _wait_for(run_dir / "summary.json", deployment, "summary")
        assert "--insecure" not in " ".join(map(str, deployment.superlink.args))
    rounds = _records(run_dir)
    assert [r["round"] for r in rounds] == [0, 1]
    assert set(rounds[1]["clients"]) == {"0", "1"}
    assert (tmp_path / "deploy" / "keys" / "ca.crt").read_text().startswith("-----BEGIN")

    cut = _cut(run_dir, tmp_path / "cut", 0)
    assert [r["round"] for r in _records(cut)] == [0, 1]  # the resume drops round 1's record
    with LocalDeployment(tmp_path / "again", 2) as deployment:
        deployment.submit(REPO, config, cut, resume=True)
        _wait_for(cut / "summary.json", deployment, "summary of the resumed run")
    # Round 0 was not run again (its record keeps its own wall time); round 1 was.
    first, again = _records(run_dir), _records(cut)
    assert again[0]["wall_seconds"] == first[0]["wall_seconds"]
    assert again[1]["wall_seconds"] != first[1]["wall_seconds"]
    assert _metrics(cut) == _metrics(run_dir)
    assert _selections(cut) == _selections(run_dir)
    resumed = json.loads((cut / "summary.json").read_text())
    assert resumed["final"] == json.loads((run_dir / "summary.json").read_text())["final"]


def test_deploy_certs_writes_a_ca_signed_server_certificate_and_supernode_keys(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key
    from typer.testing import CliRunner

    from lada.cli import app

    out = tmp_path / "keys"
    result = CliRunner().invoke(
        app, ["deploy", "certs", str(out), "--host", "10.0.0.5", "--supernodes", "3"]
    )
    assert result.exit_code == 0, result.output
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((out / "server.pem").read_bytes())
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    for i in range(3):
        load_ssh_private_key((out / f"supernode-{i}").read_bytes(), None)
        assert (out / f"supernode-{i}.pub").read_text().startswith("ecdsa-sha2-nistp384 ")
        assert (out / f"supernode-{i}").stat().st_mode & 0o077 == 0  # private keys: owner only
