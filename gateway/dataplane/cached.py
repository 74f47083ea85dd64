"""New queries answered from the result cache, and the pages of those answers.

    POST /v1/statement ─▶ the cache applies? (group, rule, client tags: gateway.cache.policy)
        ├─ no ──────────────────────────────▶ as any query (no word in its history)
        ├─ not eligible (gateway.cache.statement) ─▶ as any query; its history says why
        ├─ an entry ─▶ HIT: Trino's QUEUED page under an id of the gateway's, then pages of rows
        ├─ the same query runs ─▶ it waits (cache.grace) for that one's result: WAITED, or runs on its own
        └─ otherwise ─▶ MISS: it runs, captured; its finished result becomes the entry

A cached answer's pages are ``/v1/statement/executing/{id}/{key}/{page}``: the key names the entry,
and only a client that was given it can know it (it is made with the fleet's secret), so any worker
or node serves any page of it from the entry in its tiers. No cluster sees a hit: its cancel is
answered here, and its id is known to no backend.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from gateway import errors
from gateway.cache.capture import Capture
from gateway.cache.flights import Flight
from gateway.cache.key import cache_key, is_key, owner_of
from gateway.cache.policy import Use, decide
from gateway.cache.result import Result
from gateway.cache.results import HIT, MISS, NOT_ELIGIBLE, REFUSED, WAITED, ResultCache
from gateway.cache.statement import Examined, examine
from gateway.cache.stored import Stored
from gateway.config import GroupConfig
from gateway.dataplane.exchange import Exchange
from gateway.dataplane.pages import JSON
from gateway.dataplane.query_ids import CACHED_MARK
from gateway.queries.book import QueryBook
from gateway.queries.held import waiting_query_id
from gateway.routing.rules import VERIFIED_USER
from gateway.store import QueryRecord, now_ms

log = logging.getLogger("gateway.cache")

# The coordinator-id part of a cached answer's query id: unique to this process.
_SUFFIX = CACHED_MARK[1:] + secrets.token_hex(6)
_PAGE = re.compile(r"^/v1/statement/executing/([0-9_a-z]+)/([0-9a-f]{64})/(\d{1,9})$")
# The history's backend for a query the cache answered (no backend name can have parentheses).
FROM_CACHE = "(cache)"
# A client reading a cached answer page by page may go on for this long after the entry expired.
READ_ON_MS = 60_000
HEADER = b"x-trino-gateway-cache"
# Statements examined lately (a dashboard sends the same texts again and again), bounded in bytes.
EXAMINED_BYTES = 8 * 1024 * 1024


@dataclass(slots=True)
class Considered:
    """What the cache made of a new query that it did not answer: its word for the query's history
    and span, and the capture of its result if it is to be cached."""

    word: str | None
    capture: Capture | None = None


ANSWERED = Considered("answered")
NOT_CACHED = Considered(None)


class CachedAnswers:
    def __init__(self, cache: ResultCache, groups: dict[str, GroupConfig], book: QueryBook) -> None:
        self.cache = cache
        self.settings = cache.settings
        self.groups = groups
        self.book = book
        self._examined: OrderedDict[str, Examined] = OrderedDict()
        self._examined_bytes = 0

    # -- a new query ----------------------------------------------------------------------------------
    async def consider(
        self,
        x: Exchange,
        group: str,
        rule_ttl: float | None,
        sql: str,
        user: str | None,
        in_transaction: bool,
        routed_by: tuple[str, str | None],
    ) -> Considered:
        """The cache's part in a new query: answered here (``ANSWERED``), or what to run it with."""
        settings = self.groups.get(group)
        use = decide(settings.cache if settings is not None else None, rule_ttl, x.header(b"x-trino-client-tags"))
        if use is None:
            return Considered(None)
        why_not = self._why_not(sql, in_transaction, x.header(b"x-trino-catalog"))
        if why_not is not None:
            return self._counted(x, group, Considered(f"{NOT_ELIGIBLE}: {why_not}"))
        normalised = self._examine(sql).normalised
        assert normalised is not None
        owner = owner_of(x.scope.get(VERIFIED_USER), user, _authorization(x), group if use.shared else None)
        key = cache_key(self.cache.secret, normalised, group, owner, x.scope["headers"])
        if use.lookup:
            stored = await self.cache.get(key, now_ms())
            if stored is not None and await self._answer(x, stored, HIT, group, sql, user, routed_by):
                return ANSWERED
        flight, leads = self.cache.flights.lead(key)
        if not leads:
            if use.lookup:
                stored = await flight.wait(self.settings.grace)
                if stored is not None and await self._answer(x, stored, WAITED, group, sql, user, routed_by):
                    return ANSWERED
            # The query it waited for failed, took longer than the grace, or the client refused a
            # cached answer: it runs on its own, and is not captured (its twin is, or failed).
            return self._counted(x, group, Considered(REFUSED if not use.lookup else MISS))
        return self._counted(
            x, group, Considered(REFUSED if not use.lookup else MISS, self._capture(flight, key, group, use))
        )

    def _why_not(self, sql: str, in_transaction: bool, catalog: str | None) -> str | None:
        if in_transaction:
            return "in a transaction"
        if len(sql) > self.settings.max_statement_length:
            return "the statement is longer than cache.max_statement_length"
        if (catalog or "").strip().strip('"').lower() == "system":
            return "the session's catalog is system"  # (a table named alone may be one of system's)
        return self._examine(sql).why_not

    def _examine(self, sql: str) -> Examined:
        examined = self._examined.get(sql)
        if examined is not None:
            self._examined.move_to_end(sql)
            return examined
        examined = examine(sql)
        self._examined[sql] = examined
        self._examined_bytes += len(sql) + len(examined.normalised or "")
        while self._examined_bytes > EXAMINED_BYTES and self._examined:
            old, was = self._examined.popitem(last=False)
            self._examined_bytes -= len(old) + len(was.normalised or "")
        return examined

    def _capture(self, flight: Flight, key: str, group: str, use: Use) -> Capture:
        def landed(stored: Stored | None) -> None:
            self.cache.flights.land(flight, stored)

        def done(result: Result | None, why: str | None) -> None:
            if result is not None:
                self.cache.put(key, group, result, use.ttl, landed)
                return
            if why is not None:
                log.warning("a result of routing group %r is not cached: %s", group, why)
            landed(None)

        return Capture(self.settings.max_entry_bytes, done)

    def _counted(self, x: Exchange, group: str, considered: Considered) -> Considered:
        word = considered.word
        assert word is not None
        self.cache.counted(group, NOT_ELIGIBLE if word.startswith(NOT_ELIGIBLE) else word)
        x.observed.cached(word)
        return considered

    async def _answer(
        self,
        x: Exchange,
        stored: Stored,
        word: str,
        group: str,
        sql: str,
        user: str | None,
        routed_by: tuple[str, str | None],
    ) -> bool:
        """The client gets the QUEUED page of a cached answer (False: the entry could not be read)."""
        if self.cache.decoded(stored) is None:
            log.warning("an entry of the result cache could not be read; the query runs")
            return False
        query_id = waiting_query_id(_SUFFIX)
        self.cache.counted(group, word)
        x.observed.cached(word, query_id)
        now = now_ms()
        self.book.history.submitted(
            QueryRecord(
                query_id=query_id,
                backend_name=FROM_CACHE,
                backend_url="",
                routing_group=group,
                user_name=user,
                source=x.header(b"x-trino-source"),
                client_tags=x.header(b"x-trino-client-tags"),
                query_text=sql,
                submitted_at=now,
                state="FINISHED",
                finished_at=now,
                elapsed_ms=0,
                routing_source=routed_by[0],
                routing_rule=routed_by[1],
                cache=word,
            )
        )
        page = {
            "id": query_id,
            "infoUri": f"{x.base}/ui/query.html?{query_id}",
            "nextUri": _page_uri(x.base, query_id, stored.key, 1),
            "stats": _stats("QUEUED", queued=True),
            "warnings": [],
        }
        await x.respond(200, [*JSON, (HEADER, word.encode())], orjson.dumps(page))
        return True

    # -- the pages of a cached answer ---------------------------------------------------------------
    async def page(self, x: Exchange) -> None:
        """A request of a query the cache answered: a page of its rows, its cancel, or anything else."""
        query_id = x.classified.query_id or ""
        path = x.scope["path"]
        match = _PAGE.match(path)
        x.observed.located(query_id, FROM_CACHE, None)
        if x.method == "DELETE":
            await x.respond(204, [], b"")  # nothing runs anywhere: the client stops reading
            return
        if match is None or match.group(1) != query_id or not is_key(match.group(2)) or x.method != "GET":
            await x.respond_text(404, f"Query {query_id} was answered from the result cache: no cluster has it")
            return
        key, number = match.group(2), int(match.group(3))
        stored = await self.cache.get(key, now_ms() - READ_ON_MS)
        decoded = self.cache.decoded(stored) if stored is not None else None
        if decoded is None:
            message = (
                f"trino-gateway: the cached result of query {query_id} expired or was purged while it was read; "
                "run the query again"
            )
            await x.respond_json(200, errors.failed_query(x.base, message, query_id=query_id))
            return
        result, pages = decoded
        if not 1 <= number <= len(pages):
            await x.respond_text(410, "Query page is gone")
            return
        start, end = pages[number - 1]
        last = number == len(pages)
        document: dict[str, Any] = {
            "id": query_id,
            "infoUri": f"{x.base}/ui/query.html?{query_id}",
            "columns": orjson.Fragment(result.columns),
            "data": orjson.Fragment(b"[" + b",".join(result.rows[start:end]) + b"]"),
            "stats": _stats("FINISHED" if last else "RUNNING", rows=end),
            "warnings": [],
        }
        if not last:
            document["nextUri"] = _page_uri(x.base, query_id, key, number + 1)
        await x.respond(200, list(JSON), orjson.dumps(document))


def _page_uri(base: str, query_id: str, key: str, number: int) -> str:
    return f"{base}/v1/statement/executing/{query_id}/{key}/{number}"


def _stats(state: str, queued: bool = False, rows: int = 0) -> dict[str, Any]:
    stats = errors.query_stats(state, queued=queued)
    stats["processedRows"] = rows
    stats["progressPercentage"] = 100.0 if state == "FINISHED" else None
    # Not a field of Trino's: what the client's statistics say of where the answer came from.
    stats["resultCache"] = "HIT"
    return stats


def _authorization(x: Exchange) -> bytes | None:
    value = x.header(b"authorization")
    return value.encode("latin-1") if value is not None else None
