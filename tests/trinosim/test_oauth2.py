"""OAuth2 external authentication against a real OpenID provider (``oidc-provider-mock``), proven
with the official clients: the Python client's ``OAuth2Authentication`` and the Trino CLI 446's
``--external-authentication``. The browser is a script: it follows the login URL to the provider's
form, logs in as a subject, and follows the provider back to trinosim's callback."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
import oidc_provider_mock
import pytest
import requests
import trino
from cryptography.hazmat.primitives.asymmetric import rsa
from trino.exceptions import TrinoAuthError

from tests.certs import CertificateAuthority, Issued
from tests.external_login import ScriptedBrowser, cli_with_external_login
from trinosim import TrinoSimProcess, oauth2
from trinosim.inprocess import InProcessSim

CHALLENGE = re.compile(r'^Bearer x_redirect_server="(?P<redirect>[^"]+)", x_token_server="(?P<token>[^"]+)"$')


@pytest.fixture(autouse=True)
def no_ca_bundle_override(monkeypatch):
    # REQUESTS_CA_BUNDLE (set machine-wide here) would override the CA the tests name themselves.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> tuple[CertificateAuthority, Issued]:
    """Trino only authenticates over HTTPS, and its clients only send credentials there."""
    ca = CertificateAuthority(tmp_path_factory.mktemp("oauth2-pki"))
    return ca, ca.issue("trinosim")


def _provider(**options: Any) -> Iterator[str]:
    with oidc_provider_mock.run_server_in_thread(**options) as server:
        issuer = f"http://localhost:{server.server_port}"
        for sub in ("alice", "cli-user"):
            requests.put(f"{issuer}/users/{sub}", json={"email": f"{sub}@example.com"}, timeout=10).raise_for_status()
        yield issuer


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    """A running OpenID provider; its issuer URL."""
    yield from _provider()


@pytest.fixture(scope="module")
def expired_issuer() -> Iterator[str]:
    """A provider whose tokens expired three minutes before they were issued (beyond Trino's
    one-minute clock skew)."""
    yield from _provider(access_token_max_age=dt.timedelta(minutes=-3))


@pytest.fixture
def oauth_sim(make_sim, pki, issuer) -> Callable[..., InProcessSim]:
    """An HTTPS trinosim authenticating with ``issuer``; keywords are more trinosim options."""
    ca, issued = pki

    def start(**options: Any) -> InProcessSim:
        options.setdefault("oauth2_issuer", issuer)
        server = make_sim(tls_cert=str(issued.certificate), tls_key=str(issued.key), **options)
        server.admin_tls = ssl.create_default_context(cafile=str(ca.path))
        return server

    return start


def _client(
    server: InProcessSim | TrinoSimProcess, ca: Path, browser: ScriptedBrowser, **options: Any
) -> trino.dbapi.Connection:
    return trino.dbapi.connect(
        host="localhost",
        port=server.port,
        http_scheme="https",
        verify=str(ca),
        auth=trino.auth.OAuth2Authentication(redirect_auth_url_handler=browser),
        request_timeout=30,
        **options,
    )


def _query(connection: trino.dbapi.Connection, sql: str) -> list[list[Any]]:
    cursor = connection.cursor()
    cursor.execute(sql)
    return cursor.fetchall()


def _post(server: InProcessSim, ca: Path, token: str | None = None, **headers: str) -> requests.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(
        f"https://localhost:{server.port}/v1/statement", data=b"SELECT 1", headers=headers, verify=str(ca), timeout=10
    )


def _challenge(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 401, response.text
    match = CHALLENGE.match(response.headers["WWW-Authenticate"])
    assert match, response.headers["WWW-Authenticate"]
    return match.groupdict()


def _provider_tokens(issuer: str, client_id: str, sub: str = "alice") -> dict[str, Any]:
    """Tokens the provider issues to ``client_id`` for ``sub``: the code flow, done by hand."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": "https://localhost/elsewhere",
        "scope": "openid",
        "state": "s",
        "nonce": "n",
    }
    login = requests.post(
        f"{issuer}/oauth2/authorize", params=params, data={"sub": sub}, allow_redirects=False, timeout=10
    )
    code = parse_qs(urlparse(login.headers["Location"]).query)["code"][0]
    response = requests.post(
        f"{issuer}/oauth2/token",
        auth=(client_id, "secret"),
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": params["redirect_uri"]},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


# -- the Python client, end to end -----------------------------------------------------------------------


def test_python_client_logs_in_through_the_provider_and_the_query_runs_as_the_subject(oauth_sim, pki):
    ca = pki[0].path
    server = oauth_sim()
    browser = ScriptedBrowser(ca, sub="alice")
    with _client(server, ca, browser) as connection:
        assert _query(connection, "SELECT 42, current_user") == [[42, "alice"]]
        # The token is kept by the client and accepted again: no second login.
        assert _query(connection, "SELECT count(*) FROM tpch.tiny.region") == [[5]]
    browser.join()
    assert len(browser.urls) == 1
    assert browser.urls[0].startswith(f"https://localhost:{server.port}/oauth2/token/initiate/")
    # trinosim sent the browser to the provider's authorization endpoint as Trino does.
    form = urlparse(browser.forms[0])
    login = parse_qs(form.query)
    assert form.path == "/oauth2/authorize"
    assert login["response_type"] == ["code"]
    assert login["client_id"] == ["trinosim"]
    assert login["scope"] == ["openid"]
    assert login["redirect_uri"] == [f"https://localhost:{server.port}/oauth2/callback"]
    assert re.fullmatch(r"[0-9a-f]{64}", login["nonce"][0])  # the hash of the nonce in the browser's cookie
    assert (
        jwt.decode(login["state"][0], options={"verify_signature": False})["handler_state"]
        == (browser.urls[0].rsplit("/", 1)[1])
    )
    assert browser.pages[0].status_code == 200
    assert "Authentication successful" in browser.pages[0].text
    assert [query["session"]["user"] for query in server.queries()] == ["alice", "alice"]


def test_python_client_against_a_trinosim_process(sim_factory, pki, issuer):
    ca, issued = pki
    server = sim_factory(tls_cert=str(issued.certificate), tls_key=str(issued.key), oauth2_issuer=issuer)
    server.admin_tls = ssl.create_default_context(cafile=str(ca.path))
    browser = ScriptedBrowser(ca.path, sub="alice")
    with _client(server, ca.path, browser) as connection:
        assert _query(connection, "SELECT name FROM tpch.tiny.nation WHERE nationkey = 7") == [["GERMANY"]]
    browser.join()
    assert [query["session"]["user"] for query in server.queries()] == ["alice"]


def test_a_token_the_provider_revoked_is_challenged_and_the_client_logs_in_again(oauth_sim, pki, issuer):
    ca = pki[0].path
    server = oauth_sim()
    browser = ScriptedBrowser(ca, sub="cli-user")
    with _client(server, ca, browser) as connection:
        assert _query(connection, "SELECT current_user") == [["cli-user"]]
        # Access tokens are checked at the userinfo endpoint on every authenticated request.
        requests.post(f"{issuer}/users/cli-user/revoke-tokens", timeout=10).raise_for_status()
        assert _query(connection, "SELECT current_user") == [["cli-user"]]
    browser.join()
    assert len(browser.urls) == 2


def test_an_expired_id_token_fails_the_login(oauth_sim, pki, expired_issuer, caplog):
    ca = pki[0].path
    server = oauth_sim(oauth2_issuer=expired_issuer)
    browser = ScriptedBrowser(ca)
    with _client(server, ca, browser) as connection, pytest.raises(TrinoAuthError, match="could not be verified"):
        _query(connection, "SELECT 1")
    browser.join()
    assert browser.pages[0].status_code == 400
    assert "Signature has expired" in caplog.text
    assert server.queries() == []


def test_principal_field_names_the_user(oauth_sim, pki, issuer):
    ca = pki[0].path
    # Claims outside OpenID's standard ones come with every scope, at userinfo and in the ID token.
    requests.put(f"{issuer}/users/u-123", json={"username": "bob"}, timeout=10).raise_for_status()
    server = oauth_sim(oauth2_principal_field="username")
    browser = ScriptedBrowser(ca, sub="u-123")
    with _client(server, ca, browser) as connection:
        assert _query(connection, "SELECT current_user") == [["bob"]]
    browser.join()


# -- the protocol, request by request --------------------------------------------------------------------


def test_challenge_names_the_initiate_and_token_uris_of_one_auth_id(oauth_sim, pki):
    ca = pki[0].path
    server = oauth_sim()
    response = _post(server, ca)
    assert response.text == "Unauthorized"
    uris = _challenge(response)
    auth_id = uris["token"].removeprefix(f"https://localhost:{server.port}/oauth2/token/")
    assert str(uuid.UUID(auth_id)) == auth_id
    assert uris["redirect"] == (
        f"https://localhost:{server.port}/oauth2/token/initiate/{hashlib.sha256(auth_id.encode()).hexdigest()}"
    )
    # Every challenge is a new auth id.
    assert _challenge(_post(server, ca))["token"] != uris["token"]
    # What Trino leaves public stays public: server information, and trinosim's own endpoints.
    assert requests.get(f"https://localhost:{server.port}/v1/info", verify=str(ca), timeout=10).status_code == 200
    assert server.queries() == []


def test_the_next_uri_chain_is_public_as_on_trino(oauth_sim, pki, issuer):
    ca = pki[0].path
    server = oauth_sim(oauth2_no_userinfo=True)
    token = _provider_tokens(issuer, "trinosim")["id_token"]
    first = _post(server, ca, token)
    assert first.status_code == 200, first.text
    page = first.json()
    rows = []
    deadline = time.monotonic() + 30
    while "nextUri" in page and time.monotonic() < deadline:
        # No Authorization: the slug in each nextUri is the capability.
        response = requests.get(page["nextUri"], verify=str(ca), timeout=10)
        assert response.status_code == 200
        page = response.json()
        rows += page.get("data", [])
    assert page["stats"]["state"] == "FINISHED"
    assert rows == [[1]]


def test_forwarded_https_is_challenged_with_the_forwarded_address(make_sim, issuer):
    server = make_sim(oauth2_issuer=issuer)
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "gateway.example:8443", "X-Trino-User": "x"}
    response = requests.post(f"{server.url}/v1/statement", data=b"SELECT 1", headers=forwarded, timeout=10)
    uris = _challenge(response)
    assert uris["redirect"].startswith("https://gateway.example:8443/oauth2/token/initiate/")
    assert uris["token"].startswith("https://gateway.example:8443/oauth2/token/")
    # Plain HTTP is not authenticated, as on Trino (http-server.authentication.allow-insecure-over-http).
    plain = requests.post(f"{server.url}/v1/statement", data=b"SELECT 1", headers={"X-Trino-User": "x"}, timeout=10)
    assert plain.status_code == 200


def test_forwarded_headers_ignored_means_plain_http(make_sim, issuer):
    server = make_sim(oauth2_issuer=issuer, forwarded="ignore")
    headers = {"X-Forwarded-Proto": "https", "X-Trino-User": "x"}
    response = requests.post(f"{server.url}/v1/statement", data=b"SELECT 1", headers=headers, timeout=10)
    assert response.status_code == 200


@pytest.mark.parametrize("userinfo", [True, False], ids=["userinfo", "jwt"])
def test_garbage_and_forged_tokens_are_challenged(oauth_sim, pki, issuer, userinfo, caplog):
    ca = pki[0].path
    caplog.set_level(logging.INFO, logger="trinosim.oauth2")
    server = oauth_sim(oauth2_no_userinfo=not userinfo)
    now = int(time.time())
    claims = {"iss": issuer, "aud": "trinosim", "sub": "mallory", "iat": now, "exp": now + 3600}
    provider_key_id = requests.get(f"{issuer}/jwks", timeout=10).json()["keys"][0]["kid"]
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": provider_key_id})
    unsigned = jwt.encode(claims, None, algorithm="none")
    for token in ("garbage", forged, unsigned, forged + "x"):
        response = _post(server, ca, token)
        _challenge(response)
        assert response.text == "Invalid credentials"
    if not userinfo:
        assert "Signature verification failed" in caplog.text
        assert "algorithm 'none' is not accepted" in caplog.text
    # Not a bearer token at all: the same challenge as no credentials.
    assert _post(server, ca, Authorization="Basic YWxpY2U6c2VjcmV0").status_code == 401
    assert server.queries() == []


def test_jwt_access_tokens_are_checked_for_signature_audience_and_expiry(
    oauth_sim, pki, issuer, expired_issuer, caplog
):
    """With the userinfo endpoint off (Trino's ``oidc.use-userinfo-endpoint=false``) a bearer token
    must be a JWT of the provider for trinosim's client id. The provider's ID tokens are such JWTs."""
    ca = pki[0].path
    caplog.set_level(logging.INFO, logger="trinosim.oauth2")
    server = oauth_sim(oauth2_no_userinfo=True)
    good = _provider_tokens(issuer, "trinosim", sub="alice")["id_token"]
    assert _post(server, ca, good).status_code == 200
    assert server.queries()[0]["session"]["user"] == "alice"
    # Signed by the provider, but for another client.
    other_audience = _provider_tokens(issuer, "someone-else", sub="alice")["id_token"]
    assert jwt.decode(other_audience, options={"verify_signature": False})["aud"] == ["someone-else"]
    assert _post(server, ca, other_audience).text == "Invalid credentials"
    assert "audience ['someone-else'] is not trinosim" in caplog.text
    # The provider's opaque access tokens are no JWTs: refused here, as Trino refuses them.
    opaque = _provider_tokens(issuer, "trinosim", sub="alice")["access_token"]
    assert _post(server, ca, opaque).status_code == 401
    # Signed by the right provider for the right client, but expired.
    expired_server = oauth_sim(oauth2_issuer=expired_issuer, oauth2_no_userinfo=True)
    expired = _provider_tokens(expired_issuer, "trinosim", sub="alice")["id_token"]
    assert jwt.decode(expired, options={"verify_signature": False})["exp"] < time.time() - 120
    assert _post(expired_server, ca, expired).text == "Invalid credentials"
    assert "Signature has expired" in caplog.text
    assert len(server.queries()) == 1
    assert expired_server.queries() == []


def test_x_trino_user_names_the_session_user_when_sent(oauth_sim, pki, issuer):
    """Trino's default access control would refuse a user other than the authenticated one (no
    impersonation); trinosim lets it through, as Trino's allow-all access control does."""
    ca = pki[0].path
    server = oauth_sim(oauth2_no_userinfo=True)
    token = _provider_tokens(issuer, "trinosim", sub="alice")["id_token"]
    assert _post(server, ca, token).status_code == 200
    assert _post(server, ca, token, **{"X-Trino-User": "named"}).status_code == 200
    assert [query["session"]["user"] for query in server.queries()] == ["alice", "named"]


def test_the_provider_denying_the_login_reaches_the_polling_client(oauth_sim, pki):
    ca = pki[0].path
    server = oauth_sim()
    uris = _challenge(_post(server, ca))
    login = requests.get(uris["redirect"], verify=str(ca), allow_redirects=False, timeout=10)
    assert login.status_code == 303
    state = parse_qs(urlparse(login.headers["Location"]).query)["state"][0]
    # What a provider sends the browser back with when the person refuses (RFC 6749, 4.1.2.1). The
    # mock provider leaves the state out of its refusal, so the test's browser brings it itself.
    refused = requests.get(
        f"https://localhost:{server.port}/oauth2/callback",
        params={"error": "access_denied", "error_description": "no", "state": state},
        verify=str(ca),
        timeout=10,
    )
    assert refused.status_code == 200
    assert "OAuth2 server denied the login" in refused.text
    error = requests.get(uris["token"], verify=str(ca), timeout=15).json()["error"]
    assert error.startswith("Authentication response could not be verified: error=access_denied")


def test_token_poll_is_held_then_names_itself_again(oauth_sim, pki, monkeypatch):
    ca = pki[0].path
    monkeypatch.setattr(oauth2, "MAX_POLL_TIME", 0.3)
    server = oauth_sim()
    token_uri = _challenge(_post(server, ca))["token"]
    began = time.monotonic()
    response = requests.get(token_uri, verify=str(ca), timeout=10)
    assert response.json() == {"nextUri": token_uri}
    assert time.monotonic() - began >= 0.3
    # The client gives up: later polls learn so.
    assert requests.delete(token_uri, verify=str(ca), timeout=10).status_code == 200
    assert requests.get(token_uri, verify=str(ca), timeout=10).json() == {
        "error": "Authentication has been finished by the client"
    }
    assert requests.get(f"https://localhost:{server.port}/oauth2/token/not-a-uuid", verify=str(ca)).status_code == 404


def test_a_login_not_finished_in_time_fails(oauth_sim, pki):
    ca = pki[0].path
    server = oauth_sim(oauth2_challenge_timeout="1s")
    token_uri = _challenge(_post(server, ca))["token"]
    began = time.monotonic()
    assert requests.get(token_uri, verify=str(ca), timeout=10).json() == {"error": "Authentication has timed out"}
    assert time.monotonic() - began < 5


def test_callback_refuses_a_forged_state_and_a_browser_without_the_nonce_cookie(oauth_sim, pki):
    ca = pki[0].path
    server = oauth_sim()
    base = f"https://localhost:{server.port}"
    forged = requests.get(f"{base}/oauth2/callback?code=c&state=not-a-jwt", verify=str(ca), timeout=10)
    assert forged.status_code == 400
    uris = _challenge(_post(server, ca))
    with requests.Session() as browser:
        browser.verify = str(ca)
        form = browser.get(uris["redirect"], timeout=10)
        assert oauth2.NONCE_COOKIE in browser.cookies
        # The login finishes in another browser than the one that started it: no nonce cookie.
        browser.cookies.clear()
        done = browser.post(form.url, data={"sub": "alice"}, timeout=10)
    assert done.status_code == 400
    poll = requests.get(uris["token"], verify=str(ca), timeout=15).json()
    assert poll["error"].startswith("Authentication response could not be verified")


# -- the Trino CLI ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_trino_cli_external_authentication(oauth_sim, pki):
    """The CLI prints the login URL (redirect handler PRINT) and polls; the test's browser logs in."""
    ca = pki[0].path
    server = oauth_sim()
    browser = ScriptedBrowser(ca, sub="cli-user")
    returncode, stdout, stderr = cli_with_external_login(
        f"https://localhost:{server.port}", ca, browser, "SELECT 42, current_user"
    )
    browser.join()
    assert returncode == 0, "".join(stderr)
    assert "External authentication required. Please go to:\n" in stdout
    assert stdout[-1] == '"42","cli-user"\n'
    assert [query["session"]["user"] for query in server.queries()] == ["cli-user"]
