"""trinosim's spooling protocol, read by the official Python client exactly as it reads inline rows."""

from __future__ import annotations

import base64

import pytest
import requests

from tests.conftest import run_query
from tests.trinosim.helpers import follow, submit, wait_until
from trinosim.spooling import SEGMENT_KEY_HEADER, supported_encodings

ENCODINGS = supported_encodings()
LINEITEM = "SELECT orderkey, linenumber, comment FROM tpch.tiny.lineitem ORDER BY orderkey, linenumber"


@pytest.fixture(scope="module")
def spooling_sim(loop_thread):
    from trinosim.inprocess import InProcessSim

    with InProcessSim(loop_thread, name="spools", spooling=True) as server:
        yield server


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_the_python_client_reads_spooled_results_as_it_reads_inline_rows(spooling_sim, sims, encoding):
    direct = sims[0]
    for sql in ("SELECT * FROM tpch.tiny.nation ORDER BY nationkey", LINEITEM):
        assert run_query(spooling_sim.url, sql, encoding=encoding) == run_query(direct.url, sql)


def test_small_pages_are_inline_and_large_ones_spooled_and_acknowledged(spooling_sim):
    before = spooling_sim.segments()
    pages = follow(submit(spooling_sim.url, LINEITEM, **{"X-Trino-Query-Data-Encoding": "json"}))
    segments = [s for p in pages if isinstance(p.get("data"), dict) for s in p["data"]["segments"]]
    spooled = [s for s in segments if s["type"] == "spooled"]
    assert len(spooled) >= 10 and all(p["data"]["encoding"] == "json" for p in pages if "data" in p)
    offsets = [s["metadata"]["rowOffset"] for s in segments]
    assert offsets == sorted(offsets) and sum(s["metadata"]["rowsCount"] for s in segments) == 60175
    first = spooled[0]
    # Without the segment's own headers the coordinator does not hand it out.
    assert requests.get(first["uri"], timeout=10).status_code == 404
    headers = {name: values[0] for name, values in first["headers"].items()}
    body = requests.get(first["uri"], headers=headers, timeout=10)
    assert body.status_code == 200 and len(body.content) == first["metadata"]["segmentSize"]
    for segment in spooled:
        assert requests.get(segment["ackUri"], timeout=10).status_code == 200
    after = spooling_sim.segments()
    assert after["acknowledged"] - before["acknowledged"] == len(spooled)
    assert requests.get(first["uri"], headers=headers, timeout=10).status_code == 404  # acknowledged: gone

    nation = follow(
        submit(spooling_sim.url, "SELECT * FROM tpch.tiny.nation", **{"X-Trino-Query-Data-Encoding": "json"})
    )
    inline = [s for p in nation if isinstance(p.get("data"), dict) for s in p["data"]["segments"]]
    assert [s["type"] for s in inline] == ["inline"]
    assert len(base64.b64decode(inline[0]["data"])) == inline[0]["metadata"]["segmentSize"]


@pytest.mark.skipif("json+zstd" not in ENCODINGS, reason="zstandard is not installed")
def test_large_segments_are_compressed_and_say_their_uncompressed_size(spooling_sim):
    pages = follow(submit(spooling_sim.url, LINEITEM, **{"X-Trino-Query-Data-Encoding": "json+zstd,json"}))
    spooled = [
        s for p in pages if isinstance(p.get("data"), dict) for s in p["data"]["segments"] if s["type"] == "spooled"
    ]
    assert spooled and all(s["metadata"]["uncompressedSize"] > s["metadata"]["segmentSize"] for s in spooled)


def test_unknown_encodings_and_a_server_without_spooling_give_inline_rows(spooling_sim, sims):
    unknown = follow(submit(spooling_sim.url, "SELECT 1", **{"X-Trino-Query-Data-Encoding": "arrow+zstd"}))
    assert [p["data"] for p in unknown if "data" in p] == [[[1]]]
    plain = follow(submit(sims[0].url, "SELECT 1", **{"X-Trino-Query-Data-Encoding": "json"}))
    assert [p["data"] for p in plain if "data" in p] == [[[1]]]


def test_segments_expire(make_sim):
    sim = make_sim(name="expires", spooling=True, spooling_ttl="1s")
    pages = follow(submit(sim.url, LINEITEM, **{"X-Trino-Query-Data-Encoding": "json"}))
    segment = next(
        s for p in pages if isinstance(p.get("data"), dict) for s in p["data"]["segments"] if s["type"] == "spooled"
    )
    headers = {SEGMENT_KEY_HEADER: segment["headers"][SEGMENT_KEY_HEADER][0]}
    wait_until(lambda: sim.segments()["expired"] > 0, timeout=10, what="segments to expire")
    assert requests.get(segment["uri"], headers=headers, timeout=10).status_code == 404
