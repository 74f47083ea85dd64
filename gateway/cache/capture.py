"""A query's result, gathered page by page as its client reads it, to be cached once it finished.

The query book hands every page of a query it captures to ``page`` and tells ``ended`` when the
query ends any other way. Nothing is cached unless the last page says FINISHED without an error and
every page held inline rows (a spooled result's segments are not rows the gateway has), within the
entry limit: a failed, cancelled, abandoned or oversized query leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateway.cache.result import Result

# Why a capture gave up (the history's word is "miss" all the same; the log says which).
OUT_OF_ORDER = "a page of it was read through another worker or node"
TOO_LARGE = "its result is larger than cache.max_entry_bytes"
SPOOLED = "its result is spooled (segments), not inline rows"
FAILED = "it did not finish"
UNREADABLE = "a page of it was not a Trino document"


class Capture:
    """One query's result on its way into the cache; ``done`` is called once: with the result, or
    with None and why not."""

    __slots__ = ("_columns", "_done", "_expected", "_last_path", "_rows", "_size", "attached", "limit")

    def __init__(self, limit: int, done: Callable[[Result | None, str | None], None]) -> None:
        self.limit = limit
        self._done: Callable[[Result | None, str | None], None] | None = done
        self._columns: bytes | None = None
        self._rows: list[bytes] = []
        self._size = 0
        self._expected: str | None = None  # the path of the page its client should ask for next
        self._last_path: str | None = None
        self.attached = False

    @property
    def open(self) -> bool:
        return self._done is not None

    def attach(self) -> None:
        """A backend took the query (again, after another failed it before any row reached its
        client): its result from the start."""
        self.attached = True
        self._columns, self._rows, self._size = None, [], 0
        self._expected = self._last_path = None

    def page(self, body: bytes, last: bool, path: str | None = None) -> None:
        """A page of the query (``last``: it has no nextUri; ``path``: the one its client asked for,
        None for the submission's answer). The pages must come as a chain, each the one its
        predecessor's nextUri named: a client's retry of a page is ignored (its rows came already),
        and a page this worker never saw (another worker or node served it) ends the capture."""
        if self._done is None:
            return
        if path is not None and self._expected is not None and not _same_page(path, self._expected):
            if path != self._last_path:
                self._end(None, OUT_OF_ORDER)
            return
        try:
            page: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            self._end(None, UNREADABLE)
            return
        if not isinstance(page, dict):
            self._end(None, UNREADABLE)
            return
        if page.get("error") is not None:
            self._end(None, FAILED)
            return
        if self._columns is None and isinstance(page.get("columns"), list):
            self._columns = orjson.dumps(page["columns"])
            self._size += len(self._columns)
        data = page.get("data")
        if data is not None:
            if not isinstance(data, list):
                self._end(None, SPOOLED)
                return
            for row in data:
                encoded = orjson.dumps(row)
                self._size += len(encoded) + 1
                self._rows.append(encoded)
            if self._size > self.limit:
                self._end(None, TOO_LARGE)
                return
        next_uri = page.get("nextUri")
        self._expected = urlsplit(next_uri).path if isinstance(next_uri, str) else None
        self._last_path = path
        if last:
            state = (page.get("stats") or {}).get("state")
            if state != "FINISHED" or self._columns is None or page.get("updateType") is not None:
                self._end(None, FAILED)
                return
            self._end(Result(self._columns, self._rows), None)

    def ended(self) -> None:
        """The query ended without a last page the capture saw (cancelled, failed, abandoned)."""
        if self._done is not None:
            self._end(None, FAILED)

    def _end(self, result: Result | None, why: str | None) -> None:
        done, self._done = self._done, None
        self._rows = []
        if done is not None:
            done(result, why)


def _same_page(path: str, expected: str) -> bool:
    # (A backend behind a path prefix names its pages with it; the gateway's client may not.)
    return path == expected or expected.endswith(path) or path.endswith(expected)
