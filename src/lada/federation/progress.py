"""What a Flower run carries over a resume besides the parties: its run key, and which client
answered which round.

`FlowerRuntime` keeps a `RunProgress` and the runner checkpoints it with the server, so a resumed
run keys the clients' state folders as before (Flower's run id changes with every `flwr run`),
keeps out the clients it had already lost, and refuses a client whose saved state ends with
another round than the one the checkpoint has for it (`round_mismatch`): its state would be older
or newer than the server's, and mixing them would give a run that no uninterrupted run gives.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field


def new_run_key() -> str:
    return secrets.token_hex(8)


@dataclass
class RunProgress:
    run_key: str = field(default_factory=new_run_key)
    #: Client id -> round of the last step it answered.
    answered: dict[int, int] = field(default_factory=dict)
    #: Client id -> why the run went on without it.
    lost: dict[int, str] = field(default_factory=dict)


def round_mismatch(
    client_id: int, state_round: int | None, resume_round: int, expected: int
) -> str | None:
    """Why client `client_id`, whose saved state ends with `state_round`, cannot re-attach to a
    server resuming after `resume_round` that last heard from it in round `expected`; None when
    the rounds agree."""
    if state_round == expected:
        return None
    if state_round is None:
        return (
            f"client {client_id}: did not say which round its saved state ends with; the "
            f"server resumes after round {resume_round}"
        )
    age = "older" if state_round < expected else "newer"
    return (
        f"client {client_id}: its saved state ends with round {state_round}, but the server "
        f"resumes after round {resume_round}, where the client's last step was round "
        f"{expected}; the client's state is {age} than the server's: refused rather than mixed"
    )
