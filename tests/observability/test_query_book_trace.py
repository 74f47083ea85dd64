"""The query book hands out a query's trace context, even when it found the query by asking the backends."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.backends.registry import BackendRegistry
from gateway.queries.book import QueryBook
from gateway.store import MemoryStore, QueryRecord
from gateway.store.backend import Backend

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRINO_1 = Backend(name="trino-1", proxy_to="http://trino-1:8080")


class LateStore(MemoryStore):
    """A store that learns of the query only after ``answers_before`` lookups (the history flush)."""

    def __init__(self, answers_before: int) -> None:
        super().__init__()
        self.lookups = 0
        self.answers_before = answers_before

    async def get_query(self, query_id: str) -> QueryRecord | None:
        self.lookups += 1
        if self.lookups <= self.answers_before:
            return None
        return QueryRecord(
            query_id, "trino-1", "http://trino-1:8080", "adhoc", None, None, None, None, 1, trace_parent=TRACE
        )


def _book(store: LateStore, settle: float) -> QueryBook:
    book = QueryBook(
        store,
        BackendRegistry(store),
        upstream=None,
        history=None,
        transactions=None,
        settle_seconds=settle,  # type: ignore[arg-type]
    )

    async def ask_backends(query_id: str) -> Backend:
        return TRINO_1

    book._ask_backends = ask_backends  # type: ignore[method-assign]
    return book


def _where(query: Any) -> tuple[str, str, str | None]:
    return query.backend.name, query.backend.proxy_to, query.trace_parent


def test_a_query_not_yet_in_the_store_gets_its_trace_after_one_settle_wait():
    async def scenario() -> Any:
        return await _book(LateStore(answers_before=1), settle=0.01).find("q1")

    assert _where(asyncio.run(scenario())) == ("trino-1", "http://trino-1:8080", TRACE)


def test_a_query_found_by_asking_the_backends_gets_its_trace_once_the_store_has_it():
    async def scenario() -> tuple[Any, Any]:
        book = _book(LateStore(answers_before=2), settle=0.01)
        first = _where(await book.find("q1"))
        await asyncio.sleep(0.2)
        later = book.get("q1")
        book.close()
        return first, _where(later)

    first, later = asyncio.run(scenario())
    assert first == ("trino-1", "http://trino-1:8080", None)
    assert later == ("trino-1", "http://trino-1:8080", TRACE)


def test_without_tracing_the_book_does_not_wait():
    async def scenario() -> tuple[Any, int]:
        store = LateStore(answers_before=1)
        found = await _book(store, settle=0.0).find("q1")
        return _where(found), store.lookups

    assert asyncio.run(scenario()) == (("trino-1", "http://trino-1:8080", None), 1)
