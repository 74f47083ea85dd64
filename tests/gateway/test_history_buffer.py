"""History rows wait in a bounded buffer while the store cannot be written, and are written when it is back."""

from __future__ import annotations

import asyncio

from gateway.queries.history import QueryHistory
from gateway.store import QueryOutcome, QueryRecord


class FlakyStore:
    """Fails every write while ``down``; remembers what it took."""

    def __init__(self) -> None:
        self.down = True
        self.rows: dict[str, str | None] = {}

    async def record_queries(self, records: list[QueryRecord]) -> None:
        if self.down:
            raise ConnectionRefusedError("store down")
        self.rows.update({r.query_id: None for r in records})

    async def finish_queries(self, outcomes: list[QueryOutcome]) -> None:
        if self.down:
            raise ConnectionRefusedError("store down")
        for outcome in outcomes:
            if outcome.query_id in self.rows:
                self.rows[outcome.query_id] = outcome.state


def _record(query_id: str) -> QueryRecord:
    return QueryRecord(query_id, "b", "http://b", "adhoc", "u", None, None, "SELECT 1", 0)


def test_rows_written_while_the_store_is_down_are_written_when_it_is_back():
    async def scenario() -> tuple[dict[str, str | None], int]:
        store = FlakyStore()
        history = QueryHistory(store, 100, 1, flush_interval=0.01, retry_interval=0.01)  # type: ignore[arg-type]
        task = asyncio.create_task(history.flush_forever())
        history.submitted(_record("q1"))
        history.finished("q1", "FINISHED", None)
        history.submitted(_record("q2"))
        await asyncio.sleep(0.1)
        assert store.rows == {} and history.pending == 3
        store.down = False
        for _ in range(100):
            if history.pending == 0:
                break
            await asyncio.sleep(0.02)
        task.cancel()
        return store.rows, history.pending

    rows, pending = asyncio.run(scenario())
    assert rows == {"q1": "FINISHED", "q2": None}
    assert pending == 0


def test_the_buffer_keeps_the_newest_rows_up_to_its_bound():
    async def scenario() -> list[str]:
        store = FlakyStore()
        history = QueryHistory(store, 100, 1, max_pending=2)  # type: ignore[arg-type]
        for i in range(5):
            history.submitted(_record(f"q{i}"))
        await history.flush()
        store.down = False
        await history.flush()
        return sorted(store.rows)

    assert asyncio.run(scenario()) == ["q3", "q4"]


class SlowStore(FlakyStore):
    """Takes writes, but the first one hangs until ``release`` is set (a loaded store)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.writing = asyncio.Event()
        self.release = asyncio.Event()

    async def record_queries(self, records: list[QueryRecord]) -> None:
        self.writing.set()
        await self.release.wait()
        await super().record_queries(records)


def test_rows_being_written_when_the_node_stops_are_written_by_its_last_flush():
    # A node stops: its flushing task is cancelled, then the history drained. A write under way at
    # the cancel used to lose its rows (seen once: a query missing from the history after a restart).
    async def scenario() -> dict[str, str | None]:
        store = SlowStore()
        history = QueryHistory(store, 100, 1, flush_interval=0.01)  # type: ignore[arg-type]
        task = asyncio.create_task(history.flush_forever())
        history.submitted(_record("q1"))
        history.finished("q1", "FINISHED", None)
        await asyncio.wait_for(store.writing.wait(), 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        store.release.set()
        await history.drain()
        return store.rows

    assert asyncio.run(scenario()) == {"q1": "FINISHED"}
