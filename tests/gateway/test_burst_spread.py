"""A burst of new queries is decided before the first is answered: each decision must count the
submissions still on their way, or every one of them goes to the backend that looked best."""

from __future__ import annotations

from typing import Any

from gateway.backends.health.state import BackendHealth
from gateway.config import ScoreWeights
from gateway.queries.book import QueryBook
from gateway.routing.scoring import costs

NOTHING: Any = None


def test_a_submission_on_its_way_counts_as_in_flight_until_it_is_answered():
    book = QueryBook(NOTHING, NOTHING, NOTHING, NOTHING, NOTHING)
    with book.sending("trino-1"):
        with book.sending("trino-1"):
            assert (book.count("trino-1"), book.count("trino-2")) == (2, 0)
        assert book.count("trino-1") == 1
    assert book.count("trino-1") == 0


def test_a_submission_that_fails_on_its_way_stops_counting():
    book = QueryBook(NOTHING, NOTHING, NOTHING, NOTHING, NOTHING)
    try:
        with book.sending("trino-1"):
            raise ConnectionError("refused")
    except ConnectionError:
        pass
    assert book.count("trino-1") == 0


def test_the_next_decision_of_a_burst_prefers_the_backend_nothing_is_on_its_way_to():
    # trino-1 answers 10 ms faster: alone, that makes it the better place (without health counts,
    # the default INFO_API monitor's case, the running term is the gateway's own count).
    book = QueryBook(NOTHING, NOTHING, NOTHING, NOTHING, NOTHING)
    healths = [BackendHealth("trino-1", latency=0.010), BackendHealth("trino-2", latency=0.020)]
    fast, slow = costs(healths, book.count, ScoreWeights())
    assert fast < slow
    with book.sending("trino-1"):
        fast, slow = costs(healths, book.count, ScoreWeights())
    assert fast > slow
