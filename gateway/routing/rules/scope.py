"""Reading a request from its ASGI scope, without a framework (the proxy's hot path does)."""

from __future__ import annotations

from typing import Any


def header(scope: dict[str, Any], name: bytes) -> str | None:
    """The first value of header ``name`` (lower-case bytes, as ASGI servers give names), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None
