"""Everything one simulated cluster holds, shared by its request handlers."""

from __future__ import annotations

import secrets
import time
import uuid

import duckdb
from aiohttp import web

from trinosim.config import SimConfig
from trinosim.queries import QueryManager


class SimState:
    def __init__(self, config: SimConfig, db: duckdb.DuckDBPyConnection) -> None:
        self.config = config
        self.faults = config.faults
        self.db = db
        self.manager = QueryManager(db, config)
        self.node_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{config.name}.trinosim"))
        self.started_wall = time.time()
        self.ui_tokens: set[str] = set()
        # GET /v1/info answered: how often gateways check this cluster (its own MBean shows it).
        self.info_requests = 0

    @property
    def workers(self) -> int:
        return self.faults.workers

    @property
    def uptime(self) -> float:
        return time.time() - self.started_wall

    def new_ui_token(self) -> str:
        token = secrets.token_urlsafe(24)
        self.ui_tokens.add(token)
        return token


# Where a server's state is kept on its aiohttp application.
STATE: web.AppKey[SimState] = web.AppKey("state", SimState)
