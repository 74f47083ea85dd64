"""Fixtures for observability tests: two trinosim clusters, an OTLP receiver, a query driven by hand."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from trinosim import TrinoSimProcess
from trinosim.gateway_process import running
from trinosim.otlp_receiver import OtlpReceiver

SLOW = {"X-Trino-Session": "sim_run_time=1h"}


@pytest.fixture(scope="module")
def clusters() -> Iterator[list[TrinoSimProcess]]:
    servers = [TrinoSimProcess(name="trino-1"), TrinoSimProcess(name="trino-2")]
    with running(servers):
        yield servers


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server


@pytest.fixture(autouse=True)
def quick_export(monkeypatch: pytest.MonkeyPatch) -> None:
    # Gateways started by a test inherit this: spans leave every 100 ms instead of every 5 s.
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")


def backends_config(clusters: list[TrinoSimProcess], **extra: Any) -> dict[str, Any]:
    return {"backends": [{"name": c.name, "proxy_to": c.url, "routing_group": "adhoc"} for c in clusters], **extra}


def tracing_config(clusters: list[TrinoSimProcess], endpoint: str, **tracing: Any) -> dict[str, Any]:
    return backends_config(clusters, observability={"tracing": {"endpoint": endpoint, **tracing}})


class ManualQuery:
    """A slow query driven request by request, so the test knows every request the gateway saw."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, user: str = "alice") -> None:
        self.session = requests.Session()
        self.headers = {"X-Trino-User": user, "X-Trino-Source": "obs-test", **SLOW, **(headers or {})}
        response = self.session.post(f"{url}/v1/statement", data=b"SELECT 1", headers=self.headers, timeout=30)
        response.raise_for_status()
        self.page = response.json()
        self.id: str = self.page["id"]
        self.polls = 0

    def poll(self, base: str | None = None) -> dict[str, Any]:
        uri = self.page["nextUri"]
        if base is not None:  # another gateway address (a restarted gateway on the same port is the same)
            uri = base + "/" + uri.split("/", 3)[3]
        response = self.session.get(uri, headers=self.headers, timeout=30)
        response.raise_for_status()
        self.page = response.json()
        self.polls += 1
        return self.page

    def cancel(self) -> int:
        response = self.session.delete(self.page["nextUri"], headers=self.headers, timeout=30)
        return response.status_code


def wait(check: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout}s")
        time.sleep(0.05)
