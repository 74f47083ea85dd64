"""One entry of the result cache as its tiers keep it: an opaque blob under its key."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Stored:
    """A finished query's result, as bytes the tiers never read, under its key."""

    key: str
    """64 hexadecimal characters: what the entry answers."""
    group: str
    """The routing group of the query it came from: a purge of the group removes it."""
    created_ms: int
    """When it was made (epoch ms): a purge mark later than this makes it stale."""
    expires_ms: int
    """From this time on (epoch ms) it answers nothing."""
    blob: bytes

    def expired(self, now_ms: int) -> bool:
        return now_ms >= self.expires_ms
