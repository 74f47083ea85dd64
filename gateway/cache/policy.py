"""Whether the result cache applies to a query, and with which TTL: the routing group's settings, a
rule's word, the client's tags. Off unless one of them turns it on.

- ``routing.groups.<group>.cache: {ttl: 5m}`` turns it on for the group (``opt_in: true``: only for
  the queries whose client asks, with the client tag ``cache`` or ``cache-ttl=N``).
- A rule's ``result.put("cacheTtl", "5m")`` turns it on for the queries it matches, whatever the
  group says; ``"0s"`` turns it off for them.
- Client tags: ``cache-ttl=N`` shortens the TTL to N seconds (never lengthens the group's); ``no-cache``
  refuses a cached answer: the query runs, and its result replaces the entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.config import GroupCacheConfig

NO_CACHE, CACHE, CACHE_TTL = "no-cache", "cache", "cache-ttl="


@dataclass(frozen=True, slots=True)
class Use:
    """The cache applies to the query."""

    ttl: float
    shared: bool
    lookup: bool = True
    """False: the client refused a cached answer (``no-cache``); its result is cached all the same."""


def decide(group: GroupCacheConfig | None, rule_ttl: float | None, client_tags: str | None) -> Use | None:
    """The cache's use for one query; None: it does not apply (off for the query)."""
    if group is None and rule_ttl is None:
        return None  # the common case, decided without reading the tags
    tags = _tags(client_tags)
    asked = _asked_ttls(tags)
    if rule_ttl is not None:
        if rule_ttl <= 0:
            return None
        ttl = rule_ttl
    else:
        assert group is not None
        if group.opt_in and CACHE not in tags and not asked:
            return None  # (a cache-ttl=N whose N is not a number asks nothing)
        ttl = group.ttl
    for seconds in asked:
        if seconds <= 0:
            return None
        ttl = min(ttl, seconds)
    shared = group.shared if group is not None else False
    return Use(ttl, shared, lookup=NO_CACHE not in tags)


def _asked_ttls(tags: set[str]) -> list[float]:
    """The TTLs the ``cache-ttl=N`` tags ask for; a tag whose N is not a (finite) number is as if not
    there."""
    asked = []
    for tag in tags:
        if tag.startswith(CACHE_TTL):
            try:
                seconds = float(tag[len(CACHE_TTL) :])
            except ValueError:
                continue
            if math.isfinite(seconds):  # (nan and inf are no number of seconds either)
                asked.append(seconds)
    return asked


def _tags(client_tags: str | None) -> set[str]:
    if not client_tags:
        return set()
    return {tag.strip().lower() for tag in client_tags.split(",") if tag.strip()}
