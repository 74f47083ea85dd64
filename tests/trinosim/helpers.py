"""Small helpers for trinosim tests: bounded waiting and raw protocol calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests

T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T = check()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
        last = check()
    return last


def ui_stats(url: str) -> dict[str, Any]:
    with requests.Session() as session:
        login = session.post(
            f"{url}/ui/login", data={"username": "admin", "password": ""}, allow_redirects=False, timeout=10
        )
        assert login.status_code == 303
        response = session.get(f"{url}/ui/api/stats", timeout=10)
        response.raise_for_status()
        return response.json()


def submit(url: str, sql: str, user: str = "raw", **headers: str) -> dict[str, Any]:
    response = requests.post(
        f"{url}/v1/statement", data=sql.encode(), timeout=10, headers={"X-Trino-User": user, **headers}
    )
    response.raise_for_status()
    return response.json()


def follow(first: dict[str, Any], timeout: float = 60.0) -> list[dict[str, Any]]:
    """Every response of a query, from the POST's to the final one."""
    pages = [first]
    deadline = time.monotonic() + timeout
    while "nextUri" in pages[-1]:
        assert time.monotonic() < deadline, "query did not finish in time"
        response = requests.get(pages[-1]["nextUri"], timeout=10)
        response.raise_for_status()
        pages.append(response.json())
    return pages


def run_ignoring_cancel(cursor: Any) -> None:
    """Run a slow query on ``cursor`` until another thread cancels it (the client then raises)."""
    from trino.exceptions import TrinoUserError

    try:
        cursor.execute("SELECT 1")
        cursor.fetchall()
    except TrinoUserError:
        pass
