"""What a query keeps of its estimate: in the history (JSON, NaN as null, read back as NaN), in a
waiting query's submission on a SQL store, and in its spans' attributes."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.queries.submission import Submission, pack
from gateway.routing.estimates import EstimateUse, QueryEstimate
from gateway.routing.estimates.estimate import Estimates, fallback
from observability import metrics
from observability.request import ObservedRequest

NAN = math.nan
ESTIMATE = QueryEstimate(
    total=Estimates(91.0, 7000.0, 6148.25, NAN, 1734.25),
    max=Estimates(25.0, 1940.0, 2207.0, NAN, 1734.25),
    fragments=2,
    joins=1,
    tableScans=2,
    remoteExchanges=1,
    aggregations=0,
    nodes=5,
)


def _same(a: EstimateUse | None, b: EstimateUse) -> bool:
    """Equal, with NaN equal to NaN (as JSON's null is read back)."""
    assert a is not None
    return a.to_json() == b.to_json()


def test_an_estimate_survives_the_history_with_nan_as_null():
    use = EstimateUse(ESTIMATE, "planner", 0.0415)
    text = use.to_json()
    assert '"memoryCost":null' in text and "NaN" not in text
    back = EstimateUse.from_json(text)
    assert _same(back, use) and back is not None and math.isnan(back.estimate.total.memoryCost)  # type: ignore[union-attr]
    none = fallback("budget", 0.3)
    assert _same(EstimateUse.from_json(none.to_json()), none)
    for garbage in (None, "", "not json", "[1]"):
        assert EstimateUse.from_json(garbage) is None


def test_a_waiting_querys_submission_keeps_its_estimate():
    use = EstimateUse(ESTIMATE, "cache", 0.00002)
    submission = Submission(b"SELECT 1", "alice", None, None, None, "large", "rule", "by rows", pack([]), estimate=use)
    back = Submission.from_json(submission.to_json())
    assert back.estimate is not None and _same(back.estimate, use)
    assert (
        Submission.from_json(
            Submission(b"SELECT 1", None, None, None, None, "g", "default", None, b"").to_json()
        ).estimate
        is None
    )


def test_the_route_span_carries_the_estimate_and_an_estimate_span_covers_the_wait():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    scope: dict[str, Any] = {"type": "http", "method": "POST", "path": "/v1/statement", "headers": []}

    async def sent(_: dict[str, Any]) -> None:
        return None

    observed = ObservedRequest(metrics.HotPathMetrics(), provider.get_tracer("test"), scope, sent, "submit")
    began = observed.clock()
    use = EstimateUse(ESTIMATE, "planner", 0.05)
    observed.estimated(use.span_attributes(), use.seconds)
    observed.decided("large", "large", ["trino-2"], began, rule="by rows")
    asyncio.run(observed.send({"type": "http.response.start", "status": 200, "headers": []}))
    observed.finish()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    route, estimate = spans["route"], spans["estimate"]
    assert route.attributes["trino.estimate.source"] == "planner"
    assert route.attributes["trino.estimate.max.outputRowCount"] == 25.0
    assert route.attributes["trino.estimate.joins"] == 1
    assert "trino.estimate.max.memoryCost" not in route.attributes  # unknown: left out, never 0
    assert estimate.end_time - estimate.start_time == 50_000_000
    assert estimate.parent.span_id == spans["POST /v1/statement"].context.span_id
