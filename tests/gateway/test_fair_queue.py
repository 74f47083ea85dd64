"""The fair queue on its own: who starts next among waiting queries."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.queries.admission.fair_queue import FairQueue


@dataclass(eq=False)
class W:
    party: str
    n: int = 0
    weight: float = 1.0
    queued: int = 0


def burst(queue: FairQueue[W], party: str, count: int, weight: float = 1.0) -> list[W]:
    waiters = [W(party, n, weight) for n in range(count)]
    for waiter in waiters:
        queue.push(waiter)
    return waiters


def drain(queue: FairQueue[W], eligible=lambda w: True) -> list[W]:
    order = []
    while (waiter := queue.pick(eligible)) is not None:
        order.append(waiter)
    return order


def test_a_burst_does_not_starve_a_user_who_comes_later():
    queue: FairQueue[W] = FairQueue()
    burst(queue, "dashboards", 200)
    burst(queue, "analyst", 3)
    first = [w.party for w in drain(queue)[:8]]
    # Turns alternate from the start: the analyst's 3 queries are among the first 6 started.
    assert first[:6].count("analyst") == 3, first


def test_fifo_serves_in_arrival_order():
    queue: FairQueue[W] = FairQueue(fifo=True)
    burst(queue, "dashboards", 5)
    burst(queue, "analyst", 2)
    assert [w.party for w in drain(queue)] == ["dashboards"] * 5 + ["analyst"] * 2


def test_weights_give_proportional_turns():
    queue: FairQueue[W] = FairQueue()
    burst(queue, "heavy", 60, weight=2.0)
    burst(queue, "light", 60, weight=1.0)
    first = [w.party for w in drain(queue)[:30]]
    assert first.count("heavy") == 20 and first.count("light") == 10


def test_an_idle_party_earns_no_credit_while_away():
    queue: FairQueue[W] = FairQueue()
    burst(queue, "a", 10)
    burst(queue, "b", 1)
    assert len(drain(queue)) == 11
    # b was away while a took many turns; back, it alternates with a rather than taking 9 in a row.
    burst(queue, "a", 10)
    burst(queue, "b", 10)
    first = [w.party for w in drain(queue)[:6]]
    assert first.count("b") == 3, first


def test_a_party_that_may_not_start_is_skipped_not_waited_for():
    queue: FairQueue[W] = FairQueue()
    burst(queue, "at-limit", 3)
    others = burst(queue, "other", 2)
    assert drain(queue, eligible=lambda w: w.party != "at-limit") == others
    assert len(queue) == 3
    assert [w.party for w in drain(queue)] == ["at-limit"] * 3


def test_removed_and_requeued_waiters_are_seen_once():
    queue: FairQueue[W] = FairQueue()
    waiters = burst(queue, "a", 3)
    assert queue.remove(waiters[1]) and not queue.remove(waiters[1])
    picked = queue.pick(lambda w: True)
    assert picked is waiters[0]
    queue.push(picked, front=True)  # its backend refused it: back first in line
    queue.push(picked, front=True)  # twice by mistake: still one place
    assert drain(queue) == [waiters[0], waiters[2]]
    assert len(queue) == 0 and list(queue) == []


def test_ten_thousand_waiting_cost_a_pick_per_party_not_per_query():
    queue: FairQueue[W] = FairQueue()
    for n in range(10_000):
        queue.push(W(f"user-{n % 5}", n))
    calls = 0

    def eligible(waiter: W) -> bool:
        nonlocal calls
        calls += 1
        return True

    assert queue.pick(eligible) is not None
    assert calls <= 5
    assert queue.parties() == {"user-0": 1999, "user-1": 2000, "user-2": 2000, "user-3": 2000, "user-4": 2000}
