"""An entry as the cache's tiers keep it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Stored:
    key: str
    group: str
    created_ms: int
    expires_ms: int
    blob: bytes
