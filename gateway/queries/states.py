"""The states of a query the gateway holds, one set for every store (docs/admission.md draws them):

    QUEUED ──admission control chose a backend──▶ ADMITTED ──a worker claimed it to send it──▶ SENDING
       │                                              │                                        │
       │                                              └──────────── the backend took it ──────▶ STARTED
       └─▶ FAILED (queue full, waited too long, no backend left)   CANCELED (by its client, abandoned)

STARTED: a backend runs it (the gateway may still hold it until its first rows: failover). A state
only ever moves forward (``RANK``); a query sent again after its backend failed goes back to QUEUED
under the same gateway id, as a new wait.
"""

from __future__ import annotations

QUEUED, ADMITTED, SENDING, STARTED, FAILED, CANCELED = "QUEUED", "ADMITTED", "SENDING", "STARTED", "FAILED", "CANCELED"
RANK = {QUEUED: 0, ADMITTED: 1, SENDING: 2, STARTED: 3, FAILED: 3, CANCELED: 3}
# Still in the queue's hands: a client's poll may be answered by whichever worker it reaches.
IN_QUEUE = (QUEUED, ADMITTED, SENDING)
ENDED = (FAILED, CANCELED)

# Trino's names for the queue's own failures (its resource groups'), and for a query nobody polls.
EXCEEDED_TIME_LIMIT = "EXCEEDED_TIME_LIMIT"
QUERY_QUEUE_FULL = "QUERY_QUEUE_FULL"
ABANDONED = "ABANDONED"


def duration(seconds: float) -> str:
    """Trino's ``Duration.toString``: the largest unit with a value of at least 1, two decimals."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            return f"{seconds / size:.2f}{unit}"
    return f"{seconds * 1000:.2f}ms"


def exceeded_message(max_queue_wait: float | None) -> str:
    return f"Query exceeded maximum queued time limit of {duration(max_queue_wait or 0)}"
