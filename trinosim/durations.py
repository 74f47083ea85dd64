"""Airlift ``Duration`` strings, the form Trino uses for times (``"500ms"``, ``"2.37m"``)."""

from __future__ import annotations

import re

_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ns|us|ms|s|m|h|d)\s*$")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; a bare number counts as seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    match = _PATTERN.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r}: expected a number and a unit such as 500ms, 2s, 1.5m")
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """The most readable airlift unit for ``seconds``, with two decimals like Trino prints."""
    for unit in ("d", "h", "m", "s"):
        if seconds >= _UNITS[unit]:
            return f"{seconds / _UNITS[unit]:.2f}{unit}"
    return f"{seconds * 1000:.2f}ms"
