"""The trinosim image of the container cluster kind, built here from local files.

Nothing can be pulled, so the image is ``FROM scratch``: it holds trinosim's source and an empty
root filesystem laid out like this machine's (``/bin`` -> ``usr/bin`` and so on). The Python runtime,
its libraries and the project's virtualenv are bind-mounted read-only from the host at the same
paths (`host_mounts`), which keeps the image a few hundred kilobytes and its build about a second.
The tag is a hash of everything that goes in, so a session builds it at most once and an unchanged
trinosim reuses the image of an earlier session.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
import tempfile
from functools import cache
from pathlib import Path

import docker
import docker.errors

from trinosim.catalog import data_dir, tpch_files

REPOSITORY = "trino-ha-gateway/trinosim"
LABEL = "trino-ha-gateway.chaos"
# Where the container finds the TPC-H files generated once on the host (see `host_mounts`).
CONTAINER_DATA_DIR = "/var/lib/trinosim"
_SOURCE = Path(__file__).resolve().parent.parent / "trinosim"
# Top-level entries that are symlinks into /usr on merged-/usr systems (Debian 12, Ubuntu).
_ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_EMPTY_DIRS = ("etc", "tmp", "root", "proc", "sys", "dev", "usr", "var/lib/trinosim")
_DOCKERFILE = f"""\
FROM scratch
COPY rootfs/ /
COPY app/ /opt/trinosim/
ENV PYTHONPATH=/opt/trinosim PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/root \\
    TRINOSIM_DATA_DIR={CONTAINER_DATA_DIR}
LABEL {LABEL}=image
"""


def docker_client(timeout: float = 10.0) -> docker.DockerClient:
    return docker.from_env(timeout=int(timeout))


@cache
def docker_unavailable_reason() -> str | None:
    """None when a Docker engine answers; otherwise why not, in a sentence a person can act on."""
    try:
        client = docker_client(timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except docker.errors.DockerException as error:
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return f"no Docker engine answers at {host} (start one with `make docker-engine`): {error}"
    return None


def python_command() -> list[str]:
    """The interpreter of this session: inside the container it is found at the same path."""
    return [sys.executable, "-m", "trinosim"]


def _host_root_links() -> dict[str, str]:
    return {name: os.readlink(f"/{name}") for name in _ROOT_LINKS if os.path.islink(f"/{name}")}


def host_mounts() -> dict[str, str]:
    """Host path -> container path, all read-only: the system, the Python runtime, the venv and
    the TPC-H data (generated here first, so containers never spend start-up time on it)."""
    mounts = {"/usr": "/usr"}
    for name in _ROOT_LINKS:
        if os.path.isdir(f"/{name}") and not os.path.islink(f"/{name}"):
            mounts[f"/{name}"] = f"/{name}"
    for prefix in {sys.base_prefix, sys.prefix}:
        if not Path(prefix).resolve().is_relative_to("/usr"):
            mounts[prefix] = prefix
    tpch_files()
    mounts[str(data_dir())] = CONTAINER_DATA_DIR
    return mounts


def _sources() -> list[Path]:
    return sorted(p for p in _SOURCE.rglob("*.py") if "__pycache__" not in p.parts)


def image_tag() -> str:
    digest = hashlib.sha256(_DOCKERFILE.encode())
    digest.update(repr(sorted(_host_root_links().items())).encode())
    for path in _sources():
        digest.update(str(path.relative_to(_SOURCE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{REPOSITORY}:{digest.hexdigest()[:16]}"


def _write_context(directory: Path) -> None:
    (directory / "Dockerfile").write_text(_DOCKERFILE)
    rootfs = directory / "rootfs"
    for name in _EMPTY_DIRS:
        (rootfs / name).mkdir(parents=True, exist_ok=True)
    for name, target in _host_root_links().items():
        (rootfs / name).symlink_to(target)
    for path in _sources():
        copy = directory / "app" / "trinosim" / path.relative_to(_SOURCE)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, copy)


def _exists(tag: str) -> bool:
    client = docker_client()
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False
    finally:
        client.close()


@cache
def trinosim_image() -> str:
    """The tag of the trinosim image, built now unless an image with that tag exists. Processes that
    need it at once (pytest-xdist's workers, runs side by side) take turns through a lock file: one
    builds, the others find its image."""
    from testcontainers.core.image import DockerImage

    tag = image_tag()
    if _exists(tag):
        return tag
    lock_path = Path(tempfile.gettempdir()) / f"{REPOSITORY.replace('/', '-')}-{tag.rsplit(':', 1)[1]}.lock"
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _exists(tag):
            return tag
        with tempfile.TemporaryDirectory(prefix="trinosim-image-") as directory:
            _write_context(Path(directory))
            # pull=False: FROM scratch needs nothing from a registry, and none can be reached.
            DockerImage(path=directory, tag=tag, clean_up=False, pull=False, rm=True).build()
    return tag
