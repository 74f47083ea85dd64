"""Failed logins, counted per user and per client address: beyond ``failures`` for a user (or
``address_failures`` from an address) within ``window`` seconds, further attempts are refused
without checking the password, until the window moves on."""

from __future__ import annotations

import time
from collections import deque


class TooManyFailures(Exception):
    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after:.0f} s")
        self.retry_after = retry_after


class LoginLimiter:
    def __init__(self, failures: int, address_failures: int, window: float, max_keys: int = 100_000) -> None:
        self.limits = {"user": failures, "address": address_failures}
        self.window = window
        self.max_keys = max_keys
        self._failed: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        times = self._failed.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failed[key]
        return times

    def check(self, user: str | None, address: str) -> None:
        """Raises TooManyFailures when this user or this address failed too often lately."""
        now = time.monotonic()
        for key in ((("user", user),) if user else ()) + (("address", address),):
            times = self._recent(key, now)
            if len(times) >= self.limits[key[0]]:
                raise TooManyFailures(times[0] + self.window - now)

    def failed(self, user: str | None, address: str) -> None:
        now = time.monotonic()
        if len(self._failed) >= self.max_keys:
            # Bounded memory under a spray of names: the oldest entries go.
            for key in list(self._failed)[: self.max_keys // 10]:
                del self._failed[key]
        for key in ((("user", user),) if user else ()) + (("address", address),):
            self._failed.setdefault(key, deque()).append(now)
