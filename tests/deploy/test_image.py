"""The gateway's image (compose/Dockerfile) builds and serves, with the product alone in it.

It needs a Docker engine and the base image on this machine: nothing can be pulled here, so without
either the tests skip and say which is missing. The engine is found as the chaos suite finds it
(``chaos.images``: ``DOCKER_HOST`` or the default socket; ``make docker-engine`` starts one).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import pytest

from chaos.images import docker_client, docker_unavailable_reason
from trinosim.gateway_process import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = "compose/Dockerfile"
# Installed by the [sim] and [test] extras only: none of them belongs in the product's image.
TEST_KIT = {"aiohttp", "duckdb", "tpchgen-cli", "pytest", "trino", "testcontainers", "playwright", "schemathesis"}


def base_images() -> list[str]:
    """The images the Dockerfile builds FROM (the stages it names itself excepted)."""
    stages: set[str] = set()
    bases = []
    for line in (ROOT / DOCKERFILE).read_text().splitlines():
        match = re.match(r"FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?\s*$", line.strip(), flags=re.IGNORECASE)
        if match is None:
            continue
        if match[1] not in stages:
            bases.append(match[1])
        if match[2]:
            stages.add(match[2])
    return bases


def missing_base_image(client: docker.DockerClient) -> str | None:
    for base in base_images():
        try:
            client.images.get(base)  # what `docker image inspect` asks the engine
        except docker.errors.ImageNotFound:
            return (
                f"the base image {base} is not present locally (`docker image inspect {base}` fails), "
                f"and the test pulls nothing (`docker pull {base}` where a registry answers)"
            )
    return None


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    reason = docker_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    client = docker_client(timeout=600)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def image(client: docker.DockerClient) -> Iterator[str]:
    reason = missing_base_image(client)
    if reason is not None:
        pytest.skip(reason)
    tag = f"trino-ha-gateway:test-{uuid.uuid4().hex[:8]}"
    # pull=False: the base image is here (checked above) and no registry answers. The host's network:
    # pip fetches the dependencies, and the engine `make docker-engine` starts has no bridge.
    try:
        client.images.build(path=str(ROOT), dockerfile=DOCKERFILE, tag=tag, pull=False, rm=True, network_mode="host")
    except docker.errors.BuildError as error:
        log = "".join(str(chunk.get("stream") or chunk.get("error") or "") for chunk in error.build_log)
        pytest.fail(f"{DOCKERFILE} did not build: {error.msg}\n{log[-4000:]}")
    try:
        yield tag
    finally:
        with contextlib.suppress(docker.errors.APIError):
            client.images.remove(tag, force=True)


def test_the_dockerfile_builds_from_a_base_image_and_copies_no_test_kit() -> None:
    text = (ROOT / DOCKERFILE).read_text()
    assert base_images() == ["python:3.11-slim"]
    copied = " ".join(re.findall(r"^COPY\s+(.+)$", text, flags=re.MULTILINE))
    assert "trinosim" not in copied and "tests" not in copied
    assert not re.search(r"pip install[^\n]*\[", text), "the image installs an extra"
    assert "HEALTHCHECK" not in re.sub(r"#.*", "", text)


def test_the_image_runs_as_a_numeric_non_root_user_exposing_the_http_port(client, image) -> None:
    config = client.images.get(image).attrs["Config"]
    user = config["User"].split(":")
    assert all(part.isdigit() and int(part) != 0 for part in user), config["User"]
    assert set(config["ExposedPorts"]) == {"8080/tcp"}
    assert config.get("Healthcheck") is None
    assert config["Entrypoint"] == ["trino-gateway"]


def test_the_image_holds_the_gateway_and_none_of_the_test_kit(client, image) -> None:
    script = (
        "import importlib.metadata as m, importlib.util as u, json, shutil; "
        "print(json.dumps({'dists': sorted(d.metadata['Name'].lower() for d in m.distributions()), "
        "'modules': {n: u.find_spec(n) is not None for n in ('gateway', 'observability', 'trinosim')}, "
        "'scripts': {n: shutil.which(n) for n in ('trino-gateway', 'trinosim')}}))"
    )
    output = client.containers.run(image, ["-c", script], entrypoint="python", network_mode="none", remove=True)
    found = json.loads(output)
    assert found["modules"] == {"gateway": True, "observability": True, "trinosim": False}
    assert found["scripts"]["trino-gateway"] and found["scripts"]["trinosim"] is None
    assert "trino-ha-gateway" in found["dists"]
    assert not TEST_KIT & set(found["dists"]), sorted(TEST_KIT & set(found["dists"]))


def test_the_image_serves_on_a_read_only_root_filesystem(client, image) -> None:
    # As the Kubernetes pods run it: root filesystem read-only, /tmp writable (two workers keep their
    # metrics in a directory there, gateway/node/cli.py).
    port = free_port()
    container = client.containers.run(
        image,
        ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2", "--store", "sqlite:////tmp/gw.db"],
        network_mode="host",
        read_only=True,
        tmpfs={"/tmp": "rw,size=64m"},
        detach=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/gateway/readyz", timeout=2) as answer:
                    assert answer.status == 200
                    break
            except (urllib.error.URLError, ConnectionError):
                container.reload()
                if container.status == "exited" or time.monotonic() > deadline:
                    pytest.fail(f"the gateway in the image did not get ready:\n{container.logs().decode()[-3000:]}")
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            assert b"trino_gateway" in answer.read()
    finally:
        container.remove(force=True)
