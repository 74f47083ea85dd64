"""The result cache as operators see it: each routing group's hits, waits, misses and ratio, from the
query history's word on each query (every worker and node), beside the group's settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.cache.results import HIT, MISS, NOT_ELIGIBLE, REFUSED, WAITED
from gateway.config import GroupConfig

_FIELDS = {HIT: "hits", WAITED: "waited", MISS: "misses", REFUSED: "refused", NOT_ELIGIBLE: "not_eligible"}


def group_uses(groups: Mapping[str, GroupConfig], words: Mapping[tuple[str, str], int]) -> list[dict[str, Any]]:
    """One row per group that has a cache setting or a query the cache had a word on, by name."""
    rows: dict[str, dict[str, Any]] = {}

    def row(group: str) -> dict[str, Any]:
        if group not in rows:
            cache = groups[group].cache if group in groups else None
            rows[group] = {
                "group": group,
                "ttl_seconds": cache.ttl if cache is not None else None,
                "shared": cache.shared if cache is not None else False,
                "opt_in": cache.opt_in if cache is not None else False,
                **dict.fromkeys(_FIELDS.values(), 0),
            }
        return rows[group]

    for name, settings in groups.items():
        if settings.cache is not None:
            row(name)
    for (group, word), count in words.items():
        field = _FIELDS.get(NOT_ELIGIBLE if word.startswith(NOT_ELIGIBLE) else word)
        if field is not None:
            row(group)[field] += count
    for values in rows.values():
        answered = values["hits"] + values["waited"]
        asked = answered + values["misses"] + values["refused"]
        values["hit_ratio"] = answered / asked if asked else None
    return [rows[name] for name in sorted(rows)]
