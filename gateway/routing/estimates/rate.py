"""How many EXPLAINs one user's queries may cause: a token bucket per user (the DoS vector of an
EXPLAIN per query, trino-lb's issue #10, closed per user). A cache hit, or a query that joins an
EXPLAIN another query asked for, costs no token."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

# Users remembered at once; the least recently seen beyond it are forgotten (a forgotten user starts
# again with a full bucket, which is what a user quiet for that long would have anyway).
MAX_USERS = 10_000


class UserRate:
    def __init__(
        self, per_second: float, burst: int, clock: Callable[[], float] = time.monotonic, max_users: int = MAX_USERS
    ) -> None:
        self.per_second = per_second
        self.burst = float(burst)
        self.clock = clock
        self.max_users = max_users
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # user -> (tokens, at)

    def allow(self, user: str | None) -> bool:
        """Take a token of ``user``'s (None: the queries that name no user share one bucket)."""
        key = user or ""
        now = self.clock()
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.per_second)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_users:
            self._buckets.popitem(last=False)
        return allowed
