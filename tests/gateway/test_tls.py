"""TLS: the gateway serves HTTPS beside HTTP (and reloads its certificate when the files change),
and reaches https:// backends and routing services with each one's CA and client certificate."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import trino
from cryptography import x509

from tests.certs import CertificateAuthority
from tests.trinosim.helpers import wait_until
from trinosim import TrinoSimProcess
from trinosim.gateway_process import GatewayProcess, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def no_ca_bundle_override(monkeypatch):
    # requests lets REQUESTS_CA_BUNDLE (set machine-wide here) override a session's own CA file,
    # which the trino client relies on: the tests name their CA themselves.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(directory)
    other = CertificateAuthority(directory / "other", name="some other CA")
    return {
        "ca": ca,
        "other": other,
        "gateway": ca.issue("gateway"),
        "backend": ca.issue("backend"),
        "client": ca.issue("gateway-client", server=False, client=True),
    }


@pytest.fixture(scope="module")
def mtls_backend(pki):
    """An HTTPS trinosim that only talks to clients with a certificate of the test CA."""
    issued = pki["backend"]
    server = TrinoSimProcess(
        name="tls-backend",
        tls_cert=str(issued.certificate),
        tls_key=str(issued.key),
        tls_client_ca=str(pki["ca"].path),
    ).start()
    context = ssl.create_default_context(cafile=str(pki["ca"].path))
    context.load_cert_chain(str(pki["client"].certificate), str(pki["client"].key))
    server.admin_tls = context
    yield server
    server.stop()


def _tls_backend(pki, server, **tls) -> dict:
    settings = {
        "ca_file": str(pki["ca"].path),
        "cert_file": str(pki["client"].certificate),
        "key_file": str(pki["client"].key),
        **tls,
    }
    return {"name": "secure", "proxy_to": server.url, "tls": settings}


def _gateway_tls(pki, port: int) -> dict:
    issued = pki["gateway"]
    return {"port": port, "certificate": str(issued.certificate), "key": str(issued.key)}


def _served_serial(port: int, ca: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return x509.load_der_x509_certificate(tls.getpeercert(True)).serial_number


def _serial_if_up(port: int, ca: Path) -> int | None:
    """The served certificate's serial, or None while the one worker is respawned to read it (its
    listener is down for that moment: docs/security.md)."""
    try:
        return _served_serial(port, ca)
    except (ConnectionError, ssl.SSLError):
        return None


def test_https_end_to_end_python_client_and_mtls_backend(pki, mtls_backend, tmp_path):
    https_port = free_port()
    config = {"server": {"tls": _gateway_tls(pki, https_port)}, "backends": [_tls_backend(pki, mtls_backend)]}
    with GatewayProcess(config=config) as gateway:
        connection = trino.dbapi.connect(
            host="127.0.0.1", port=https_port, user="tls-user", http_scheme="https", verify=str(pki["ca"].path)
        )
        cursor = connection.cursor()
        cursor.execute("SELECT name FROM tpch.tiny.region ORDER BY name")
        assert [row[0] for row in cursor.fetchall()][:2] == ["AFRICA", "AMERICA"]
        query_id = cursor.query_id
        record = mtls_backend.query(query_id)
        # The client came over TLS: the backend is told so, and every URI handed back is https.
        assert record["receivedHeaders"]["X-Forwarded-Proto"] == "https"
        first = requests.post(
            f"{gateway.https_url}/v1/statement",
            data="SELECT 1",
            headers={"X-Trino-User": "u"},
            verify=str(pki["ca"].path),
            timeout=10,
        ).json()
        assert first["nextUri"].startswith(f"{gateway.https_url}/v1/statement/")
        # Plain HTTP still serves beside it.
        assert requests.get(f"{gateway.url}/gateway/readyz", timeout=10).status_code == 200


def test_the_trino_cli_over_https(pki, mtls_backend, trino_cli):
    https_port = free_port()
    config = {
        "server": {"tls": _gateway_tls(pki, https_port), "http": False},
        "backends": [_tls_backend(pki, mtls_backend)],
    }
    with GatewayProcess(config=config) as gateway:
        server = gateway.https_url
        verified = trino_cli(server, "SELECT count(*) FROM tpch.tiny.nation", "--truststore-path", str(pki["ca"].path))
        assert verified.returncode == 0, verified.stderr
        assert '"25"' in verified.stdout
        insecure = trino_cli(server, "SELECT 7", "--insecure")
        assert insecure.returncode == 0 and '"7"' in insecure.stdout, insecure.stderr
        # HTTPS only: nothing listens on the plain port.
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{gateway.port}/gateway/readyz", timeout=5)


def test_a_backend_behind_a_wrong_ca_or_without_the_client_certificate_is_named_in_the_error(pki, mtls_backend):
    cases = {
        "wrong-ca": _tls_backend(pki, mtls_backend, ca_file=str(pki["other"].path)),
        "no-client-cert": {
            "name": "no-client-cert",
            "proxy_to": mtls_backend.url,
            "tls": {"ca_file": str(pki["ca"].path)},
        },
    }
    cases["wrong-ca"]["name"] = "wrong-ca"
    for name, backend in cases.items():
        config = {"health": {"interval": 0.5}, "backends": [backend]}
        with GatewayProcess(config=config) as gateway:
            # A failed check leaves the backend PENDING until failure_threshold checks have failed.
            wait_until(
                lambda gateway=gateway: next(
                    (
                        b
                        for b in gateway.call("GET", "/gateway/health")[1]
                        if b["lastError"] and b["state"] == "UNHEALTHY"
                    ),
                    None,
                ),
                timeout=20,
                what="the backend to be UNHEALTHY after failed TLS checks",
            )
            page = requests.post(
                f"{gateway.url}/v1/statement", data="SELECT 1", headers={"X-Trino-User": "u"}, timeout=10
            ).json()
            message = page["error"]["message"]
            assert f"({name} UNHEALTHY: " in message, message
            if name == "wrong-ca":
                assert "CERTIFICATE_VERIFY_FAILED" in message, message
    # With verify: false (only by explicit choice) the wrong CA is let through.
    trusting = _tls_backend(pki, mtls_backend, ca_file=str(pki["other"].path), verify=False)
    with GatewayProcess(config={"backends": [trusting]}) as gateway:
        requests.post(f"{gateway.url}/v1/statement", data="SELECT 1", headers={"X-Trino-User": "u"}, timeout=10)
        assert gateway.queries()["total"] == 1


def test_the_certificate_is_served_anew_when_its_files_change(pki, sim, tmp_path):
    served = pki["ca"].issue("renewed-gateway")
    certificate, key = tmp_path / "gateway.pem", tmp_path / "gateway-key.pem"
    certificate.write_bytes(pki["gateway"].certificate.read_bytes())
    key.write_bytes(pki["gateway"].key.read_bytes())
    https_port = free_port()
    config = {
        "server": {"tls": {"port": https_port, "certificate": str(certificate), "key": str(key)}},
        "backends": [{"name": "plain", "proxy_to": sim.url}],
    }
    with GatewayProcess(config=config) as gateway:
        before = _served_serial(https_port, pki["ca"].path)
        certificate.write_bytes(served.certificate.read_bytes())
        key.write_bytes(served.key.read_bytes())
        renewed = x509.load_pem_x509_certificate(served.certificate.read_bytes()).serial_number
        wait_until(lambda: _serial_if_up(https_port, pki["ca"].path) == renewed, timeout=30, what="the renewal")
        assert before != renewed
        assert "TLS certificate files changed" in gateway.log()
        # No restart: the HTTP listener's process is the one it was.
        assert gateway.process is not None and gateway.process.poll() is None


class _TlsRoutingService:
    def __init__(self, issued, group: str) -> None:
        answer = json.dumps({"routingGroup": group}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(issued.certificate), str(issued.key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/route"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_routing_service_is_reached_over_tls_with_its_ca(pki, sim):
    service = _TlsRoutingService(pki["ca"].issue("router"), group="etl")
    try:
        external = {"url": service.url, "tls": {"ca_file": str(pki["ca"].path)}}
        config = {
            "routing_rules": {"enabled": True, "type": "EXTERNAL", "external": external},
            "backends": [
                {"name": "adhoc-1", "proxy_to": sim.url},
                {"name": "etl-1", "proxy_to": sim.url, "routing_group": "etl"},
            ],
        }
        with GatewayProcess(config=config) as gateway:
            requests.post(f"{gateway.url}/v1/statement", data="SELECT 1", headers={"X-Trino-User": "u"}, timeout=10)
            assert gateway.queries()["queries"][0]["routingGroup"] == "etl"
    finally:
        service.close()
