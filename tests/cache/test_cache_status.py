"""The result cache's status per routing group: the groups with settings, even before any query,
each word of the history counted into its field, and the hit ratio."""

from __future__ import annotations

import pytest

from gateway.config import GroupCacheConfig, GroupConfig
from gateway.control.cache_status import group_uses

GROUPS = {
    "bi": GroupConfig(cache=GroupCacheConfig(ttl="5m", shared=True)),
    "adhoc": GroupConfig(),
    "etl": GroupConfig(cache=GroupCacheConfig(ttl=60, opt_in=True)),
}
ZEROS = {"hits": 0, "waited": 0, "misses": 0, "refused": 0, "not_eligible": 0, "hit_ratio": None}


def test_groups_with_settings_appear_with_zero_counts_before_any_query():
    assert group_uses(GROUPS, {}) == [
        {"group": "bi", "ttl_seconds": 300.0, "shared": True, "opt_in": False, **ZEROS},
        {"group": "etl", "ttl_seconds": 60.0, "shared": False, "opt_in": True, **ZEROS},
    ]


def test_each_word_is_counted_into_its_field_and_every_not_eligible_reason_together():
    words = {
        ("bi", "hit"): 5,
        ("bi", "waited"): 2,
        ("bi", "miss"): 3,
        ("bi", "refused"): 1,
        ("bi", "not eligible: in a transaction"): 4,
        ("bi", "not eligible: the statement is not a query"): 6,
        ("bi", "not eligible"): 1,
        ("bi", "something new"): 9,  # a word this version does not know: counted nowhere
    }
    (bi, _) = group_uses(GROUPS, words)
    assert {field: bi[field] for field in ("hits", "waited", "misses", "refused", "not_eligible")} == {
        "hits": 5,
        "waited": 2,
        "misses": 3,
        "refused": 1,
        "not_eligible": 11,
    }


def test_the_hit_ratio_counts_hits_and_waits_against_every_lookup():
    words = {("bi", "hit"): 5, ("bi", "waited"): 1, ("bi", "miss"): 3, ("bi", "refused"): 3}
    words[("bi", "not eligible: in a transaction")] = 100  # (no lookup: not in the ratio)
    (bi, _) = group_uses(GROUPS, words)
    assert bi["hit_ratio"] == pytest.approx(6 / 12)


def test_the_hit_ratio_is_none_without_lookups():
    (bi, _) = group_uses(GROUPS, {("bi", "not eligible: in a transaction"): 3})
    assert bi["hit_ratio"] is None and bi["not_eligible"] == 3


def test_a_group_without_settings_appears_once_the_cache_had_a_word_on_its_queries():
    # A rule's cacheTtl, or a group whose settings were since removed.
    rows = group_uses(GROUPS, {("adhoc", "miss"): 1, ("gone", "hit"): 2})
    assert [row["group"] for row in rows] == ["adhoc", "bi", "etl", "gone"]
    assert rows[0] == {"group": "adhoc", "ttl_seconds": None, "shared": False, "opt_in": False, **ZEROS} | {
        "misses": 1,
        "hit_ratio": 0.0,
    }
    assert rows[3]["hits"] == 2 and rows[3]["hit_ratio"] == 1.0


def test_a_word_the_status_does_not_count_makes_no_row():
    assert [row["group"] for row in group_uses({}, {("adhoc", "something new"): 1})] == []


def test_rows_are_sorted_by_group_name():
    groups = {name: GroupConfig(cache=GroupCacheConfig(ttl=60)) for name in ("zeta", "alpha", "Mid", "beta")}
    assert [row["group"] for row in group_uses(groups, {})] == ["Mid", "alpha", "beta", "zeta"]
