"""A slot: one query's claim on its backend's and its user's capacity, from the moment admission
control lets it start until whoever sees it end releases it."""

from __future__ import annotations

from typing import Protocol


class SlotOwner(Protocol):
    def slot_released(self, slot: Slot) -> None: ...

    async def slot_bound(self, slot: Slot, query_id: str) -> None: ...


class Slot:
    __slots__ = ("backend", "owner", "released", "slot_id", "user")

    def __init__(self, owner: SlotOwner, slot_id: str | None, backend: str, user: str) -> None:
        self.owner = owner
        self.slot_id = slot_id
        self.backend = backend
        self.user = user
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            if self.slot_id is not None:
                self.owner.slot_released(self)

    async def bind(self, query_id: str) -> None:
        """The backend took the slot's query under ``query_id``: any worker or node that sees that query
        end frees the slot."""
        if self.slot_id is not None and not self.released:
            await self.owner.slot_bound(self, query_id)
