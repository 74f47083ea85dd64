"""The admin API (trinodb/trino-gateway compatible) and its persistence across restarts."""

from __future__ import annotations

from tests.conftest import run_query
from tests.gateway.conftest import every_store


def _names(gateway, path: str = "/gateway/backend/all") -> list[str]:
    status, body = gateway.call("GET", path)
    assert status == 200
    return [b["name"] for b in body]


def test_add_update_delete_activate_deactivate_and_list(sims, make_gateway):
    with make_gateway() as gateway:
        assert _names(gateway) == []
        status, body = gateway.call(
            "POST",
            "/gateway/backend/modify/add",
            {"name": "c1", "proxyTo": sims[0].url + "/", "routingGroup": "etl"},
        )
        assert status == 200
        # A backend without a scaler is READY or UNHEALTHY, by its health (docs/scaling.md).
        assert body.pop("state") in ("READY", "UNHEALTHY")
        assert body == {
            "name": "c1",
            "proxyTo": sims[0].url,
            "active": True,
            "routingGroup": "etl",
            "externalUrl": sims[0].url,
            "weight": 1.0,
            "maxRunning": None,
            "monitor": None,
            "tls": None,
            "scaler": None,
        }
        gateway.add_backend("c2", sims[1].url)
        assert _names(gateway) == ["c1", "c2"]

        status, body = gateway.call(
            "POST",
            "/gateway/backend/modify/update",
            {
                "name": "c1",
                "proxyTo": sims[0].url,
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


def test_bad_input_gets_clear_4xx_errors(sims, make_gateway):
    with make_gateway() as gateway:
        gateway.add_backend("c1", sims[0].url)
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
            ("/gateway/backend/modify/add", b'{"name": "x", "proxyTo": "http://h:1", "weight": -1}', 400, "weight"),
            (
                "/gateway/backend/modify/add",
                b'{"name": "x", "proxyTo": "http://h:1", "monitor": "PING"}',
                400,
                "monitor",
            ),
            (
                "/gateway/backend/modify/add",
                b'{"name": "x", "proxyTo": "http://h:1", "tls": {"keyFile": "/k.pem"}}',
                400,
                "key_file needs cert_file",
            ),
            (
                "/gateway/backend/modify/add",
                f'{{"name": "c1", "proxyTo": "{sims[1].url}"}}'.encode(),
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


def test_max_running_is_set_read_back_cleared_and_audited(sims, make_gateway):
    with make_gateway() as gateway:
        body = {"name": "c1", "proxyTo": sims[0].url, "maxRunning": 4}
        status, added = gateway.call("POST", "/gateway/backend/modify/add", body)
        assert (status, added["maxRunning"]) == (200, 4), added
        assert gateway.call("GET", "/gateway/backend/c1")[1]["maxRunning"] == 4
        # Deactivating keeps it: only the active flag changes.
        assert gateway.call("POST", "/gateway/backend/deactivate/c1")[1]["maxRunning"] == 4

        assert gateway.call("POST", "/gateway/backend/modify/update", {**body, "maxRunning": 1})[1]["maxRunning"] == 1
        assert gateway.call("POST", "/gateway/backend/modify/update", {**body, "maxRunning": None})[0] == 200
        assert gateway.call("GET", "/gateway/backend/c1")[1]["maxRunning"] is None
        # Left out: no limit either.
        gateway.call("POST", "/gateway/backend/modify/update", {**body, "maxRunning": 2})
        del body["maxRunning"]
        assert gateway.call("POST", "/gateway/backend/modify/update", body)[1]["maxRunning"] is None
        # The snake-case spelling of the config file is taken too.
        assert gateway.call("POST", "/gateway/backend/modify/update", {**body, "max_running": 3})[1]["maxRunning"] == 3

        for bad, message in (
            (0, "backend: maxRunning: Input should be greater than or equal to 1"),
            (-1, "backend: maxRunning: Input should be greater than or equal to 1"),
            (1_000_001, "backend: maxRunning: Input should be less than or equal to 1000000"),
            ("x", "backend: maxRunning: Input should be a valid integer"),
            ("5", "backend: maxRunning: Input should be a valid integer"),
            (True, "backend: maxRunning: Input should be a valid integer"),
            (2.5, "backend: maxRunning: Input should be a valid integer"),
        ):
            for path in ("/gateway/backend/modify/add", "/gateway/backend/modify/update"):
                status, answer = gateway.call("POST", path, {**body, "name": "c2", "maxRunning": bad})
                assert (status, answer["error"]) == (400, message), (path, bad)
        assert _names(gateway) == ["c1"]
        assert gateway.call("GET", "/gateway/backend/c1")[1]["maxRunning"] == 3

        entries = gateway.call("GET", "/gateway/audit?limit=100")[1]["entries"]
        changes = [
            (e["action"], e["before"] and e["before"]["maxRunning"], e["after"]["maxRunning"])
            for e in reversed(entries)
        ]
        assert changes == [
            ("backend.add", None, 4),
            ("backend.deactivate", 4, 4),
            ("backend.update", 4, 1),
            ("backend.update", 1, None),
            ("backend.update", None, 2),
            ("backend.update", 2, None),
            ("backend.update", None, 3),
        ]


def test_a_scaler_is_set_read_back_replaced_and_cleared_and_a_bad_one_is_refused_naming_the_field(sims, make_gateway):
    commands = {"kind": "command", "start": "systemctl start trino", "stop": "systemctl stop trino", "timeout": 30}
    with make_gateway() as gateway:
        body = {"name": "c1", "proxyTo": sims[0].url, "scaler": commands}
        status, added = gateway.call("POST", "/gateway/backend/modify/add", body)
        assert status == 200, added
        assert added["scaler"] == {**commands, "status": None, "container": None, "timeout": 30.0}
        assert gateway.call("GET", "/gateway/backend/c1")[1]["scaler"] == added["scaler"]
        # Deactivating keeps it: only the active flag changes.
        assert gateway.call("POST", "/gateway/backend/deactivate/c1")[1]["scaler"] == added["scaler"]

        docker = {"kind": "docker", "container": "trino-1"}
        status, updated = gateway.call("POST", "/gateway/backend/modify/update", {**body, "scaler": docker})
        assert (status, updated["scaler"]) == (
            200,
            {"kind": "docker", "start": None, "stop": None, "status": None, "container": "trino-1", "timeout": 120.0},
        )
        assert gateway.call("POST", "/gateway/backend/modify/update", {**body, "scaler": None})[1]["scaler"] is None

        for bad, message in (
            ({"kind": "docker"}, "backend: scaler: Value error, a docker scaler needs container"),
            ({"kind": "command", "start": "x"}, "backend: scaler: Value error, a command scaler needs stop"),
            ({**docker, "image": "trino"}, "backend: scaler.image: unknown key"),
            ({"kind": "kubernetes", "container": "x"}, "backend: scaler.kind: Input should be 'command' or 'docker'"),
            ({**docker, "timeout": 0}, "backend: scaler.timeout: Input should be greater than 0"),
            ("docker", "backend: scaler: Input should be a valid dictionary or instance of BackendScaler"),
        ):
            for path in ("/gateway/backend/modify/add", "/gateway/backend/modify/update"):
                status, answer = gateway.call("POST", path, {**body, "name": "c2", "scaler": bad})
                assert (status, answer["error"]) == (400, message), (path, bad, answer)
        assert _names(gateway) == ["c1"]
        assert gateway.call("GET", "/gateway/backend/c1")[1]["scaler"] is None


def test_a_backend_read_with_its_state_is_sent_back_as_it_is(sims, make_gateway):
    # A client (the UI's edit form, a script) that reads a backend, changes a field and sends it back.
    with make_gateway() as gateway:
        assert gateway.call("POST", "/gateway/backend/modify/add", {"name": "c1", "proxyTo": sims[0].url})[0] == 200
        record = gateway.call("GET", "/gateway/backend/c1")[1]
        assert "state" in record
        status, updated = gateway.call("POST", "/gateway/backend/modify/update", {**record, "weight": 2})
        assert (status, updated["weight"]) == (200, 2.0), updated


@every_store
def test_a_backend_added_through_the_api_has_the_whole_record_and_it_is_used(sims, make_gateway, lasting_store_url):
    config = {"routing": {"groups": {"weighted": {"router": "weighted"}}}}
    with make_gateway(config, store=lasting_store_url) as gateway:
        for name, cluster, weight, monitor in (("heavy", sims[0], 1, "JMX"), ("never", sims[1], 0, None)):
            status, body = gateway.call(
                "POST",
                "/gateway/backend/modify/add",
                {
                    "name": name,
                    "proxyTo": cluster.url,
                    "routingGroup": "weighted",
                    "weight": weight,
                    "monitor": monitor,
                    "tls": {"caFile": "/etc/ssl/certs/ca-certificates.crt", "verify": True},
                },
            )
            assert status == 200, body
        gateway.restart()
        stored = {b["name"]: b for b in gateway.call("GET", "/gateway/backend/all")[1]}
        assert (stored["heavy"]["weight"], stored["heavy"]["monitor"]) == (1.0, "JMX")
        assert stored["never"]["tls"] == {
            "caFile": "/etc/ssl/certs/ca-certificates.crt",
            "certFile": None,
            "keyFile": None,
            "verify": True,
        }
        health = {b["name"]: b for b in gateway.call("GET", "/gateway/health")[1]}
        # The JMX monitor reports workers; the default one (INFO_API) cannot.
        assert health["heavy"]["workers"] is not None and health["never"]["workers"] is None
        for _ in range(10):
            run_query(gateway.url, "SELECT 1", http_headers={"X-Trino-Routing-Group": "weighted"})
        # Weight 0: never chosen while another backend of the group can take the query.
        assert {q["backend"] for q in gateway.queries()["queries"]} == {"heavy"}


@every_store
def test_every_change_persists_across_a_restart(sims, make_gateway, lasting_store_url):
    gateway = make_gateway(store=lasting_store_url)
    try:
        gateway.add_backend("keep", sims[0].url, group="etl")
        gateway.add_backend("drop", sims[1].url)
        gateway.add_backend("off", sims[2].url)
        gateway.call(
            "POST",
            "/gateway/backend/modify/update",
            {"name": "keep", "proxyTo": sims[0].url, "routingGroup": "reports"},
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


@every_store
def test_configured_backends_keep_the_active_flag_set_through_the_api(sims, make_gateway, lasting_store_url):
    config = {"backends": [{"name": "c1", "proxy_to": sims[0].url}, {"name": "c2", "proxy_to": sims[1].url}]}
    gateway = make_gateway(config, store=lasting_store_url)
    try:
        gateway.deactivate("c2")
        gateway.restart()
        assert _names(gateway, "/gateway/backend/active") == ["c1"]
    finally:
        gateway.stop()
