"""Acceptance 5: the compose stack hangs together. Images cannot be pulled here, so the stack is
checked as files: every port, path and name one service expects of another is there."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from gateway.config import GatewayConfig, load_config
from tests.observability_ops import dashboards

COMPOSE_DIR = dashboards.REPO / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
SERVICES = {"gateway", "trino-1", "trino-2", "postgres", "prometheus", "grafana", "otel-collector", "jaeger"}


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _service(name: str) -> dict[str, Any]:
    return _compose()["services"][name]


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume in the short syntax ``source:target[:mode]``."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        mounts.append((source, target))
    return mounts


def _bind_source(service: str, target: str) -> Path:
    """The file or directory of the repository mounted at ``target`` in ``service``."""
    for source, mounted in _mounts(_service(service)):
        if mounted == target:
            assert source.startswith("."), f"{service}: {target} is a named volume, not a file of the repository"
            return (COMPOSE_DIR / source).resolve()
    raise AssertionError(f"{service} mounts nothing at {target}")


def _container_ports(service: dict[str, Any]) -> set[int]:
    ports = {int(str(p).split(":")[-1].split("/")[0]) for p in service.get("ports", [])}
    return ports | {int(p) for p in service.get("expose", [])}


def _flag(command: list[str], name: str) -> str:
    for i, part in enumerate(command):
        if part == name:
            return command[i + 1]
        if part.startswith(name + "="):
            return part.split("=", 1)[1]
    raise AssertionError(f"{name} not in {command}")


def _properties(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def _gateway_config() -> GatewayConfig:
    path = _bind_source("gateway", _flag(_service("gateway")["command"], "--config"))
    assert path == COMPOSE_DIR / "gateway.yaml"
    return load_config(path)


def _trino_port(service: str) -> int:
    config = _properties(_bind_source(service, "/etc/trino/config.properties"))
    return int(config["http-server.http.port"])


def _prometheus_config() -> dict[str, Any]:
    target = _flag(_service("prometheus")["command"], "--config.file")
    return yaml.safe_load(_bind_source("prometheus", target).read_text())


def _collector_config() -> dict[str, Any]:
    target = _flag(_service("otel-collector")["command"], "--config")
    return yaml.safe_load(_bind_source("otel-collector", target).read_text())


def _port_of(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def test_compose_file_declares_the_whole_stack() -> None:
    compose = _compose()
    assert set(compose["services"]) == SERVICES
    for name, service in compose["services"].items():
        assert "image" in service or "build" in service, name
        for dependency in service.get("depends_on", []):
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
    for name in ("trino-1", "trino-2"):
        assert _service(name)["image"].startswith("trinodb/trino:")


def test_every_volume_source_exists() -> None:
    compose = _compose()
    named = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source, target in _mounts(service):
            assert target.startswith("/"), f"{name}: {target}"
            if source.startswith((".", "/")):
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in named, f"{name} uses volume {source}, not declared under volumes"


def test_gateway_image_builds_from_the_repository() -> None:
    build = _service("gateway")["build"]
    context = (COMPOSE_DIR / build["context"]).resolve()
    assert context == dashboards.REPO
    dockerfile = context / build["dockerfile"]
    copied = re.findall(r"^COPY\s+(.+?)\s+\S+$", dockerfile.read_text(), flags=re.MULTILINE)
    assert copied, "the Dockerfile copies nothing"
    for sources in copied:
        for source in sources.split():
            assert (context / source).exists(), f"the Dockerfile copies {source}, which is not in the repository"
    assert "trino-gateway" in dockerfile.read_text()


def test_gateway_config_passes_the_gateways_validation_and_matches_the_services() -> None:
    config = _gateway_config()
    assert config.server.host == "0.0.0.0"
    assert config.server.port in _container_ports(_service("gateway"))
    assert {b.name for b in config.backends} == {"trino-1", "trino-2"}
    for backend in config.backends:
        url = urlsplit(backend.proxy_to)
        assert url.hostname in SERVICES and url.hostname.startswith("trino-"), backend.proxy_to
        assert url.port == _trino_port(url.hostname), backend.proxy_to
    store = urlsplit(config.store.url)
    postgres = _service("postgres")["environment"]
    assert store.scheme == "postgresql" and store.hostname == "postgres" and (store.port or 5432) == 5432
    assert (store.username, store.password) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
    assert store.path.lstrip("/") == postgres["POSTGRES_DB"]


def test_gateway_sends_traces_to_the_collector_and_the_collector_to_jaeger() -> None:
    tracing = _gateway_config().observability.tracing
    endpoint = urlsplit(tracing.endpoint)
    receivers = _collector_config()["receivers"]["otlp"]["protocols"]
    protocol = {"http/protobuf": "http", "grpc": "grpc", None: "http"}[tracing.protocol]
    assert endpoint.hostname == "otel-collector"
    assert endpoint.port == _port_of(receivers[protocol]["endpoint"])
    for name in ("trino-1", "trino-2"):
        trino = urlsplit(_properties(_bind_source(name, "/etc/trino/config.properties"))["tracing.exporter.endpoint"])
        assert (trino.hostname, trino.port) == ("otel-collector", _port_of(receivers["grpc"]["endpoint"]))
    collector = _collector_config()
    pipeline = collector["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"]
    for exporter in pipeline["exporters"]:
        host, port = collector["exporters"][exporter]["endpoint"].rsplit(":", 1)
        assert (host, int(port)) == ("jaeger", 4317), "Jaeger takes OTLP over gRPC on 4317"
    assert str(_service("jaeger")["environment"]["COLLECTOR_OTLP_ENABLED"]).lower() == "true"


def test_prometheus_scrapes_the_gateway_and_each_cluster_as_its_backend() -> None:
    config = _gateway_config()
    jobs = {job["job_name"]: job for job in _prometheus_config()["scrape_configs"]}
    gateway = jobs["trino-gateway"]
    assert gateway.get("metrics_path", "/metrics") == "/metrics"
    assert [t for group in gateway["static_configs"] for t in group["targets"]] == [f"gateway:{config.server.port}"]
    trino = jobs["trino"]
    scraped = {group["labels"]["backend"]: group["targets"] for group in trino["static_configs"]}
    expected = {b.name: [f"{urlsplit(b.proxy_to).hostname}:{urlsplit(b.proxy_to).port}"] for b in config.backends}
    assert scraped == expected, "each cluster is scraped where the gateway sends queries, labelled with its name"
    assert trino["http_headers"]["X-Trino-User"]["values"], "Trino's /metrics needs a user"


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing: `make system-deps` installs the Debian package prometheus")
    config = _prometheus_config()
    # Debian's promtool (2.42) predates scrape configs' http_headers (2.55); the rest is checked as is.
    for job in config["scrape_configs"]:
        job.pop("http_headers", None)
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [promtool, "check", "config", str(checked)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisions_prometheus_and_the_repositorys_dashboards() -> None:
    grafana = _service("grafana")
    provisioning = _bind_source("grafana", "/etc/grafana/provisioning")
    datasources = [
        source
        for path in sorted((provisioning / "datasources").glob("*.yaml"))
        for source in yaml.safe_load(path.read_text())["datasources"]
    ]
    assert len(datasources) == 1
    datasource = datasources[0]
    # The dashboards' DS_PROMETHEUS variable lists data sources of this type and opens on the default.
    assert datasource["type"] == dashboards.DATASOURCE["type"] and datasource["isDefault"] is True
    url = urlsplit(datasource["url"])
    listen = _flag(_service("prometheus")["command"], "--web.listen-address")
    assert (url.hostname, url.port) == ("prometheus", _port_of(listen))
    assert datasource["jsonData"]["timeInterval"] == _prometheus_config()["global"]["scrape_interval"]

    providers = [
        provider
        for path in sorted((provisioning / "dashboards").glob("*.yaml"))
        for provider in yaml.safe_load(path.read_text())["providers"]
    ]
    assert len(providers) == 1
    mounted = _bind_source("grafana", providers[0]["options"]["path"])
    assert mounted == dashboards.DASHBOARDS
    assert sorted(p.name for p in mounted.glob("*.json")) == ["backend.json", "overview.json"]
    assert 3000 in _container_ports(grafana)


def test_docker_compose_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI")
    if subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30, check=False).returncode != 0:
        pytest.skip("the docker compose plugin is not installed (Debian's docker.io does not ship it)")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
