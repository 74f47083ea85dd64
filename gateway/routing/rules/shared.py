"""The routing rules of a fleet: the last change made on any node counts on every node.

A change is either an edit of a node's rules file (picked up by its file watcher) or the admin API's
``PUT /gateway/routing-rules``. Either way the node that made it publishes the text to the store,
which tells every worker (PostgreSQL's NOTIFY; a poll every few seconds otherwise), and each takes it
up (``RulesFile.adopt``: in memory, and in its own file where that can be written). At start a node's
file wins over the store's copy only if it changed later than it. So a file edited on one node, or
a ConfigMap that updates every pod's file at its own pace, ends in the same rules everywhere: the
newest change wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.routing.rules.file_rules import RulesFile, RulesLoadError
from gateway.store import SharedRulesText, Store, now_ms
from gateway.store.records import ANYTHING_CHANGED, RULES_CHANGED

log = logging.getLogger("gateway.routing.rules")

POLL_SECONDS = 5.0


class SharedRules:
    def __init__(self, store: Store, rules: RulesFile, who: str, poll_seconds: float = POLL_SECONDS) -> None:
        self.store = store
        self.rules = rules
        self.who = who
        self.poll_seconds = poll_seconds
        # The text this worker last agreed with the store on; a different text in use is a change made
        # here (the file changed, or the admin API replaced it) to publish.
        self.agreed: str | None = None
        # When the rules in use here were last changed: the file's time at start, then each change.
        self.changed_at = int(rules.path.stat().st_mtime * 1000) if rules.path.exists() else 0
        self._wake = asyncio.Event()

    def changed(self, what: str) -> None:
        """The store says something changed (``Store.watch_changes``)."""
        if what in (RULES_CHANGED, ANYTHING_CHANGED):
            self._wake.set()

    def changed_here(self) -> None:
        """The admin API just replaced the rules in this worker: publish at once."""
        self._wake.set()

    async def sync(self) -> None:
        in_use = self.rules.text
        if self.agreed is not None and in_use != self.agreed:
            await self._publish(in_use)
            return
        shared = await self.store.get_routing_rules()
        if shared is None or (shared.text != in_use and shared.changed_at < self.changed_at):
            # Nobody published yet, or this node's file is newer than the store's copy.
            await self._publish(in_use)
        elif shared.text != in_use:
            try:
                await asyncio.to_thread(self.rules.adopt, shared.text)
            except RulesLoadError as error:
                # Published by a node whose version of the gateway reads rules differently.
                log.error(
                    "routing rules changed by %s do not load here, the rules in use stay: %s", shared.changed_by, error
                )
                self.agreed = in_use
                return
            self.agreed, self.changed_at = shared.text, shared.changed_at
        else:
            self.agreed = in_use

    async def _publish(self, text: str) -> None:
        self.changed_at = now_ms()
        await self.store.put_routing_rules(SharedRulesText(text, self.changed_at, self.who))
        self.agreed = text
        log.info("routing rules changed on this node published to every node")

    async def follow_forever(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception as error:
                log.warning("cannot share the routing rules through the store (%s); trying again", error)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wake.wait()
            self._wake.clear()
