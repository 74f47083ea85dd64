"""A gateway worker's observability: its tracer, its hot-path metric children, and the backend gauges."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from observability import metrics
from observability.request import ObservedRequest, Send
from observability.tracing import Tracing, TracingConfig


class Observer:
    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing
        self.tracer = tracing.tracer
        self.metrics = metrics.HotPathMetrics()
        self._published: set[str] = set()

    @classmethod
    def start(cls, config: TracingConfig) -> Observer:
        return cls(Tracing.start(config))

    def begin(self, scope: dict[str, Any], send: Send, kind: str) -> ObservedRequest:
        """One proxied request of ``kind`` (submit, poll, cancel, other) starts."""
        return ObservedRequest(self.metrics, self.tracer, scope, send, kind)

    def publish_backends(self, backends: Iterable[metrics.BackendGauges]) -> None:
        """This worker's view of every backend, into the gauges; backends no longer listed are forgotten."""
        names = set()
        for values in backends:
            names.add(values.name)
            metrics.publish_backend(values)
        for gone in self._published - names:
            metrics.forget_backend(gone)
        self._published = names

    async def stop(self) -> None:
        metrics.worker_exited()
        await self.tracing.stop()
