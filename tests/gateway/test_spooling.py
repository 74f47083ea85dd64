"""Spooled results through the gateway: segments and acks reach the backend that served them, from
any worker, streamed; storage URLs pass untouched; a backend without spooling gives inline rows.

A segment's URI names its backend: in one worker the store plays no part (the in-memory one will do);
from either of two workers, the query's polls find it through the store, so that runs on each SQL one."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import run_query
from tests.gateway.conftest import every_store, store_plays_no_part
from tests.trinosim.helpers import wait_until
from trinosim.gateway_process import GatewayProcess
from trinosim.spooling import supported_encodings

LINEITEM = "SELECT orderkey, linenumber, comment FROM tpch.tiny.lineitem ORDER BY orderkey, linenumber"
NATION = "SELECT * FROM tpch.tiny.nation ORDER BY nationkey"
COMPRESSED = [e for e in supported_encodings() if e != "json"][:1]


def _spooling_pair(make_sim):
    # One coordinator writes URIs from X-Forwarded-* (the gateway's address), one its own.
    return make_sim(name="spool-1", spooling=True), make_sim(name="spool-2", spooling=True, forwarded="ignore")


def _config(first, second) -> dict:
    return {
        "routing": {"router": "round-robin"},
        "backends": [{"name": first.name, "proxy_to": first.url}, {"name": second.name, "proxy_to": second.url}],
    }


@store_plays_no_part
@pytest.mark.parametrize("encoding", ["json", *COMPRESSED])
def test_the_python_client_reads_spooled_results_through_the_gateway(make_sim, make_gateway, sims, encoding):
    first, second = _spooling_pair(make_sim)
    gateway = make_gateway(_config(first, second))
    before = {s.name: s.segments() for s in (first, second)}
    for sql in (NATION, LINEITEM, LINEITEM):  # round-robin: the large result comes from both backends
        assert run_query(gateway.url, sql, encoding=encoding) == run_query(sims[0].url, sql)
    for sim in (first, second):
        # Every segment was downloaded from, and acknowledged to, the backend that spooled it (the
        # client acknowledges in the background, hence the wait).
        def all_acknowledged(sim=sim) -> bool:
            after = sim.segments()
            spooled = after["spooled"] - before[sim.name]["spooled"]
            assert spooled > 0 and after["downloaded"] - before[sim.name]["downloaded"] == spooled, after
            return after["acknowledged"] - before[sim.name]["acknowledged"] == spooled

        wait_until(all_acknowledged, timeout=10, what=f"the acknowledgements to reach {sim.name}")


@store_plays_no_part
def test_segment_uris_lead_back_to_their_backend_through_the_gateway(make_sim, make_gateway):
    first, second = _spooling_pair(make_sim)
    gateway = make_gateway(_config(first, second))
    for _ in range(2):
        page = requests.post(
            f"{gateway.url}/v1/statement",
            data=LINEITEM,
            headers={"X-Trino-User": "u", "X-Trino-Query-Data-Encoding": "json"},
            timeout=10,
        ).json()
        segment = None
        while segment is None and "nextUri" in page:
            page = requests.get(page["nextUri"], timeout=10).json()
            segments = page.get("data", {}).get("segments", []) if isinstance(page.get("data"), dict) else []
            segment = next((s for s in segments if s["type"] == "spooled"), None)
        assert segment is not None
        assert segment["uri"].startswith(f"{gateway.url}/v1/spooled/download/")
        assert segment["uri"].endswith(("trino_gateway_backend=spool-1", "trino_gateway_backend=spool-2"))
        headers = {name: values[0] for name, values in segment["headers"].items()}
        download = requests.get(segment["uri"], headers=headers, timeout=30)
        assert download.status_code == 200 and len(download.content) == segment["metadata"]["segmentSize"]
        assert requests.get(segment["ackUri"], timeout=10).status_code == 200
        requests.delete(page["nextUri"], timeout=10)


@store_plays_no_part
def test_a_backend_without_spooling_gives_inline_rows_to_a_client_that_asks_for_segments(sims, gateway):
    assert run_query(gateway.url, NATION, encoding="json") == run_query(sims[0].url, NATION)


@every_store
def test_segments_reach_their_backend_from_either_worker(lasting_store_url, sim_factory):
    first = sim_factory(name="workers-spool-1", spooling=True)
    second = sim_factory(name="workers-spool-2", spooling=True, forwarded="ignore")
    with GatewayProcess(store=lasting_store_url, config=_config(first, second), workers=2) as gateway:
        for _ in range(4):
            assert len(run_query(gateway.url, LINEITEM, encoding="json")) == 60175
        # The client acknowledges in the background: wait for it before the gateway stops.
        for sim in (first, second):
            wait_until(
                lambda sim=sim: sim.segments()["acknowledged"] == sim.segments()["spooled"] > 0,
                timeout=10,
                what=f"every segment of {sim.name} to be acknowledged",
            )
