"""The ASGI application each worker imports (``granian --interface asgi gateway.node.asgi:app``,
``hypercorn -w 2 gateway.node.asgi:app``).

Each worker process imports this module; the configuration comes from the environment, where
``trino-gateway serve`` puts it (or from ``TRINO_GATEWAY_CONFIG_FILE`` when run by hand).
"""

from __future__ import annotations

import os

from gateway.config import load_config, parse_config
from gateway.node.app import create_app
from gateway.node.shutdown import ShutdownFlag

CONFIG_ENV = "TRINO_GATEWAY_CONFIG_JSON"
CONFIG_FILE_ENV = "TRINO_GATEWAY_CONFIG_FILE"


def _config():
    import json

    if CONFIG_ENV in os.environ:
        return parse_config(json.loads(os.environ[CONFIG_ENV]), "TRINO_GATEWAY_CONFIG_JSON")
    return load_config(os.environ.get(CONFIG_FILE_ENV))


# The parent process (trino-gateway serve) has migrated the store already; a worker started by hand
# migrates it itself (Alembic migrations are idempotent).
app = create_app(
    _config(), migrate=os.environ.get("TRINO_GATEWAY_MIGRATED") != "1", shutdown=ShutdownFlag.from_environment()
)
