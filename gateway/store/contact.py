"""When this process last heard from its store: the moment of the last answer, and of the last
failure to get one. Every statement that returns counts as an answer (the SQL store tells it from
the engine, whatever issued the statement), so that whoever asks "is the store there?" (readiness)
reads what the process already knows instead of asking the store again.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class StoreContact:
    """The last answer, on ``clock`` (monotonic seconds), and the failure that came after it if any."""

    __slots__ = ("answered_at", "clock", "error")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.answered_at: float | None = None
        self.error: str | None = None  # the last word from the store, when it was a failure

    def answered(self) -> None:
        self.answered_at, self.error = self.clock(), None

    def failed(self, error: str) -> None:
        self.error = error

    def silent_for(self) -> float | None:
        """Seconds since the last answer; None if the store never answered."""
        return None if self.answered_at is None else self.clock() - self.answered_at

    def failing(self) -> bool:
        """The last word from the store was a failure (no answer came after it)."""
        return self.error is not None
