"""URI rewriting and query-id extraction, checked on exact bytes and paths, and end to end with
backends that write their pages' members in other orders than Trino's."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from gateway.dataplane.query_ids import killed_query_id, query_id_of
from gateway.dataplane.rewrite import next_uri_of, rewrite_uris
from tests.conftest import run_query
from tests.gateway.conftest import store_plays_no_part
from tests.trinosim.helpers import follow, submit

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


def test_a_uri_before_the_rows_and_one_after_them_are_both_rewritten():
    # infoUri where Trino writes it, nextUri after the rows (and after stats): the next poll must
    # still reach the gateway.
    rows = [[1, f"{BACKEND}/v1/statement/executing/x/y/9"], [2, f"{BACKEND}/ui/query.html?x"]]
    body = json.dumps(
        {
            "id": "q",
            "infoUri": f"{BACKEND}/ui/query.html?q",
            "columns": [{"name": "n", "type": "bigint"}, {"name": "u", "type": "varchar"}],
            "data": rows,
            "stats": {"state": "RUNNING"},
            "warnings": [],
            "nextUri": f"{BACKEND}/v1/statement/executing/q/y/2",
            "partialCancelUri": f"{BACKEND}/v1/statement/executing/partialCancel/q/0/y/2",
        },
        separators=(",", ":"),
    ).encode()
    out = json.loads(rewrite_uris(body, GATEWAY, BACKEND, "b1"))
    assert out["infoUri"] == f"{GATEWAY}/ui/query.html?q"
    assert out["nextUri"] == f"{GATEWAY}/v1/statement/executing/q/y/2"
    assert out["partialCancelUri"] == f"{GATEWAY}/v1/statement/executing/partialCancel/q/0/y/2"
    assert out["data"] == rows
    assert next_uri_of(body) == f"{BACKEND}/v1/statement/executing/q/y/2".encode()


def test_rows_that_look_like_the_pages_end_are_not_taken_for_it():
    # Rows ending in arrays of arrays, strings holding "]]," and member names, a map with the URI
    # keys: the rows' end is found from the page's end, and nothing in them is rewritten.
    rows = [
        [']],"nextUri":"' + BACKEND + '/v1/statement/executing/x/y/1"}', [[1, 2]], {"nextUri": f"{BACKEND}/x"}],
        ['"data": [[', [[3], [4]], {"partialCancelUri": f"{BACKEND}/y", "infoUri": f"{BACKEND}/z"}],
    ]
    page = {
        "data": rows,
        "error": None,
        "stats": {"state": "RUNNING", "rootStage": {"stageId": "0", "subStages": [{"stageId": "1", "subStages": []}]}},
        "warnings": [{"warningCode": {"code": 1, "name": "W"}, "message": 'a ]], "quoted" [[ warning'}],
        "infoUri": f"{BACKEND}/ui/query.html?q",
        "nextUri": f"{BACKEND}/v1/statement/executing/q/y/2",
        "id": "q",
    }
    body = json.dumps(page).encode()
    out = json.loads(rewrite_uris(body, GATEWAY, BACKEND, "b1"))
    assert out["data"] == rows
    assert out["nextUri"] == f"{GATEWAY}/v1/statement/executing/q/y/2"
    assert out["infoUri"] == f"{GATEWAY}/ui/query.html?q"
    assert {key: value for key, value in out.items() if "Uri" not in key} == {
        key: value for key, value in page.items() if "Uri" not in key
    }


def test_a_last_page_with_uri_keys_in_its_rows_has_no_next_uri():
    rows = [[{"nextUri": f"{BACKEND}/v1/statement/executing/x/y/1"}]]
    body = json.dumps({"id": "q", "infoUri": f"{BACKEND}/ui/query.html?q", "columns": [], "data": rows}).encode()
    assert next_uri_of(body) is None
    assert json.loads(rewrite_uris(body, GATEWAY, BACKEND, "b1"))["data"] == rows


def test_a_column_named_data_is_not_the_pages_data():
    # A spooled page whose first "data" is a column's name: its segments are still pointed at us.
    segment = {"type": "spooled", "uri": f"{BACKEND}/v1/spooled/download/S", "ackUri": f"{BACKEND}/v1/spooled/ack/S"}
    page = {
        "id": "q",
        "nextUri": f"{BACKEND}/v1/statement/executing/q/y/1",
        "columns": [{"name": "data", "type": "varchar"}],
        "data": {"encoding": "json", "segments": [segment]},
    }
    out = json.loads(rewrite_uris(json.dumps(page).encode(), GATEWAY, BACKEND, "b1"))
    assert out["data"]["segments"][0]["uri"] == f"{GATEWAY}/v1/spooled/download/S?trino_gateway_backend=b1"
    assert out["nextUri"] == f"{GATEWAY}/v1/statement/executing/q/y/1"


def test_next_uri_of_finds_the_pages_own_wherever_it_is():
    uri = f"{BACKEND}/v1/statement/executing/q/y/3"
    assert next_uri_of(json.dumps({"id": "q", "nextUri": uri, "stats": {}}).encode()) == uri.encode()
    assert next_uri_of(json.dumps({"data": [[1]], "stats": {}, "nextUri": uri}).encode()) == uri.encode()
    escaped = json.dumps({"id": "q", "nextUri": uri}).replace("/", "\\/").encode()
    assert next_uri_of(escaped) == uri.encode()
    assert next_uri_of(json.dumps({"id": "q", "infoUri": f"{BACKEND}/ui"}).encode()) is None
    assert next_uri_of(b"Query not found") is None


def _random_json(value: Any, rng: random.Random, top: bool = False) -> str:
    """``value`` as JSON with random white space (and, at the top, the members in a random order)."""

    def space() -> str:
        return rng.choice(["", "", "", " ", "\n  ", "\t"])

    if isinstance(value, dict):
        items = list(value.items())
        if top:
            rng.shuffle(items)
        inner = ",".join(f"{space()}{json.dumps(k)}{space()}:{space()}{_random_json(v, rng)}" for k, v in items)
        return "{" + inner + space() + "}"
    if isinstance(value, list):
        return "[" + ",".join(space() + _random_json(v, rng) + space() for v in value) + "]"
    text = json.dumps(value, ensure_ascii=rng.random() < 0.5)
    return text.replace("/", "\\/") if rng.random() < 0.1 else text  # JSON may escape slashes


_TRICKY_VALUES = [
    "]]",
    "],[",
    '"nextUri":"' + BACKEND + '/v1/statement/executing/x/y/1"',
    "back\\slash\\",
    "data",
    '"data":[[',
    "\u00e9t\u00e9 ]],",
    f"{BACKEND}/v1/statement/queued/x/y/1",
    {"nextUri": f"{BACKEND}/v1/statement/executing/x/y/1", "infoUri": f"{BACKEND}/ui/query.html?x"},
    {"partialCancelUri": f"{BACKEND}/v1/statement/executing/partialCancel/x/0/y/1"},
    [[1, [2]], []],
    [],
    None,
    3.5,
]


def test_pages_in_any_key_order_and_spacing_have_every_uri_rewritten_and_their_rows_kept():
    rng = random.Random(23)
    for case in range(400):
        page: dict[str, Any] = {
            "id": "20240101_000000_00001_abcde",
            "infoUri": f"{BACKEND}/ui/query.html?q",
            "columns": [{"name": "data", "type": "varchar"}, {"name": "nextUri", "type": "varchar"}],
            "stats": {"state": "RUNNING", "rootStage": {"stageId": "0", "subStages": [{"subStages": []}]}},
            "warnings": rng.choice([[], [{"message": rng.choice(_TRICKY_VALUES[:7])}]]),
        }
        if rng.random() < 0.8:
            page["nextUri"] = f"{BACKEND}/v1/statement/executing/q/y/{case}"
        if rng.random() < 0.3:
            page["partialCancelUri"] = f"{BACKEND}/v1/statement/executing/partialCancel/q/0/y/{case}"
        if rng.random() < 0.8:
            page["data"] = [[rng.choice(_TRICKY_VALUES) for _ in range(2)] for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.2:
            page["updateType"], page["updateCount"] = "INSERT", 5
        body = _random_json(page, rng, top=True).encode()
        out = json.loads(rewrite_uris(body, GATEWAY, BACKEND, "b1"))
        expected = {
            key: value.replace(BACKEND, GATEWAY) if key.endswith("Uri") else value for key, value in page.items()
        }
        assert out == expected, body
        assert next_uri_of(body) == (page["nextUri"].encode() if "nextUri" in page else None), body


@store_plays_no_part
@pytest.mark.parametrize("key_order", ["sorted", "next_last"])
def test_a_backend_writing_its_uris_after_the_rows_keeps_its_clients_on_the_gateway(make_sim, make_gateway, key_order):
    # The backend ignores X-Forwarded-*: every URI it writes is its own, wherever in the page.
    backend = make_sim(name=f"uris-{key_order}", key_order=key_order, forwarded="ignore", page_rows=40)
    gateway = make_gateway({"backends": [{"name": "b1", "proxy_to": backend.url}]})
    sql = (
        f"SELECT orderkey, '{backend.url}/v1/statement/executing/x/y/1' AS u, "
        f"MAP(ARRAY['nextUri', 'infoUri'], ARRAY['{backend.url}/v1/statement/queued/x/y/1', '{backend.url}/ui']) AS m, "
        "ARRAY[ARRAY[orderkey]] AS a FROM tpch.tiny.orders ORDER BY orderkey LIMIT 150"
    )
    pages = follow(submit(gateway.url, sql))
    assert len([page for page in pages if "data" in page]) == 4
    for page in pages:
        outside_rows = json.dumps({key: value for key, value in page.items() if key != "data"})
        assert backend.url not in outside_rows
        assert page["infoUri"].startswith(gateway.url)
    rows = [row for page in pages for row in page.get("data", [])]
    assert rows == run_query(backend.url, sql)  # the rows' look-alike URIs are the user's: untouched
    assert run_query(gateway.url, sql) == rows


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
