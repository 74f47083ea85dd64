"""The README's minimal security setup, as ``trino-gateway serve`` runs it (granian, two workers):
HTTPS beside HTTP, a password file and roles. The admin API takes Basic credentials, changes are
audited, and a UI session made on one worker is good on the other (the node's workers share the
key that signs it), with its cookie Secure over HTTPS."""

from __future__ import annotations

import re

import pytest
import requests

from gateway.auth.password_file import hash_password
from tests.certs import CertificateAuthority
from trinosim.gateway_process import GatewayProcess, free_port

pytestmark = pytest.mark.slow

WORKER = "X-Trino-Gateway-Worker"


@pytest.fixture(autouse=True)
def no_ca_bundle_override(monkeypatch):
    # REQUESTS_CA_BUNDLE (set machine-wide here) would override the CA the tests name themselves.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


def test_the_minimal_setup_of_the_readme(sim, tmp_path):
    ca = CertificateAuthority(tmp_path / "pki")
    issued = ca.issue("gateway")
    password_db = tmp_path / "password.db"
    password_db.write_text(f"alice:{hash_password('alice-pw')}\nbob:{hash_password('bob-pw')}\n")
    config = {
        "server": {"tls": {"port": free_port(), "certificate": str(issued.certificate), "key": str(issued.key)}},
        "auth": {"password_file": str(password_db), "roles": {"ADMIN": ["alice"], "USER": ["bob"]}},
        "backends": [{"name": "trino-1", "proxy_to": sim.url}],
    }
    with GatewayProcess(config=config, workers=2) as gateway:
        https = requests.Session()
        https.verify = str(ca.path)
        base = gateway.https_url
        assert https.get(f"{base}/gateway/backend/all", timeout=15).status_code == 401
        assert https.get(f"{base}/gateway/backend/all", auth=("bob", "bob-pw"), timeout=15).status_code == 200
        assert (
            https.post(f"{base}/gateway/backend/deactivate/trino-1", auth=("bob", "bob-pw"), timeout=15).status_code
            == 403
        )
        assert https.post(f"{base}/gateway/backend/deactivate/trino-1", auth=("alice", "alice-pw"), timeout=15).ok
        assert https.post(f"{base}/gateway/backend/activate/trino-1", auth=("alice", "alice-pw"), timeout=15).ok
        audit = https.get(f"{base}/gateway/audit", auth=("alice", "alice-pw"), timeout=15).json()["entries"]
        assert [(e["actor"], e["action"], e["outcome"]) for e in audit] == [
            ("alice", "backend.activate", "done"),
            ("alice", "backend.deactivate", "done"),
            ("bob", "backend.deactivate", "refused"),
        ]
        assert "admin API is OPEN" not in gateway.log()
        # Liveness stays open, over both listeners.
        assert requests.get(f"{gateway.url}/gateway/livez", timeout=15).status_code == 200

        # A UI session: logged in over HTTPS, the cookie is Secure; every worker takes it.
        page = https.get(f"{base}/gateway/login", timeout=15)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        logged_in = https.post(
            f"{base}/gateway/login",
            data={"username": "alice", "password": "alice-pw", "csrf_token": token},
            allow_redirects=False,
            timeout=15,
        )
        assert logged_in.status_code == 302
        assert "Secure" in logged_in.headers["Set-Cookie"] and "HttpOnly" in logged_in.headers["Set-Cookie"]
        workers = set()
        for _ in range(40):
            # New connections, so that both worker processes answer some.
            with requests.Session() as browser:
                browser.verify = str(ca.path)
                browser.cookies.update(https.cookies)
                answer = browser.get(f"{base}/gateway/session", timeout=15)
                assert answer.status_code == 200 and answer.json()["user"] == "alice"
                workers.add(answer.headers[WORKER])
            if len(workers) == 2:
                break
        assert len(workers) == 2, workers
