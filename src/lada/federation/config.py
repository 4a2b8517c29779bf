"""Settings of the transport: what the runtimes need to carry a round (the experiment config's
`federation` table)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FederationConfig(BaseModel):
    """How rounds survive slow or lost clients, and bounds on what may cross the wire."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    min_clients: int | None = Field(
        None,
        ge=1,
        description="A step goes on when at least this many clients answered (default: all).",
    )
    clients_per_round: int | None = Field(
        None,
        ge=1,
        description="Clients sampled (seeded, per round) to take part in a round's exchanges "
        "after setup (default: all). lada.federation.sampling.",
    )
    round_timeout_s: float | None = Field(
        None, gt=0, description="Seconds a step waits for replies before going on without them."
    )
    reply_poll_s: float = Field(
        0.2,
        gt=0,
        le=60,
        description="Seconds between the server's checks for replies (Flower runtimes).",
    )
    max_payload_mb: float = Field(
        512.0, gt=0, description="Payloads larger than this are refused on either side."
    )
    cpus_per_client: float = Field(
        1.0, gt=0, description="CPU cores a simulated client reserves (Flower simulation)."
    )
    simulation_actors: int | None = Field(
        None,
        ge=1,
        description="Clients Flower's simulation runs at once, each in a long-lived actor "
        "(default: as many as the machine's cores hold at cpus_per_client each, at most one per "
        "client). Memory grows with the actors, not the clients: the others wait on disk.",
    )
    gpus_per_client: float = Field(
        0.0, ge=0, description="GPUs a simulated client reserves, e.g. 0.25 (Flower simulation)."
    )
