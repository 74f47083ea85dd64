"""The admin API (trinodb/trino-gateway compatible) and its persistence across restarts."""

from __future__ import annotations

from gateway.testing import GatewayProcess
from tests.conftest import run_query


def _names(gateway, path: str = "/gateway/backend/all") -> list[str]:
    status, body = gateway.call("GET", path)
    assert status == 200
    return [b["name"] for b in body]


def test_add_update_delete_activate_deactivate_and_list(clusters, store_url):
    with GatewayProcess(store=store_url) as gateway:
        assert _names(gateway) == []
        status, body = gateway.call(
            "POST",
            "/gateway/backend/modify/add",
            {"name": "c1", "proxyTo": clusters[0].url + "/", "routingGroup": "etl"},
        )
        assert status == 200
        assert body == {
            "name": "c1",
            "proxyTo": clusters[0].url,
            "active": True,
            "routingGroup": "etl",
            "externalUrl": clusters[0].url,
        }
        gateway.add_backend("c2", clusters[1].url)
        assert _names(gateway) == ["c1", "c2"]

        status, body = gateway.call(
            "POST",
            "/gateway/backend/modify/update",
            {
                "name": "c1",
                "proxyTo": clusters[0].url,
                "routingGroup": "adhoc",
                "externalUrl": "https://trino-1.example.com",
            },
        )
        assert status == 200 and body["routingGroup"] == "adhoc"
        assert body["externalUrl"] == "https://trino-1.example.com"

        assert gateway.call("POST", "/gateway/backend/deactivate/c2")[1]["active"] is False
        assert _names(gateway, "/gateway/backend/active") == ["c1"]
        assert gateway.call("POST", "/gateway/backend/activate/c2")[1]["active"] is True
        assert _names(gateway, "/gateway/backend/active") == ["c1", "c2"]

        status, _ = gateway.call("POST", "/gateway/backend/modify/delete", raw=b"c2")
        assert status == 200
        assert _names(gateway) == ["c1"]
        # Backends added through the API route queries like configured ones.
        assert run_query(gateway.url, "SELECT 3") == [[3]]


def test_bad_input_gets_clear_4xx_errors(clusters, store_url):
    with GatewayProcess(store=store_url) as gateway:
        gateway.add_backend("c1", clusters[0].url)
        cases = [
            ("/gateway/backend/modify/add", b"{not json", 400, "not valid JSON"),
            ("/gateway/backend/modify/add", b"[1, 2]", 400, "JSON object"),
            ("/gateway/backend/modify/add", b'{"name": "x"}', 400, "backend: proxyTo: Field required"),
            ("/gateway/backend/modify/add", b'{"proxyTo": "http://h:1"}', 400, "backend: name: Field required"),
            ("/gateway/backend/modify/add", b'{"name": "x", "proxyTo": "ftp://h"}', 400, "http:// or https://"),
            (
                "/gateway/backend/modify/add",
                b'{"name": "x", "proxyTo": "http://h:1", "colour": "red"}',
                400,
                "backend: colour: unknown key",
            ),
            ("/gateway/backend/modify/add", b'{"name": "x y", "proxyTo": "http://h:1"}', 400, "backend: name"),
            (
                "/gateway/backend/modify/add",
                f'{{"name": "c1", "proxyTo": "{clusters[1].url}"}}'.encode(),
                409,
                "exists already",
            ),
            ("/gateway/backend/modify/delete", b"nobody", 404, "no backend named 'nobody'"),
            ("/gateway/backend/modify/delete", b"", 400, "must name the backend"),
            ("/gateway/backend/activate/nobody", None, 404, "no backend named 'nobody'"),
            ("/gateway/backend/deactivate/nobody", None, 404, "no backend named 'nobody'"),
        ]
        for path, raw, status, message in cases:
            got_status, body = gateway.call("POST", path, raw=raw)
            assert got_status == status, (path, raw, body)
            assert message in body["error"], (path, raw, body)
        assert gateway.call("GET", "/gateway/backend/nobody")[0] == 404
        assert gateway.call("GET", "/gateway/no/such/thing")[0] == 404
        assert gateway.call("DELETE", "/gateway/backend/all")[0] == 405
        assert _names(gateway) == ["c1"]


def test_every_change_persists_across_a_restart(clusters, store_url):
    gateway = GatewayProcess(store=store_url).start()
    try:
        gateway.add_backend("keep", clusters[0].url, group="etl")
        gateway.add_backend("drop", clusters[1].url)
        gateway.add_backend("off", clusters[2].url)
        gateway.call(
            "POST",
            "/gateway/backend/modify/update",
            {"name": "keep", "proxyTo": clusters[0].url, "routingGroup": "reports"},
        )
        gateway.deactivate("off")
        gateway.call("POST", "/gateway/backend/modify/delete", raw=b'{"name": "drop"}')
        run_query(gateway.url, "SELECT 1", http_headers={"X-Trino-Routing-Group": "reports"})
        gateway.restart()
        status, body = gateway.call("GET", "/gateway/backend/all")
        assert status == 200
        assert {b["name"]: (b["routingGroup"], b["active"]) for b in body} == {
            "keep": ("reports", True),
            "off": ("adhoc", False),
        }
        assert gateway.queries()["total"] == 1
    finally:
        gateway.stop()


def test_configured_backends_keep_the_active_flag_set_through_the_api(clusters, store_url):
    config = {"backends": [{"name": "c1", "proxy_to": clusters[0].url}, {"name": "c2", "proxy_to": clusters[1].url}]}
    gateway = GatewayProcess(store=store_url, config=config).start()
    try:
        gateway.deactivate("c2")
        gateway.restart()
        assert _names(gateway, "/gateway/backend/active") == ["c1"]
    finally:
        gateway.stop()
