"""Whether the result cache applies to a query, and with which TTL: off unless the routing group, a
rule or the client turns it on; a client may shorten the TTL, never lengthen it, and may refuse a
cached answer."""

from __future__ import annotations

from gateway.cache.policy import Use, decide
from gateway.config import GroupCacheConfig, duration_seconds


def group(ttl: str = "5m", shared: bool = False, opt_in: bool = False) -> GroupCacheConfig:
    return GroupCacheConfig(ttl=ttl, shared=shared, opt_in=opt_in)


def test_the_cache_is_off_unless_a_group_or_a_rule_turns_it_on_whatever_the_client_asks():
    assert decide(None, None, None) is None
    assert decide(None, None, "cache,cache-ttl=60") is None


def test_a_group_with_settings_caches_its_queries_for_its_ttl():
    assert decide(group("5m"), None, None) == Use(300.0, False, lookup=True)
    assert decide(group("90s"), None, "etl,nightly") == Use(90.0, False)


def test_an_opt_in_group_caches_only_the_queries_whose_client_asks():
    opt_in = group("5m", opt_in=True)
    assert decide(opt_in, None, None) is None
    assert decide(opt_in, None, "etl") is None
    assert decide(opt_in, None, "cache") == Use(300.0, False)
    assert decide(opt_in, None, "cache-ttl=60") == Use(60.0, False)


def test_cache_ttl_shortens_the_groups_ttl_and_never_lengthens_it():
    assert decide(group("5m"), None, "cache-ttl=30").ttl == 30.0
    assert decide(group("5m"), None, "cache-ttl=3600").ttl == 300.0
    assert decide(group("5m"), None, "cache-ttl=2.5").ttl == 2.5


def test_cache_ttl_of_zero_or_less_turns_the_cache_off_for_the_query():
    assert decide(group("5m"), None, "cache-ttl=0") is None
    assert decide(group("5m"), None, "cache-ttl=-1") is None
    assert decide(None, 60.0, "cache-ttl=0") is None


def test_a_cache_ttl_that_is_not_a_number_is_ignored():
    assert decide(group("5m"), None, "cache-ttl=soon") == Use(300.0, False)
    assert decide(group("5m"), None, "cache-ttl=") == Use(300.0, False)
    assert decide(group("5m"), None, "cache-ttl=nan") == Use(300.0, False)
    assert decide(group("5m"), None, "cache-ttl=soon,cache-ttl=20") == Use(20.0, False)


def test_a_cache_ttl_that_is_not_a_number_does_not_opt_a_query_in():
    # As if the tag were not there: an opt-in group's query that asks nothing else is not cached.
    assert decide(group("5m", opt_in=True), None, "cache-ttl=soon") is None
    assert decide(group("5m", opt_in=True), None, "cache-ttl=inf") is None
    assert decide(group("5m", opt_in=True), None, "cache-ttl=soon,cache") == Use(300.0, False)


def test_no_cache_refuses_a_cached_answer_but_keeps_caching_the_result():
    assert decide(group("5m"), None, "no-cache") == Use(300.0, False, lookup=False)
    assert decide(None, 60.0, "no-cache") == Use(60.0, False, lookup=False)
    # (no-cache asks nothing of an opt-in group: it only refuses an answer)
    assert decide(group("5m", opt_in=True), None, "no-cache") is None
    assert decide(group("5m", opt_in=True), None, "no-cache,cache") == Use(300.0, False, lookup=False)


def test_a_rules_cache_ttl_turns_the_cache_on_without_group_settings():
    assert decide(None, 120.0, None) == Use(120.0, False)
    assert decide(None, duration_seconds("5m"), "cache-ttl=30") == Use(30.0, False)


def test_a_rules_cache_ttl_wins_over_the_groups_even_an_opt_in_one():
    assert decide(group("5m"), 600.0, None) == Use(600.0, False)
    assert decide(group("5m", opt_in=True), 60.0, None) == Use(60.0, False)


def test_a_rules_zero_cache_ttl_turns_the_cache_off_even_where_the_group_caches():
    assert decide(group("5m"), duration_seconds("0s"), None) is None
    assert decide(group("5m"), 0, "cache") is None
    assert decide(None, 0.0, None) is None


def test_shared_comes_from_the_group_and_a_rule_alone_never_shares():
    assert decide(group("5m", shared=True), None, None).shared is True
    assert decide(group("5m", shared=True), 60.0, None).shared is True
    assert decide(group("5m", shared=False), None, None).shared is False
    assert decide(None, 60.0, None).shared is False


def test_tags_match_whatever_their_case_and_the_spaces_around_them():
    opt_in = group("5m", opt_in=True)
    assert decide(opt_in, None, " CACHE ") == Use(300.0, False)
    assert decide(opt_in, None, "etl , Cache-TTL=45 ") == Use(45.0, False)
    assert decide(group("5m"), None, "etl, No-Cache").lookup is False
    assert decide(opt_in, None, " , ,") is None
