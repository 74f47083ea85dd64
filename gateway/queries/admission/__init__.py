"""Admission control: the one algorithm (``admission``) over the queue's state (``state``: memory or
the SQL store), the fair queue that picks who starts next, and slots."""

from gateway.queries.admission.admission import Admission, Admitted, QueueFull
from gateway.queries.admission.memory_state import MemoryQueueState
from gateway.queries.admission.sql_state import SqlQueueState
from gateway.queries.admission.state import QueueState
from gateway.queries.slots import Slot

__all__ = ["Admission", "Admitted", "MemoryQueueState", "QueueFull", "QueueState", "Slot", "SqlQueueState"]
