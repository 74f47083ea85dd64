"""Identity on the Trino path. By default the gateway passes credentials through (the backend
authenticates), but with ``auth`` configured the routing rules see the user the gateway verified, so
a forged token cannot steer a query to another group. With ``auth.trino_path`` the gateway
authenticates queries itself and refuses, the way Trino does, before any backend sees them."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import trino
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.auth.password_file import hash_password
from tests.certs import CertificateAuthority
from tests.gateway.conftest import owner, three_backends
from tests.inprocess import InProcessGateway
from tests.oidc_provider import CLIENT_ID, OidcProviderProcess
from trinosim.inprocess import InProcessSim, LoopThread

pytestmark = pytest.mark.slow

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "cli-user": "cli-pw"}
ALICE_TO_ETL = """
---
name: "alice runs on etl"
condition: 'trinoRequestUser.getUser().orElse("") == "alice"'
actions: ['result.put("routingGroup", "etl")']
"""


@pytest.fixture(autouse=True)
def no_ca_bundle_override(monkeypatch):
    # REQUESTS_CA_BUNDLE (set machine-wide here) would override the CA the tests name themselves.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture(scope="module")
def provider(tmp_path_factory) -> Iterator[OidcProviderProcess]:
    with OidcProviderProcess(tmp_path_factory.mktemp("oidc")) as process:
        yield process


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("trino-path")
    passwords = directory / "password.db"
    passwords.write_text("".join(f"{u}:{hash_password(p, rounds=4)}\n" for u, p in PASSWORDS.items()))
    rules = directory / "rules.yaml"
    rules.write_text(ALICE_TO_ETL)
    ca = CertificateAuthority(directory / "pki")
    issued = ca.issue("gateway")
    return {"passwords": passwords, "rules": rules, "ca": ca.path, "cert": issued.certificate, "key": issued.key}


def config(sims: list[InProcessSim], files: dict[str, Path], provider: OidcProviderProcess | None, **auth: Any):
    data: dict[str, Any] = {
        **three_backends(sims),
        "routing_rules": {"enabled": True, "rules_file": str(files["rules"])},
    }
    if provider is not None:
        data["auth"] = {
            "password_file": str(files["passwords"]),
            "oidc": {"issuer": provider.issuer, "audience": CLIENT_ID, "keys_cooldown": 0},
            "roles": {"ADMIN": ["alice"]},
            **auth,
        }
    return data


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def forged_token(**claims: Any) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    return jwt.encode({"iat": now, "exp": now + 600, **claims}, key, algorithm="RS256")


def run(url: str, headers: dict[str, str], sims: list[InProcessSim], sql: str = "SELECT 1") -> tuple[str, list[str]]:
    """Submits ``sql`` with ``headers``, follows it to the end; its id and the clusters that ran it."""
    answer = requests.post(f"{url}/v1/statement", data=sql, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    document = answer.json()
    while "nextUri" in document:
        document = requests.get(document["nextUri"], headers=headers, timeout=30).json()
    assert document["stats"]["state"] == "FINISHED", document
    return document["id"], owner(sims, document["id"])


def test_a_forged_token_cannot_steer_a_rule_on_the_user(loop_thread: LoopThread, sims, files, provider):
    forged = forged_token(sub="alice", email="alice", iss=provider.issuer, aud=CLIENT_ID)
    genuine = provider.id_token("alice", email="alice")
    etl, adhoc = ["trino-3"], (["trino-1"], ["trino-2"])

    # The control: a gateway told to trust unverified tokens is steered by the forged one.
    trusting = config(sims, files, None)
    trusting["routing_rules"]["trust_unverified_jwt"] = True
    with InProcessGateway(loop_thread, trusting) as gateway:
        assert run(gateway.url, {"Authorization": f"Bearer {forged}"}, sims)[1] == etl

    # By default nothing unverified names a user; with auth configured, the verified user counts.
    with InProcessGateway(loop_thread, config(sims, files, None)) as gateway:
        assert run(gateway.url, {"Authorization": f"Bearer {forged}"}, sims)[1] in adhoc
    with InProcessGateway(loop_thread, config(sims, files, provider)) as gateway:
        url = gateway.url
        assert run(url, {"Authorization": f"Bearer {forged}"}, sims)[1] in adhoc
        assert run(url, {"Authorization": f"Bearer {forged}", "X-Trino-User": "bob"}, sims)[1] in adhoc
        assert run(url, {"Authorization": f"Bearer {genuine}", "X-Trino-User": "alice"}, sims)[1] == etl
        # Verified bob claiming to be alice in the header is bob; refused credentials name nobody.
        assert run(url, {"Authorization": basic("bob", PASSWORDS["bob"]), "X-Trino-User": "alice"}, sims)[1] in adhoc
        assert run(url, {"Authorization": basic("alice", "guess"), "X-Trino-User": "alice"}, sims)[1] in adhoc
        assert run(url, {"Authorization": basic("alice", PASSWORDS["alice"])}, sims)[1] == etl
        # No credentials at all: the header names the user, as trinodb/trino-gateway reads it.
        assert run(url, {"X-Trino-User": "alice"}, sims)[1] == etl
        # Pass-through: the backend got the Authorization header as the client sent it.
        query_id, ran_on = run(url, {"Authorization": f"Bearer {genuine}"}, sims)
        sim = next(s for s in sims if s.name == ran_on[0])
        recorded = sim.query(query_id)["requests"][0]["headers"]
        assert recorded["Authorization-SHA256"] == hashlib.sha256(f"Bearer {genuine}".encode()).hexdigest()
        # Refused pass-through credentials do not count as failed logins: the admin API still
        # takes alice after many of them.
        for _ in range(40):
            requests.post(
                f"{url}/v1/statement", data="SELECT 1", headers={"Authorization": basic("x", "y")}, timeout=30
            )
        assert requests.get(
            f"{url}/gateway/backend/all", headers={"Authorization": basic("alice", PASSWORDS["alice"])}, timeout=15
        ).ok


@pytest.fixture
def enforcing(loop_thread: LoopThread, sims, files, provider) -> Iterator[InProcessGateway]:
    """An HTTPS gateway that authenticates Trino clients itself."""
    tls = (files["cert"], files["key"], files["ca"])
    gateway = InProcessGateway(loop_thread, config(sims, files, provider, trino_path=True), tls=tls).start()
    yield gateway
    gateway.stop()


def _queries_seen(sims: list[InProcessSim]) -> int:
    return sum(len(s.queries()) for s in sims)


@pytest.fixture
def connect(enforcing, files) -> Iterator[Any]:
    """Connections of the Python client to the enforcing gateway, closed after the test (an open
    TLS connection would hold up the gateway's shutdown)."""
    opened: list[trino.dbapi.Connection] = []

    def open_one(**options: Any) -> trino.dbapi.Connection:
        connection = trino.dbapi.connect(
            host=enforcing.url,
            user=options.pop("user", "alice"),
            verify=str(files["ca"]),
            request_timeout=30,
            **options,
        )
        opened.append(connection)
        return connection

    yield open_one
    for connection in opened:
        connection.close()


def test_the_gateway_authenticates_trino_clients_before_any_backend_sees_the_query(
    enforcing, connect, sims, files, provider
):
    seen = _queries_seen(sims)
    refused = {
        "no credentials": {},
        "a wrong password": {"auth": trino.auth.BasicAuthentication("alice", "guess")},
        "an unknown user": {"auth": trino.auth.BasicAuthentication("mallory", "guess"), "user": "mallory"},
        "a forged token": {"auth": trino.auth.JWTAuthentication(forged_token(sub="alice", iss=provider.issuer))},
    }
    for what, options in refused.items():
        cursor = connect(**options).cursor()
        with pytest.raises(trino.exceptions.HttpError, match="401") as error:
            cursor.execute("SELECT 1")
        assert "Unauthorized" in str(error.value) or "Invalid credentials" in str(error.value), what
    assert _queries_seen(sims) == seen

    plain = requests.Session()
    plain.verify = str(files["ca"])
    answer = plain.post(f"{enforcing.url}/v1/statement", data="SELECT 1", timeout=15)
    assert answer.status_code == 401 and answer.text == "Unauthorized"
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert answer.raw.headers.getlist("WWW-Authenticate") == ['Basic realm="Trino"', 'Bearer realm="Trino"']

    by_password = connect(auth=trino.auth.BasicAuthentication("alice", PASSWORDS["alice"])).cursor()
    by_password.execute("SELECT count(*) FROM tpch.tiny.nation")
    assert by_password.fetchall() == [[25]]
    token = trino.auth.JWTAuthentication(provider.id_token("bob"))
    by_token = connect(auth=token, user="bob").cursor()
    by_token.execute("SELECT 2")
    assert by_token.fetchall() == [[2]]
    assert _queries_seen(sims) == seen + 2
    # The rule sees the verified user: alice's query ran on etl.
    assert by_password.query_id in {q["queryId"] for q in next(s for s in sims if s.name == "trino-3").queries()}
    # Trino's public resources stay open: /v1/info, and the nextUri chain (its slug is the capability).
    assert plain.get(f"{enforcing.url}/v1/info", timeout=15).status_code == 200
    assert plain.get(f"{enforcing.url}/v1/query", timeout=15).status_code == 401
    plain.close()


def test_the_trino_cli_authenticates_with_a_password_through_the_gateway(enforcing, files, trino_cli, monkeypatch):
    monkeypatch.setenv("TRINO_PASSWORD", PASSWORDS["cli-user"])
    ca = str(files["ca"])
    done = trino_cli(enforcing.url, "SELECT 42", "--password", "--truststore-path", ca)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '"42"'
    monkeypatch.setenv("TRINO_PASSWORD", "guess")
    refused = trino_cli(enforcing.url, "SELECT 42", "--password", "--truststore-path", ca)
    assert refused.returncode != 0
    assert "Invalid credentials" in refused.stderr or "401" in refused.stderr, refused.stderr
