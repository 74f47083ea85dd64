"""The Kubernetes manifests as the cluster would get them: rendered by ``kubectl kustomize``, and a
pod's files laid out in a directory from its volumes, so the gateway's own code can read them."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from gateway.node.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
Manifest = dict[str, Any]


@functools.cache
def render(kustomization: str) -> tuple[Manifest, ...]:
    """Every object ``kubectl kustomize`` makes of ``deploy/kubernetes/<kustomization>``."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is missing: `make test` installs Debian's kubernetes-client (apt-get install it)")
    result = subprocess.run(
        [kubectl, "kustomize", str(KUBERNETES / kustomization)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"kubectl kustomize {kustomization} failed:\n{result.stderr}"
    return tuple(document for document in yaml.safe_load_all(result.stdout) if document)


def the(objects: tuple[Manifest, ...], kind: str) -> Manifest:
    """The one object of ``kind``."""
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}, expected 1"
    return found[0]


def named(objects: tuple[Manifest, ...], kind: str, name: str) -> Manifest:
    for candidate in objects:
        if candidate["kind"] == kind and candidate["metadata"]["name"] == name:
            return candidate
    raise AssertionError(f"no {kind} named {name} among the rendered objects")


def container(objects: tuple[Manifest, ...]) -> Manifest:
    """The gateway's container in the Deployment."""
    (only,) = the(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return only


def config_path(objects: tuple[Manifest, ...]) -> PurePosixPath:
    """The configuration file the container's arguments name, read by the gateway's own parser."""
    args = build_parser().parse_args(container(objects)["args"])
    assert args.command == "serve" and args.config, f"the container does not serve a configuration file: {args}"
    return PurePosixPath(args.config)


def container_port(objects: tuple[Manifest, ...], port: int | str) -> int:
    """The number of a container port given by number or by name (as probes and Services name them)."""
    for declared in container(objects)["ports"]:
        if port in (declared["containerPort"], declared.get("name")):
            return declared["containerPort"]
    raise AssertionError(f"the container declares no port {port!r}")


def lay_out_pod(objects: tuple[Manifest, ...], root: Path, secrets: dict[str, str]) -> None:
    """Write the files the gateway's container sees under its volume mounts to ``root`` + mount path:
    ConfigMaps with their data, Secrets with ``secrets[key]`` (their values are not in the manifests),
    emptyDirs as empty directories."""
    pod = the(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    for mount in container(objects).get("volumeMounts", []):
        volume = volumes[mount["name"]]
        directory = root / PurePosixPath(mount["mountPath"]).relative_to("/")
        directory.mkdir(parents=True, exist_ok=True)
        sources = volume["projected"]["sources"] if "projected" in volume else [volume]
        for source in sources:
            for path, text in _files(objects, source, secrets).items():
                target = directory / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)


def _files(objects: tuple[Manifest, ...], source: Manifest, secrets: dict[str, str]) -> dict[str, str]:
    """Relative path -> contents of one volume (or projected source)."""
    if "configMap" in source:
        data = named(objects, "ConfigMap", source["configMap"]["name"]).get("data", {})
        items = source["configMap"].get("items") or [{"key": key, "path": key} for key in data]
        return {item["path"]: data[item["key"]] for item in items}
    if "secret" in source:
        items = source["secret"].get("items")
        assert items, f"secret {source['secret']} mounts every key: list them, so the paths are known"
        return {item["path"]: secrets.get(item["key"], "placeholder\n") for item in items}
    assert "emptyDir" in source, f"a volume of a kind these tests do not lay out: {source}"
    return {}
