"""trinosim: a Trino-protocol server backed by DuckDB, that real Trino clients cannot tell from Trino,
and the kit that runs it and the gateway for tests, the demo and benchmarks (``harness``,
``gateway_process``, ``otlp_receiver``, ``demo``). It comes with the ``[sim]`` extra; the gateway
never imports it."""

from trinosim.config import Faults, SimConfig
from trinosim.harness import TrinoSimProcess

__all__ = ["Faults", "SimConfig", "TrinoSimProcess"]
