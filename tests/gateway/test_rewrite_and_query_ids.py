"""URI rewriting and query-id extraction, checked on exact bytes and paths."""

from __future__ import annotations

import json

import pytest

from gateway.dataplane.query_ids import killed_query_id, query_id_of
from gateway.dataplane.rewrite import rewrite_uris

GATEWAY = "http://gw.example:8080"
BACKEND = "http://10.0.0.5:8081"


def test_protocol_uris_point_at_the_gateway_and_data_is_untouched():
    page = {
        "id": "20240101_000000_00001_abcde",
        "infoUri": f"{BACKEND}/ui/query.html?20240101_000000_00001_abcde",
        "partialCancelUri": f"{BACKEND}/v1/statement/executing/partialCancel/20240101_000000_00001_abcde/0/y1/1",
        "nextUri": f"{BACKEND}/v1/statement/executing/20240101_000000_00001_abcde/y1/1",
        "columns": [{"name": "v", "type": "varchar"}],
        "data": [[f'{{"nextUri":"{BACKEND}/x"}}'], [f"{BACKEND}/v1/statement/queued/x"]],
    }
    body = json.dumps(page, separators=(",", ":")).encode()
    out = json.loads(rewrite_uris(body, GATEWAY, BACKEND, "b1"))
    assert out["nextUri"] == f"{GATEWAY}/v1/statement/executing/20240101_000000_00001_abcde/y1/1"
    assert out["infoUri"].startswith(f"{GATEWAY}/ui/query.html?")
    assert out["partialCancelUri"].startswith(f"{GATEWAY}/v1/statement/executing/partialCancel/")
    assert out["data"] == page["data"]


def test_uris_after_the_data_and_with_spaces_are_rewritten_too():
    body = (
        b'{"id": "q", "data": [[1]], "nextUri" : "http://backend:1/v1/statement/executing/q/y/2", '
        b'"infoUri": "http://backend:1/ui/query.html?q", '
        b'"partialCancelUri":"http://backend:1/v1/statement/executing/partialCancel/q/0/y/2"}'
    )
    out = json.loads(rewrite_uris(body, GATEWAY, "http://backend:1", "b1"))
    assert out["nextUri"] == f"{GATEWAY}/v1/statement/executing/q/y/2"
    assert out["infoUri"] == f"{GATEWAY}/ui/query.html?q"
    assert out["partialCancelUri"] == f"{GATEWAY}/v1/statement/executing/partialCancel/q/0/y/2"


def test_a_map_in_the_rows_with_a_uri_key_is_left_alone():
    # A MAP(VARCHAR, VARCHAR) column is a JSON object in the rows: its keys are real JSON keys.
    rows = [[{"nextUri": f"{BACKEND}/v1/statement/executing/x/y/1", "infoUri": f"{BACKEND}/ui"}]]
    page = {"id": "q", "nextUri": f"{BACKEND}/v1/statement/executing/q/y/1", "columns": [], "data": rows}
    out = json.loads(rewrite_uris(json.dumps(page).encode(), GATEWAY, BACKEND, "b1"))
    assert out["data"] == rows
    assert out["nextUri"] == f"{GATEWAY}/v1/statement/executing/q/y/1"


def test_with_the_uris_after_the_data_a_page_without_uri_fields_keeps_its_rows():
    rows = [[{"nextUri": f"{BACKEND}/v1/statement/executing/x/y/1"}]]
    body = json.dumps({"columns": [], "data": rows, "id": "q", "stats": {"state": "FINISHED"}}).encode()
    assert json.loads(rewrite_uris(body, GATEWAY, BACKEND, "b1"))["data"] == rows


def test_rows_that_mention_segments_are_not_read_as_spooled_segments():
    rows = [["segments", f"{BACKEND}/v1/spooled/download/SEG1"], [{"uri": f"{BACKEND}/v1/spooled/download/X"}]]
    body = json.dumps({"id": "q", "nextUri": f"{BACKEND}/v1/statement/executing/q/y/1", "data": rows}).encode()
    out = json.loads(rewrite_uris(body, GATEWAY, BACKEND, "b1"))
    assert out["data"] == rows
    assert out["nextUri"] == f"{GATEWAY}/v1/statement/executing/q/y/1"


def test_spooled_segments_served_by_the_coordinator_are_marked_storage_urls_are_not():
    page = {
        "id": "q",
        "nextUri": f"{BACKEND}/v1/statement/executing/q/y/1",
        "data": {
            "encoding": "json+zstd",
            "segments": [
                {
                    "type": "spooled",
                    "uri": f"{BACKEND}/v1/spooled/download/SEG1",
                    "ackUri": f"{BACKEND}/v1/spooled/ack/SEG1",
                },
                {
                    "type": "spooled",
                    "uri": "https://s3.example/bucket/SEG2?X-Amz-Signature=abc",
                    "ackUri": f"{BACKEND}/v1/spooled/ack/SEG2",
                },
            ],
        },
    }
    out = json.loads(rewrite_uris(json.dumps(page).encode(), GATEWAY, BACKEND, "b1"))
    first, second = out["data"]["segments"]
    assert first["uri"] == f"{GATEWAY}/v1/spooled/download/SEG1?trino_gateway_backend=b1"
    assert first["ackUri"] == f"{GATEWAY}/v1/spooled/ack/SEG1?trino_gateway_backend=b1"
    assert second["uri"] == "https://s3.example/bucket/SEG2?X-Amz-Signature=abc"
    assert second["ackUri"] == f"{GATEWAY}/v1/spooled/ack/SEG2?trino_gateway_backend=b1"


def test_segments_a_coordinator_wrote_with_the_gateways_forwarded_address_are_marked_too():
    segment = {"type": "spooled", "uri": f"{GATEWAY}/v1/spooled/download/S", "ackUri": f"{GATEWAY}/v1/spooled/ack/S"}
    page = {"id": "q", "data": {"encoding": "json", "segments": [segment]}}
    out = json.loads(rewrite_uris(json.dumps(page).encode(), GATEWAY, BACKEND, "b1"))["data"]["segments"][0]
    assert out["uri"] == f"{GATEWAY}/v1/spooled/download/S?trino_gateway_backend=b1"
    assert out["ackUri"] == f"{GATEWAY}/v1/spooled/ack/S?trino_gateway_backend=b1"


@pytest.mark.parametrize(
    ("path", "query_string", "expected"),
    [
        ("/v1/statement/queued/20240101_000000_00001_abcde/y12/1", "", "20240101_000000_00001_abcde"),
        ("/v1/statement/executing/20240101_000000_00001_abcde/y12/7", "", "20240101_000000_00001_abcde"),
        ("/v1/statement/executing/partialCancel/20240101_000000_00001_abcde/0/y1/2", "", "20240101_000000_00001_abcde"),
        ("/v1/query/20240101_000000_00001_abcde", "", "20240101_000000_00001_abcde"),
        ("/v1/query/20240101_000000_00001_abcde/killed", "", "20240101_000000_00001_abcde"),
        ("/ui/api/query/20240101_000000_00001_abcde", "", "20240101_000000_00001_abcde"),
        ("/ui/query.html", "20240101_000000_00001_abcde", "20240101_000000_00001_abcde"),
        ("/ui/api/query", "queryId=20240101_000000_00001_abcde&x=1", "20240101_000000_00001_abcde"),
        ("/v1/query", "state=QUEUED", None),
        ("/v1/info", "", None),
        ("/v1/statement/queued/not-an-id/y/1", "", None),
    ],
)
def test_query_ids_are_found_where_trino_puts_them(path, query_string, expected):
    assert query_id_of(path, query_string) == expected


def test_kill_query_names_its_target():
    assert (
        killed_query_id("CALL system.runtime.kill_query(query_id => '20240101_000000_00001_abcde', message => 'x')")
        == "20240101_000000_00001_abcde"
    )
    assert killed_query_id("call system.runtime.kill_query('20240101_000000_00001_abcde')") == (
        "20240101_000000_00001_abcde"
    )
    assert killed_query_id("SELECT 1") is None
