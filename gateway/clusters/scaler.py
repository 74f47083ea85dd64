"""What starts and stops a cluster: a backend's scaler (its record's ``scaler``, docs/scaling.md).

A scaler only issues the start or the stop and says whether the tool reported success; whether the
cluster is *ready* is for its health checks to say, as for any backend.
"""

from __future__ import annotations

from typing import Protocol

from gateway.clusters.command import CommandScaler
from gateway.clusters.docker import DockerScaler
from gateway.clusters.errors import ScalerError
from gateway.store.backend import BackendScaler

__all__ = ["Scaler", "ScalerError", "scaler_for"]


class Scaler(Protocol):
    """Starts and stops one cluster. Every call is bounded by the scaler's ``timeout``."""

    async def start(self) -> None:
        """Return once the start was issued and the tool said it worked (not once the cluster is
        ready); raise `ScalerError` otherwise."""
        ...

    async def stop(self) -> None:
        """Return once the stop was issued and the tool said it worked; raise `ScalerError` otherwise."""
        ...

    async def started(self) -> bool | None:
        """True while the cluster is started (running), False while it is stopped, None when this
        scaler cannot tell. Raises `ScalerError` when the scaler itself cannot be used (a docker
        scaler whose container does not exist or whose engine does not answer)."""
        ...


def scaler_for(spec: BackendScaler, name: str | None = None) -> Scaler:
    """The scaler a backend's record describes; ``name`` (the backend's) is what its errors call it."""
    if spec.kind == "command":
        return CommandScaler(spec, name)
    if spec.kind == "docker":
        return DockerScaler(spec, name)
    raise ValueError(f"unknown scaler kind {spec.kind!r}")
