"""The Kubernetes manifests (deploy/kubernetes/): the base and the example overlay render with
``kubectl kustomize``, every object is valid Kubernetes, and they agree with the gateway itself: its
configuration loader takes the ConfigMap's gateway.yaml as the pod would see it, the probes and the
ServiceMonitor call routes the gateway answers without credentials under that configuration, and
ports and paths are the configuration's."""

from __future__ import annotations

import copy
import re
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import bcrypt
import jsonschema
import kubernetes_validate
import pytest

from gateway.config import GatewayConfig, load_config
from gateway.routing.rules import check_rules
from tests.deploy.manifests import (
    ROOT,
    Manifest,
    config_path,
    container,
    container_port,
    lay_out_pod,
    named,
    render,
    the,
)
from tests.inprocess import InProcessGateway

pytestmark = pytest.mark.slow

KUSTOMIZATIONS = ["base", "overlays/example"]
# The oldest Kubernetes release still commonly run, and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
# Kinds from custom resource definitions, which kubernetes-validate has no schema for: checked below.
CUSTOM_KINDS = {"ServiceMonitor"}
ADMIN_PASSWORD = "manifest-test-password"

# The fields of the Prometheus Operator's ServiceMonitor (monitoring.coreos.com/v1) these manifests
# may use, with the CRD's types; anything else (a misspelt key) is refused.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "jobLabel": {"type": "string"},
                "namespaceSelector": {"type": "object"},
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "matchExpressions": {"type": "array"},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"},
                            "honorLabels": {"type": "boolean"},
                            "tlsConfig": {"type": "object"},
                        },
                    },
                },
            },
        },
    },
}


@pytest.fixture(scope="module", params=KUSTOMIZATIONS)
def objects(request: pytest.FixtureRequest) -> tuple[Manifest, ...]:
    return render(request.param)


@pytest.fixture
def pod_config(objects, tmp_path) -> GatewayConfig:
    """The gateway's configuration as the pod reads it: the files its volumes put under its mounts,
    loaded by the gateway's own loader from the path its arguments give."""
    password_db = f"admin:{bcrypt.hashpw(ADMIN_PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n"
    lay_out_pod(objects, tmp_path, secrets={"password.db": password_db})
    named_path = config_path(objects)
    assert named_path.is_absolute(), f"--config {named_path}: the container's working directory is the image's"
    path = tmp_path / named_path.relative_to("/")
    assert path.is_file(), f"--config {named_path}: no volume mount puts a file there"
    config = load_config(path)
    check_rules(config.routing_rules)  # what `trino-gateway serve` checks before it starts
    return config


def test_the_manifests_hold_the_objects_of_a_fleet(objects) -> None:
    kinds = sorted(o["kind"] for o in objects)
    for kind in ("ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"):
        assert kind in kinds, kind
    assert "ServiceMonitor" in kinds
    assert not [o for o in objects if o["kind"] == "Secret"], "secrets are referenced, never shipped"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_kubernetes(objects, version) -> None:
    for manifest in objects:
        if manifest["kind"] in CUSTOM_KINDS:
            continue
        # strict: a key the schema does not know (a misspelt field, silently ignored by the API
        # server) fails too.
        kubernetes_validate.validate(manifest, version, strict=True)


def test_the_service_monitor_scrapes_the_gateways_metrics_through_the_service(objects) -> None:
    monitor = the(objects, "ServiceMonitor")
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    service = the(objects, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint.get("scheme", "http") == "http"
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert endpoint["port"] in ports, f"the Service has no port named {endpoint['port']}"


def test_the_deployment_runs_the_image_with_the_mounted_configuration(objects, pod_config) -> None:
    config_dir = config_path(objects).parent
    mounts = {m["mountPath"].rstrip("/"): m for m in container(objects)["volumeMounts"]}
    assert str(config_dir) == "/etc/trino-gateway" and mounts[str(config_dir)].get("readOnly")
    assert pod_config.routing_rules.enabled and Path(pod_config.routing_rules.rules_file).is_file()


def test_the_container_and_service_ports_are_the_configurations(objects, pod_config) -> None:
    assert pod_config.server.http, "the probes and the ServiceMonitor speak plain HTTP"
    ports = {p["name"]: p["containerPort"] for p in container(objects)["ports"]}
    assert ports["http"] == pod_config.server.port
    if pod_config.server.tls is not None:
        assert ports["https"] == pod_config.server.tls.port
    service = the(objects, "Service")
    by_name = {p["name"]: p for p in service["spec"]["ports"]}
    assert by_name["http"]["port"] == 8080
    assert container_port(objects, by_name["http"]["targetPort"]) == pod_config.server.port
    if "https" in by_name:
        assert pod_config.server.tls is not None
        assert container_port(objects, by_name["https"]["targetPort"]) == pod_config.server.tls.port
    pod_labels = the(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_the_probes_and_metrics_are_routes_the_gateway_answers_without_credentials(
    objects, pod_config, loop_thread
) -> None:
    gateway = container(objects)
    probes = {kind: gateway[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["readinessProbe"]["path"] == "/gateway/readyz"
    assert probes["livenessProbe"]["path"] == "/gateway/livez"
    for probe in probes.values():
        assert container_port(objects, probe["port"]) == pod_config.server.port
        assert probe.get("scheme", "HTTP") == "HTTP"
    paths = {probe["path"] for probe in probes.values()} | {"/metrics"}
    assert pod_config.auth is not None, "the example runs with auth: the probes must pass it without credentials"
    # Said here at once (the in-process gateway below would only time out waiting for its readiness).
    closed = paths - set(pod_config.auth.public_paths)
    assert not closed, f"not in auth.public_paths, so the kubelet or Prometheus would get 401: {sorted(closed)}"

    # The pod's configuration in this process: the in-memory store (one worker) instead of PostgreSQL,
    # and no backends (their hosts are the cluster's).
    data = copy.deepcopy(pod_config.model_dump())
    data["server"]["workers"] = 1
    data["backends"] = []
    with InProcessGateway(loop_thread, config=data) as served:
        for path in sorted(paths):
            assert _status(served.url + path) == 200, f"{path} without credentials"
        # Not every route is open: auth is in force, so the 200s above are the public paths' own.
        assert _status(served.url + "/gateway/health") == 401


def test_the_store_password_comes_from_a_secret_not_the_configuration(objects, pod_config) -> None:
    store = urlsplit(pod_config.store.url)
    assert store.scheme.startswith("postgresql"), "a fleet shares one PostgreSQL store"
    assert store.password is None, "the store's password is in the ConfigMap"
    env = {variable["name"]: variable for variable in container(objects).get("env", [])}
    # asyncpg (the gateway's PostgreSQL driver) takes the password from PGPASSWORD when the URL has none.
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["key"]


def test_a_stopping_pod_keeps_serving_then_has_time_to_finish(objects, pod_config) -> None:
    pod = the(objects, "Deployment")["spec"]["template"]["spec"]
    pre_stop = container(objects)["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    sleep = int(pre_stop[1])
    assert sleep >= 5
    # The grace period counts from the preStop hook on: after the sleep comes SIGTERM, and the gateway's
    # own shutdown (readiness failing for server.shutdown_grace while it serves on, then the requests
    # in flight answered within server.shutdown_timeout) must end before the kubelet kills.
    server = pod_config.server
    assert pod["terminationGracePeriodSeconds"] >= sleep + server.shutdown_grace + server.shutdown_timeout


def test_the_pod_runs_as_the_images_user_on_a_read_only_root(objects, pod_config) -> None:
    pod = the(objects, "Deployment")["spec"]["template"]["spec"]
    security = container(objects)["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    dockerfile = (ROOT / "compose" / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert user.split(":")[0] == str(pod["securityContext"]["runAsUser"])
    # Several workers keep their metrics in a directory under /tmp (gateway/node/cli.py): it must be writable.
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = {m["mountPath"] for m in container(objects)["volumeMounts"] if "emptyDir" in volumes[m["name"]]}
    if pod_config.server.workers > 1:
        assert "/tmp" in writable


def test_the_budget_and_the_autoscaler_keep_a_fleet_of_the_deployments_pods(objects) -> None:
    deployment = the(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    budget = the(objects, "PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget.get("maxUnavailable") == 1 or budget.get("minAvailable", 0) >= 2
    scaler = the(objects, "HorizontalPodAutoscaler")["spec"]
    target = scaler["scaleTargetRef"]
    assert named(objects, target["kind"], target["name"]) is deployment
    assert scaler["minReplicas"] >= 3 and deployment["spec"]["replicas"] >= 3
    assert [m["resource"]["name"] for m in scaler["metrics"]] == ["cpu"]
    assert container(objects)["resources"]["requests"]["cpu"], "CPU utilisation is a share of the request"


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
