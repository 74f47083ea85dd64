"""Admission control: queries wait in the gateway while their group's backends are full."""

from gateway.queries.admission.controller import (
    ADMITTED,
    CANCELED,
    FAILED,
    QUEUED,
    STARTED,
    Admission,
    QueueFull,
    Slot,
    WaitingQuery,
    holds_queries,
)

__all__ = [
    "ADMITTED",
    "CANCELED",
    "FAILED",
    "QUEUED",
    "STARTED",
    "Admission",
    "QueueFull",
    "Slot",
    "WaitingQuery",
    "holds_queries",
]
