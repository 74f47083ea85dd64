"""Single flight: the first query of a key leads, the next ones wait for its entry (each at most its
grace), and a flight a waiter gave up on takes no more waiters."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway.cache import flights as flights_module
from gateway.cache.flights import Flights
from gateway.cache.stored import Stored

T = TypeVar("T")
KEY = "a" * 64
ENTRY = Stored(KEY, "adhoc", 1_000, 10_000, b"blob")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())


def test_the_first_query_of_a_key_leads_and_the_next_ones_join_its_flight():
    flights = Flights()
    first, leads = flights.lead(KEY)
    assert leads
    second, joins_led = flights.lead(KEY)
    assert second is first and not joins_led
    other, leads_other = flights.lead("b" * 64)
    assert other is not first and leads_other
    assert len(flights) == 2


def test_landing_with_an_entry_answers_every_waiter_with_it():
    async def scenario() -> list[Stored | None]:
        flights = Flights()
        flight, _ = flights.lead(KEY)
        waiters = [asyncio.ensure_future(flights.lead(KEY)[0].wait(5)) for _ in range(3)]
        await asyncio.sleep(0)
        assert flight.waiters == 3
        flights.land(flight, ENTRY)
        answers = await asyncio.gather(*waiters)
        assert flight.waiters == 0 and len(flights) == 0
        return answers

    assert run(scenario) == [ENTRY] * 3


def test_landing_without_an_entry_sends_every_waiter_on_its_own():
    async def scenario() -> list[Stored | None]:
        flights = Flights()
        flight, _ = flights.lead(KEY)
        waiters = [asyncio.ensure_future(flight.wait(5)) for _ in range(2)]
        await asyncio.sleep(0)
        flights.land(flight, None)
        return await asyncio.gather(*waiters)

    assert run(scenario) == [None, None]


def test_a_waiter_after_the_landing_is_answered_at_once():
    async def scenario() -> Stored | None:
        flights = Flights()
        flight, _ = flights.lead(KEY)
        flights.land(flight, ENTRY)
        return await flight.wait(0)

    assert run(scenario) == ENTRY


def test_after_the_landing_the_next_query_of_the_key_leads_a_new_flight():
    flights = Flights()
    flight, _ = flights.lead(KEY)
    flights.land(flight, None)
    again, leads = flights.lead(KEY)
    assert leads and again is not flight


def test_a_waiter_whose_grace_passes_runs_on_its_own_and_the_flight_takes_no_more_waiters():
    async def scenario() -> None:
        flights = Flights()
        slow, _ = flights.lead(KEY)
        patient = asyncio.ensure_future(slow.wait(5))
        assert await slow.wait(0.01) is None  # out-waited
        assert slow.outwaited

        newer, leads = flights.lead(KEY)
        assert leads and newer is not slow
        joined, leads = flights.lead(KEY)
        assert joined is newer and not leads

        # The slow leader lands its own flight all the same: its remaining waiter is answered, and the
        # newer flight is left flying.
        flights.land(slow, ENTRY)
        assert await patient == ENTRY
        assert flights.lead(KEY) == (newer, False)
        flights.land(newer, None)
        assert len(flights) == 0

    run(scenario)


def test_a_flight_nobody_landed_is_forgotten_once_stale(monkeypatch):
    now = [1_000.0]
    monkeypatch.setattr(flights_module.time, "monotonic", lambda: now[0])
    flights = Flights()
    old, _ = flights.lead(KEY)
    now[0] += 60
    younger, _ = flights.lead("b" * 64)
    now[0] += flights_module.STALE_SECONDS - 30  # old is stale, younger is not yet
    assert flights.lead("b" * 64) == (younger, False)
    assert len(flights) == 1
    fresh, leads = flights.lead(KEY)
    assert leads and fresh is not old
    now[0] += flights_module.STALE_SECONDS
    assert flights.lead("c" * 64)[1]
    assert len(flights) == 1


def test_a_zero_grace_never_waits_and_leaves_the_flight_open_to_joiners():
    async def scenario() -> None:
        flights = Flights()
        flight, _ = flights.lead(KEY)
        assert await flight.wait(0) is None
        assert not flight.outwaited
        assert flights.lead(KEY) == (flight, False)

    run(scenario)
