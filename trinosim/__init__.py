"""trinosim: a Trino-protocol server backed by DuckDB, that real Trino clients cannot tell from Trino."""

from trinosim.config import Faults, SimConfig
from trinosim.harness import TrinoSimProcess

__all__ = ["Faults", "SimConfig", "TrinoSimProcess"]
