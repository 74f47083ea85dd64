"""Configuration: typed, validated at start-up, errors naming the key; no file needed at all."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gateway.config import ConfigError, load_config, parse_config
from gateway.store.backend import BackendScaler
from tests.conftest import run_query
from tests.gateway.conftest import every_store
from trinosim.gateway_process import GatewayProcess, free_port


def _serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"server": {"prot": 1}}, "server.prot: unknown key"),
        ({"sever": {}}, "sever: unknown key"),
        ({"server": {"port": "eighty"}}, "server.port: Input should be a valid integer"),
        ({"server": {"port": 70000}}, "server.port: Input should be less than or equal to 65535"),
        ({"backends": [{"name": "a"}]}, "backends.0.proxy_to: Field required"),
        (
            {"backends": [{"name": "a", "proxy_to": "localhost:8080"}]},
            "backends.0.proxy_to: Value error, must be an http",
        ),
        (
            {"backends": [{"name": "a", "proxy_to": "http://h:1"}, {"name": "a", "proxy_to": "http://h:2"}]},
            "backend name 'a' appears twice",
        ),
        *(
            (
                {"backends": [{"name": "a", "proxy_to": "http://h:1", "max_running": bad}]},
                f"backends.0.max_running: {message}",
            )
            for bad, message in (
                (0, "Input should be greater than or equal to 1"),
                (-1, "Input should be greater than or equal to 1"),
                ("x", "Input should be a valid integer"),
            )
        ),
        (
            {"backends": [{"name": "a", "proxy_to": "http://h:1", "scaler": {"kind": "docker"}}]},
            "backends.0.scaler: Value error, a docker scaler needs container",
        ),
        ({"proxy": {"read_timeout": -1}}, "proxy.read_timeout: Input should be greater than 0"),
        (["not", "a", "mapping"], "the top level must be a mapping"),
        (
            {"observability": {"tracing": {"ui_url": "http://jaeger:16686/trace/"}}},
            "observability.tracing.ui_url: Value error, must contain {trace_id}",
        ),
        ({"observability": {"tracing": {"ui": "x"}}}, "observability.tracing.ui: unknown key"),
    ],
)
def test_bad_configuration_is_rejected_naming_the_key(data, message):
    with pytest.raises(ConfigError) as error:
        parse_config(data, "gateway.yaml")
    assert message in str(error.value)
    assert str(error.value).startswith("gateway.yaml")


@every_store
def test_a_backends_max_running_goes_from_the_file_to_the_store_and_the_api(
    sims, make_gateway, lasting_store_url, tmp_path
):
    path = tmp_path / "gateway.yaml"
    path.write_text(
        f"backends:\n  - name: capped\n    proxy_to: {sims[0].url}\n    max_running: 8\n"
        f"  - name: open\n    proxy_to: {sims[1].url}\n"
    )
    config = load_config(path)
    assert [(b.name, b.max_running) for b in config.backends] == [("capped", 8), ("open", None)]
    data = config.model_dump(mode="json", include={"backends"})
    with make_gateway(data, store=lasting_store_url) as gateway:
        stored = {b["name"]: b["maxRunning"] for b in gateway.call("GET", "/gateway/backend/all")[1]}
        assert stored == {"capped": 8, "open": None}
    # Configured backends are updated from the file at each start: so is a limit changed or removed there.
    data["backends"][0]["max_running"], data["backends"][1]["max_running"] = None, 2
    with make_gateway(data, store=lasting_store_url) as gateway:
        stored = {b["name"]: b["maxRunning"] for b in gateway.call("GET", "/gateway/backend/all")[1]}
        assert stored == {"capped": None, "open": 2}


def test_a_backends_scaler_is_read_from_the_file(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text(
        "backends:\n  - name: etl\n    proxy_to: http://trino-etl:8080\n    scaler:\n      kind: command\n"
        "      start: docker compose up -d trino-etl\n      stop: docker compose stop trino-etl\n      timeout: 90\n"
        "  - name: spare\n    proxy_to: http://trino-spare:8080\n    scaler: {kind: docker, container: trino-spare}\n"
    )
    etl, spare = load_config(path).backends
    assert etl.scaler == BackendScaler(
        kind="command", start="docker compose up -d trino-etl", stop="docker compose stop trino-etl", timeout=90
    )
    assert spare.scaler == BackendScaler(kind="docker", container="trino-spare")


def test_malformed_and_missing_files_are_clear_errors(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_serve_refuses_a_bad_config_file_without_a_traceback(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text("server:\n  port: 8080\n  colour: blue\n")
    result = _serve("--config", str(path))
    assert result.returncode == 2
    assert "server.colour: unknown key" in result.stderr and "Traceback" not in result.stderr
    path.write_text("backends:\n  - name: a\n    proxy_to: http://127.0.0.1:1\n    max_running: 0\n")
    result = _serve("--config", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "backends.0.max_running: Input should be greater than or equal to 1" in result.stderr


def test_serve_refuses_a_bad_store_url_and_bad_backend_flags(tmp_path):
    result = _serve("--store", "mysql://x/y", "--port", str(free_port()))
    assert result.returncode == 2 and "unsupported store URL" in result.stderr and "Traceback" not in result.stderr
    result = _serve("--backend", "no-url-here")
    assert result.returncode == 2 and "expected NAME=URL[@GROUP]" in result.stderr


def test_starts_with_no_config_file_and_backends_added_later(clusters, tmp_path):
    with GatewayProcess(store=f"sqlite:///{tmp_path / 'g.db'}") as gateway:
        gateway.add_backend("late", clusters[0].url)
        assert run_query(gateway.url, "SELECT 9") == [[9]]


def test_backend_flags_define_backends_and_groups(clusters, tmp_path):
    args = ["--backend", f"one={clusters[0].url}", "--backend", f"two={clusters[2].url}@etl"]
    with GatewayProcess(store=f"sqlite:///{tmp_path / 'g.db'}", extra_args=args) as gateway:
        status, body = gateway.call("GET", "/gateway/backend/all")
        assert status == 200
        assert {b["name"]: b["routingGroup"] for b in body} == {"one": "adhoc", "two": "etl"}


def test_check_config_prints_the_resolved_configuration(tmp_path):
    path = tmp_path / "gateway.yaml"
    path.write_text("routing:\n  default_group: etl\nbackends:\n  - name: a\n    proxy_to: http://127.0.0.1:1/\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert '"default_group": "etl"' in result.stdout and '"proxy_to": "http://127.0.0.1:1"' in result.stdout


def test_hypercorn_remains_available_as_the_server(clusters, tmp_path):
    with GatewayProcess(
        store=f"sqlite:///{tmp_path / 'g.db'}",
        extra_args=["--engine", "hypercorn"],
        config={"backends": [{"name": "c1", "proxy_to": clusters[0].url}]},
    ) as gateway:
        assert run_query(gateway.url, "SELECT count(*) FROM tpch.tiny.region") == [[5]]
        assert "(CTRL + C to quit)" in gateway.log()  # hypercorn's own start-up line


def test_the_session_secret_can_come_from_a_file_every_node_mounts(tmp_path):
    secret = tmp_path / "session-secret"
    secret.write_text("s" * 40 + "\n")
    passwords = tmp_path / "password.db"
    passwords.write_text("")

    def auth(**session: str) -> dict:
        return {"auth": {"password_file": str(passwords), "roles": {"ADMIN": ["alice"]}, "session": session}}

    config = parse_config(auth(secret_file=str(secret)), "gateway.yaml")
    assert config.auth is not None and config.auth.session.secret == "s" * 40
    with pytest.raises(ConfigError, match=r"secret_file .*: the secret must have at least 32 characters"):
        secret.write_text("short")
        parse_config(auth(secret_file=str(secret)), "gateway.yaml")
    with pytest.raises(ConfigError, match=r"secret_file .*nowhere"):
        parse_config(auth(secret_file=str(tmp_path / "nowhere")), "gateway.yaml")
    with pytest.raises(ConfigError, match="not both"):
        parse_config(auth(secret="x" * 40, secret_file=str(secret)), "gateway.yaml")
