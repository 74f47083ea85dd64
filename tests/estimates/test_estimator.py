"""The estimator against planners: trinosim (the Trino protocol and plans) and a scripted coordinator
that hangs, fails and talks nonsense on demand. Single flight, the cache and its key, the time budget,
every failure a fallback counted by cause and logged once, statements never sent, the per-user rate."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gateway.routing.estimates.estimate import (
    BAD_ANSWER,
    BUDGET,
    BUSY,
    NO_PLANNER,
    NOT_EXPLAINABLE,
    PLANNER_ERROR,
    PLANNER_TIMEOUT,
    RATE_LIMITED,
    REFUSED,
    TOO_LONG,
    UNREACHABLE,
)
from tests.estimates.conftest import Estimators, Events, request
from tests.estimates.test_statement import NEVER_EXPLAINED
from tests.trinosim.helpers import wait_until

NATION = "SELECT * FROM tpch.tiny.nation"


def test_a_statement_is_explained_once_then_answered_from_the_cache(estimators: Estimators, make_sim):
    planner = make_sim(name="planner")
    events = Events()
    estimator = estimators.make(planner.url, events=events, budget="30s")
    first = estimators.estimate(estimator, NATION)
    assert first.source == "planner" and first.estimate is not None
    assert first.estimate.max.outputRowCount == 25
    again = estimators.estimate(estimator, NATION)
    assert again.source == "cache" and again.estimate == first.estimate
    # The same statement written otherwise (case, whitespace, a comment) is the same entry.
    written_otherwise = estimators.estimate(estimator, "select *\n  from TPCH.tiny.Nation -- every nation")
    assert written_otherwise.source == "cache"
    assert planner.load()["explained"] == 1
    assert (events.hits, events.misses, events.outcomes) == (2, 1, ["ok"])


def test_a_hundred_identical_new_statements_together_cause_one_explain(estimators: Estimators, scripted):
    planner = scripted()
    planner.hold()  # the plan is answered only once all hundred wait for it
    estimator = estimators.make(planner.url, budget="30s")

    async def hundred() -> list[Any]:
        asks = [asyncio.create_task(estimator.estimate(request(estimator, NATION, f"user-{n}"))) for n in range(100)]
        await asyncio.sleep(0)
        while len(planner.posts) < 1:
            await asyncio.sleep(0.01)
        planner.release()
        return await asyncio.gather(*asks)

    uses = estimators.run(hundred())
    assert len(planner.posts) == 1
    assert {use.source for use in uses} == {"planner"} and all(use.estimate is not None for use in uses)
    assert estimators.estimate(estimator, NATION).source == "cache"  # a repeat within the TTL: none
    assert len(planner.posts) == 1


def test_the_plan_is_asked_with_the_querys_user_catalog_schema_and_session(estimators: Estimators, scripted):
    planner = scripted()
    estimator = estimators.make(planner.url, budget="30s")
    headers = {
        "X-Trino-Catalog": "tpch",
        "X-Trino-Schema": "tiny",
        "X-Trino-Session": "join_distribution_type=BROADCAST",
        "X-Trino-Source": "superset",
        "X-Trino-Client-Tags": "etl",
    }
    estimators.estimate(estimator, "SELECT * FROM nation", "alice", **headers)
    (post,) = planner.posts
    assert post["sql"] == "EXPLAIN (TYPE DISTRIBUTED, FORMAT JSON) SELECT * FROM nation"
    sent = {name.lower(): value for name, value in post["headers"].items()}
    assert sent["x-trino-user"] == "alice"
    assert (sent["x-trino-catalog"], sent["x-trino-schema"]) == ("tpch", "tiny")
    assert sent["x-trino-session"] == "join_distribution_type=BROADCAST"
    # The EXPLAIN is the gateway's: its own source, none of the query's tags.
    assert sent["x-trino-source"] == "trino-gateway-estimate" and "x-trino-client-tags" not in sent


def test_catalog_schema_and_the_session_properties_that_count_tell_estimates_apart(estimators: Estimators, scripted):
    planner = scripted()
    estimator = estimators.make(planner.url, budget="30s", session_properties=["join_distribution_type"])
    ask = lambda **headers: estimators.estimate(estimator, "SELECT * FROM nation", **headers)  # noqa: E731
    ask(X_Trino_Catalog="tpch", X_Trino_Schema="tiny")
    assert ask(X_Trino_Catalog="tpch", X_Trino_Schema="tiny").source == "cache"
    assert ask(X_Trino_Catalog="tpch", X_Trino_Schema="sf1").source == "planner"
    assert ask(X_Trino_Session="join_distribution_type=BROADCAST").source == "planner"
    assert ask(X_Trino_Session="join_distribution_type=BROADCAST,sim_run_time=1s").source == "cache"  # not counted
    assert len(planner.posts) == 3


@pytest.mark.parametrize(
    ("mode", "cause"),
    [("500", PLANNER_ERROR), ("garbage", BAD_ANSWER), ("not_a_plan", BAD_ANSWER), ("user_error", REFUSED)],
)
def test_a_planner_that_fails_gives_no_estimate_and_the_cause(estimators: Estimators, scripted, mode, cause):
    planner = scripted()
    planner.mode = mode
    events = Events()
    estimator = estimators.make(planner.url, events=events, budget="30s")
    use = estimators.estimate(estimator, NATION)
    assert (use.estimate, use.source, use.cause) == (None, None, cause)
    assert events.fallbacks == {cause: 1} and events.outcomes == [cause]


def test_a_planner_that_hangs_costs_a_query_its_budget_and_the_explain_stops_at_its_timeout(
    estimators: Estimators, scripted
):
    planner = scripted()
    planner.mode = "hang"
    events = Events()
    estimator = estimators.make(planner.url, events=events, budget="200ms", timeout="1s")
    use = estimators.estimate(estimator, NATION)
    assert (use.estimate, use.cause) == (None, BUDGET)
    assert use.seconds >= 0.2  # it waited its budget, and then went on without
    estimators.run(estimator.settle())
    assert events.outcomes == [PLANNER_TIMEOUT] and estimator.in_flight == 0
    assert events.fallbacks == {BUDGET: 1}


def test_an_explain_that_outlasts_its_timeout_is_cancelled_on_the_planner(estimators: Estimators, scripted):
    planner = scripted()
    planner.mode = "poll_hangs"
    events = Events()
    estimator = estimators.make(planner.url, events=events, budget="5s", timeout="500ms")
    assert estimators.estimate(estimator, NATION).cause == PLANNER_TIMEOUT
    wait_until(lambda: planner.cancels, what="the EXPLAIN's cancel")  # sent in the background
    assert planner.cancels == 1 and events.outcomes == [PLANNER_TIMEOUT]


def test_a_plan_that_comes_after_the_budget_is_kept_for_the_next_query(estimators: Estimators, scripted):
    planner = scripted()
    planner.hold()
    estimator = estimators.make(planner.url, budget="100ms", timeout="30s")
    assert estimators.estimate(estimator, NATION).cause == BUDGET
    planner.release()
    estimators.run(estimator.settle())
    assert estimators.estimate(estimator, NATION).source == "cache"
    assert len(planner.posts) == 1


def test_a_planner_that_is_gone_or_none_at_all(estimators: Estimators, refused_port: int):
    gone = estimators.make(f"http://127.0.0.1:{refused_port}", budget="30s")
    assert estimators.estimate(gone, NATION).cause == UNREACHABLE
    nobody = estimators.make(budget="30s")  # no backend in the default group
    assert estimators.estimate(nobody, NATION).cause == NO_PLANNER
    named = estimators.make(f"http://127.0.0.1:{refused_port}", budget="30s", planner={"backend": "no-such-backend"})
    assert estimators.estimate(named, NATION).cause == NO_PLANNER


def test_the_plan_follows_next_uri_on_the_planners_own_address(estimators: Estimators, scripted):
    planner = scripted()
    planner.mode = "queued"
    estimator = estimators.make(planner.url, budget="30s")
    assert estimators.estimate(estimator, NATION).source == "planner"


@pytest.mark.parametrize("sql", NEVER_EXPLAINED)
def test_statements_that_cannot_be_explained_never_reach_the_planner(estimators: Estimators, scripted, sql):
    planner = scripted()
    events = Events()
    estimator = estimators.make(planner.url, events=events, budget="30s")
    for _ in range(2):  # the second time from the cache's memory of the text, without a parse
        use = estimators.estimate(estimator, sql)
        assert (use.estimate, use.cause) == (None, NOT_EXPLAINABLE)
    assert planner.posts == [] and events.fallbacks == {NOT_EXPLAINABLE: 2}


def test_a_statement_over_the_length_limit_is_not_estimated(estimators: Estimators, scripted):
    planner = scripted()
    estimator = estimators.make(planner.url, budget="30s", max_statement_length=100)
    assert estimators.estimate(estimator, "SELECT " + ", ".join(["1"] * 100)).cause == TOO_LONG
    assert planner.posts == []


def test_a_user_over_the_explain_rate_is_routed_without_estimates(estimators: Estimators, scripted):
    planner = scripted()
    estimator = estimators.make(planner.url, budget="30s", user_rate={"per_second": 0.001, "burst": 2})
    heavy = [estimators.estimate(estimator, f"SELECT {n} FROM tpch.tiny.nation", "heavy") for n in range(4)]
    assert [use.source or use.cause for use in heavy] == ["planner", "planner", RATE_LIMITED, RATE_LIMITED]
    # Another user is not held back, and a statement in the cache costs the heavy user nothing.
    assert estimators.estimate(estimator, "SELECT 9 FROM tpch.tiny.nation", "light").source == "planner"
    assert estimators.estimate(estimator, "SELECT 0 FROM tpch.tiny.nation", "heavy").source == "cache"
    assert len(planner.posts) == 3


def test_no_more_explains_open_than_allowed(estimators: Estimators, scripted):
    planner = scripted()
    planner.hold()
    estimator = estimators.make(planner.url, budget="100ms", timeout="30s", max_in_flight=2)
    causes = [estimators.estimate(estimator, f"SELECT {n}").cause for n in range(3)]
    assert causes == [BUDGET, BUDGET, BUSY]
    assert len(planner.posts) == 2
    planner.release()
    estimators.run(estimator.settle())


def test_each_cause_is_logged_once_until_an_estimate_is_had_again(estimators: Estimators, scripted, caplog):
    planner = scripted()
    planner.mode = "500"
    estimator = estimators.make(planner.url, budget="30s")
    caplog.set_level(logging.INFO, logger="gateway.routing.estimates")

    def said(cause: str) -> int:
        return sum(f"without an estimate: {cause}" in record.getMessage() for record in caplog.records)

    for n in range(3):
        assert estimators.estimate(estimator, f"SELECT {n}").cause == PLANNER_ERROR
    for _ in range(3):
        assert estimators.estimate(estimator, "SHOW TABLES").cause == NOT_EXPLAINABLE
    assert (said(PLANNER_ERROR), said(NOT_EXPLAINABLE)) == (1, 1)
    planner.mode = "ok"
    assert estimators.estimate(estimator, "SELECT 10").source == "planner"
    planner.mode = "500"
    estimators.estimate(estimator, "SELECT 11")
    estimators.estimate(estimator, "SHOW TABLES")
    assert (said(PLANNER_ERROR), said(NOT_EXPLAINABLE)) == (2, 1)  # a failure after a success is news
