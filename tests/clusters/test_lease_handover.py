"""The cluster manager when the group's lease changes hands: a worker that takes it over finds a cluster
TERMINATING, whose stop another worker issued and may still be running. It stops it again only once
that stop has surely ended (the scaler's timeout and the kill grace after it was issued); its own stop
that failed it tries again at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from gateway.backends.registry import BackendRegistry
from gateway.clusters.command import KILL_GRACE_SECONDS
from gateway.clusters.manager import ClusterManager
from gateway.clusters.states import DRAINING, STOPPED, TERMINATING
from gateway.config import GroupConfig, ScalingConfig
from gateway.store import BackendWork, ClusterRecord, now_ms
from gateway.store.backend import Backend, BackendScaler
from gateway.store.memory import MemoryStore

TIMEOUT = 5.0


class Health:
    """No health checks: every cluster looks stopped (not answering)."""

    health: dict[str, Any] = {}

    async def check_now(self, name: str) -> None:
        return None

    async def check(self, backend: Backend) -> Any:
        """A stopped cluster's check: it fails."""
        return SimpleNamespace(consecutive_failures=1)


def manager(store: MemoryStore, holder: str) -> ClusterManager:
    async def work() -> dict[str, BackendWork]:
        return {}

    async def queued() -> dict[str, int]:
        return {}

    return ClusterManager(
        store,
        BackendRegistry(store, refresh_seconds=0),
        Health(),  # type: ignore[arg-type]
        {"etl": GroupConfig.model_validate({"scaling": {"min_clusters": 0, "idle_time": "1h"}})},
        ScalingConfig(interval=0.5),
        holder,
        lambda group: 0,
        queued,
        work,
        on_action=lambda *args: None,
    )


async def recorded(store: MemoryStore, stops: Path, command: str, state: str, since_ms: int) -> None:
    scaler = BackendScaler(kind="command", start="true", stop=f"echo stop >> {stops}; {command}", timeout=TIMEOUT)
    await store.add_backend(Backend(name="etl-1", proxy_to="http://127.0.0.1:9", routing_group="etl", scaler=scaler))
    assert await store.move_cluster(ClusterRecord("etl-1", state, since_ms, "drained", None, 1), None)


async def settle(node: ClusterManager) -> None:
    for _ in range(100):
        if not node.ops._tasks:
            return
        await asyncio.sleep(0.02)


def stops_run(stops: Path) -> int:
    return len(stops.read_text().splitlines()) if stops.exists() else 0


def test_a_new_lease_holder_leaves_a_stop_issued_elsewhere_until_it_must_have_ended(tmp_path: Path):
    async def scenario() -> None:
        store = MemoryStore()
        stops = tmp_path / "stops"
        # Another worker issued the stop a moment ago, then lost the lease (its stop may still run).
        await recorded(store, stops, "true", TERMINATING, now_ms() - 500)
        node = manager(store, "node-b")
        await node.tick()
        await settle(node)
        assert stops_run(stops) == 0
        assert (await store.cluster_records())["etl-1"].state == TERMINATING
        # Long enough ago that it ended, done or failed: this worker stops it.
        ended = now_ms() - int((TIMEOUT + KILL_GRACE_SECONDS + 2) * 1000)
        assert await store.move_cluster(ClusterRecord("etl-1", TERMINATING, ended, "drained", None, 1), None)
        await node.tick()
        await settle(node)
        assert stops_run(stops) == 1
        assert (await store.cluster_records())["etl-1"].state == STOPPED
        await node.close()

    asyncio.run(scenario())


def test_a_worker_tries_its_own_failed_stop_again_at_once(tmp_path: Path):
    async def scenario() -> None:
        store = MemoryStore()
        stops = tmp_path / "stops"
        flag = tmp_path / "fail"
        flag.write_text("")
        # Drained long ago: this worker stops it, and the stop fails while the flag file is there.
        await recorded(store, stops, f"test ! -e {flag}", DRAINING, now_ms() - 60_000)
        node = manager(store, "node-a")
        await node.tick()
        await settle(node)
        assert stops_run(stops) == 1
        assert (await store.cluster_records())["etl-1"].state == TERMINATING
        flag.unlink()
        await node.tick()
        await settle(node)
        assert stops_run(stops) == 2
        assert (await store.cluster_records())["etl-1"].state == STOPPED
        await node.close()

    asyncio.run(scenario())
