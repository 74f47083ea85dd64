"""The query locator hands out a query's trace context, even when it found the query by asking the backends."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.query_locator import QueryLocator

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class LateStore:
    """A store that learns of the query only after ``answers_before`` lookups (the history flush)."""

    def __init__(self, answers_before: int) -> None:
        self.lookups = 0
        self.answers_before = answers_before

    async def backend_for_query(self, query_id: str) -> tuple[str, str, str | None] | None:
        self.lookups += 1
        return ("trino-1", "http://trino-1:8080", TRACE) if self.lookups > self.answers_before else None


def _locator(store: Any, settle: float) -> QueryLocator:
    locator = QueryLocator(store, registry=None, session=None, settle_seconds=settle)  # type: ignore[arg-type]

    async def ask_backends(query_id: str) -> tuple[str, str]:
        return "trino-1", "http://trino-1:8080"

    locator._ask_backends = ask_backends  # type: ignore[method-assign]
    return locator


def test_a_query_not_yet_in_the_store_gets_its_trace_after_one_settle_wait():
    async def scenario() -> Any:
        locator = _locator(LateStore(answers_before=1), settle=0.01)
        return await locator.locate("q1")

    assert asyncio.run(scenario()) == ("trino-1", "http://trino-1:8080", TRACE)


def test_a_query_found_by_asking_the_backends_gets_its_trace_once_the_store_has_it():
    async def scenario() -> tuple[Any, Any]:
        locator = _locator(LateStore(answers_before=2), settle=0.01)
        first = await locator.locate("q1")
        await asyncio.sleep(0.2)
        later = locator.cached("q1")
        locator.close()
        return first, later

    first, later = asyncio.run(scenario())
    assert first == ("trino-1", "http://trino-1:8080", None)
    assert later == ("trino-1", "http://trino-1:8080", TRACE)


def test_without_tracing_the_locator_does_not_wait():
    async def scenario() -> tuple[Any, int]:
        store = LateStore(answers_before=1)
        locator = _locator(store, settle=0.0)
        return await locator.locate("q1"), store.lookups

    assert asyncio.run(scenario()) == (("trino-1", "http://trino-1:8080", None), 1)
