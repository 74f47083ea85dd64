"""trinosim's settings: what a cluster is (fixed at start) and the faults it shows (changeable live)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Faults(BaseModel):
    """Misbehaviour to inject; every field can be changed at run time through ``/_sim/faults``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    starting_seconds: float = Field(0.0, ge=0, description="report `starting` and refuse queries for this long")
    latency_ms: float = Field(0.0, ge=0, description="added before answering every faulted request")
    error_rate: float = Field(0.0, ge=0, le=1, description="fraction of faulted requests answered with error_status")
    error_status: int = Field(503, ge=500, le=599, description="HTTP status of injected errors")
    hang_polls: bool = Field(False, description="GETs of nextUri never answer while set")
    garbage_rate: float = Field(0.0, ge=0, le=1, description="fraction of faulted requests answered with junk")
    drop_rate: float = Field(0.0, ge=0, le=1, description="fraction of faulted requests whose connection is cut")
    workers: int = Field(1, ge=0, description="active worker count reported; 0 fails every query")
    scope: Literal["statement", "all"] = Field(
        "statement", description="which requests faults hit: the statement protocol only, or every endpoint"
    )


class SimConfig(BaseModel):
    """A simulated cluster."""

    model_config = ConfigDict(extra="forbid")

    name: str = "trinosim"
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    environment: str = "trinosim"
    version: str = "446"
    max_running: int = Field(100, ge=1, description="queries RUNNING at once; the rest wait QUEUED")
    max_queued: int = Field(5000, ge=0, description="queries allowed to wait; beyond this they fail")
    page_rows: int = Field(4096, ge=1, description="rows per result page")
    default_run_time: float = Field(0.0, ge=0, description="seconds every query runs unless sim_run_time is set")
    client_timeout: float = Field(300.0, gt=0, description="a query nobody polls for this long is abandoned")
    purge_after: float = Field(900.0, gt=0, description="a finished query is forgotten after this long")
    tls_cert: str | None = Field(None, description="serve HTTPS with this certificate (PEM), and tls_key")
    tls_key: str | None = None
    tls_client_ca: str | None = Field(
        None, description="require client certificates signed by these CAs (PEM): mutual TLS"
    )
    spooling: bool = Field(
        False, description="serve the spooling protocol to clients that ask for it (protocol.spooling.enabled)"
    )
    spooling_ttl: float = Field(300.0, gt=0, description="a spooled segment not acknowledged is deleted after this")
    transaction_idle_timeout: float = Field(
        300.0, gt=0, description="a transaction with no statement for this long is aborted (transaction.idle-timeout)"
    )
    forwarded: Literal["honour", "ignore", "reject"] = Field(
        "honour", description="X-Forwarded-* headers: build URIs from them, ignore them, or refuse the request"
    )
    key_order: Literal["trino", "sorted", "next_last"] = Field(
        "trino",
        description="members of a statement page: in Trino's order (URIs first), sorted by name (as a proxy "
        "that re-encodes pages writes them), or Trino's with partialCancelUri and nextUri last",
    )
    ui_user: str | None = Field(None, description="if set, /ui/login accepts only this user (and ui_password)")
    ui_password: str | None = None
    oauth2_issuer: str | None = Field(
        None, description="OAuth2 external authentication with this OpenID provider (Trino: oauth2.issuer)"
    )
    oauth2_client_id: str = Field("trinosim", description="the client id trinosim logs users in as")
    oauth2_client_secret: str = "trinosim"
    oauth2_principal_field: str = Field("sub", description="the token claim that is the authenticated user")
    oauth2_userinfo: bool = Field(
        True, description="check access tokens at the provider's userinfo endpoint (else as JWTs against its JWKS)"
    )
    oauth2_challenge_timeout: float = Field(900.0, gt=0, description="a login not finished in this long fails")
    faults: Faults = Field(default_factory=Faults)
