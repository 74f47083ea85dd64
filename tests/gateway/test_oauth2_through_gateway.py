"""Trino's OAuth2 external authentication through the gateway, with two backends that each
challenge: the login and token URIs of a challenge are put on the gateway and marked with the
backend that issued it, the provider's redirect back to ``/oauth2/callback`` follows the browser's
cookie to the same backend, and the client's queries then run with its token, wherever they are
routed. The clients are the real ones: the Python client's ``OAuth2Authentication`` and the Trino
CLI 446's ``--external-authentication``, with a scripted browser."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import trino

from tests.certs import CertificateAuthority
from tests.external_login import ScriptedBrowser, cli_with_external_login
from tests.inprocess import InProcessGateway
from tests.oidc_provider import OidcProviderProcess
from trinosim.inprocess import LoopThread

pytestmark = pytest.mark.slow

BACKEND_PARAM = "trino_gateway_backend"


@pytest.fixture(autouse=True)
def no_ca_bundle_override(monkeypatch):
    # REQUESTS_CA_BUNDLE (set machine-wide here) would override the CA the tests name themselves.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture(scope="module")
def provider(tmp_path_factory) -> Iterator[OidcProviderProcess]:
    with OidcProviderProcess(tmp_path_factory.mktemp("oidc")) as process:
        for sub in ("alice", "cli-user"):
            process.set_user(sub, email=f"{sub}@example.org")
        yield process


@pytest.fixture
def oauth_gateway(
    loop_thread: LoopThread, make_sim, provider, tmp_path
) -> Iterator[tuple[InProcessGateway, list, str]]:
    """An HTTPS gateway, round robin over two backends that authenticate with OAuth2 (they see
    HTTPS in the forwarded headers: Trino's http-server.process-forwarded)."""
    backends = [make_sim(name=f"oauth-{n}", oauth2_issuer=provider.issuer) for n in (1, 2)]
    ca = CertificateAuthority(tmp_path / "pki")
    issued = ca.issue("gateway")
    config = {
        "routing": {"router": "round-robin"},
        "backends": [{"name": b.name, "proxy_to": b.url, "routing_group": "adhoc"} for b in backends],
    }
    gateway = InProcessGateway(loop_thread, config, tls=(issued.certificate, issued.key, ca.path)).start()
    yield gateway, backends, str(ca.path)
    gateway.stop()


def test_python_clients_log_in_through_the_gateway_with_either_backend_challenging(oauth_gateway):
    gateway, backends, ca = oauth_gateway
    browsers = []
    for _ in range(4):
        # Each client logs in afresh (its token is kept by its authentication object).
        browser = ScriptedBrowser(ca, sub="alice")
        browsers.append(browser)
        auth = trino.auth.OAuth2Authentication(redirect_auth_url_handler=browser)
        with trino.dbapi.connect(host=gateway.url, verify=ca, auth=auth, request_timeout=30) as connection:
            cursor = connection.cursor()
            cursor.execute("SELECT 42, current_user")
            assert cursor.fetchall() == [[42, "alice"]]
            # The token is kept and accepted by whichever backend the next query goes to.
            cursor.execute("SELECT count(*) FROM tpch.tiny.region")
            assert cursor.fetchall() == [[5]]
        browser.join()
    issuers = []
    for browser in browsers:
        assert len(browser.urls) == 1
        login = urlsplit(browser.urls[0])
        # The login URL the client showed is the gateway's, marked with the backend that challenged.
        assert f"{login.scheme}://{login.netloc}" == gateway.url
        assert login.path.startswith("/oauth2/token/initiate/")
        issuers += parse_qs(login.query)[BACKEND_PARAM]
        assert browser.pages[0].status_code == 200 and "Authentication successful" in browser.pages[0].text
        # The provider sent the browser back to the gateway's callback.
        assert browser.pages[0].url.startswith(f"{gateway.url}/oauth2/callback?")
    # Round robin: both backends issued challenges, and each login completed on its issuer.
    assert sorted(issuers) == ["oauth-1", "oauth-1", "oauth-2", "oauth-2"]
    users = [q["session"]["user"] for b in backends for q in b.queries()]
    assert users == ["alice"] * 8


def test_the_trino_cli_logs_in_through_the_gateway(oauth_gateway):
    gateway, _, ca = oauth_gateway
    browser = ScriptedBrowser(ca, sub="cli-user")
    returncode, stdout, stderr = cli_with_external_login(gateway.url, ca, browser, "SELECT 42, current_user")
    browser.join()
    assert returncode == 0, "".join(stderr)
    assert "External authentication required. Please go to:\n" in stdout
    assert stdout[-1] == '"42","cli-user"\n'
    assert any(line.startswith(f"{gateway.url}/oauth2/token/initiate/") for line in stdout)


def test_the_challenge_and_the_login_steps_reach_the_issuing_backend(oauth_gateway):
    gateway, _, ca = oauth_gateway
    client = requests.Session()
    client.verify = ca
    challenges = [client.post(f"{gateway.url}/v1/statement", data="SELECT 1", timeout=15) for _ in range(2)]
    for answer in challenges:
        assert answer.status_code == 401
        value = answer.headers["WWW-Authenticate"]
        assert value.startswith('Bearer x_redirect_server="' + gateway.url + "/oauth2/token/initiate/")
        assert f'x_token_server="{gateway.url}/oauth2/token/' in value
    token_uris = [a.headers["WWW-Authenticate"].split('x_token_server="')[1].rstrip('"') for a in challenges]
    # A token poll reaches the backend that knows the login (without the marker, a backend that does
    # not know it answers 404 or the poll waits on nothing).
    for uri in token_uris:
        held = client.get(uri, timeout=30)
        assert held.status_code == 200 and held.json()["nextUri"] == uri.split("?")[0]
    # The first step of the browser's login: the issuing backend sends it to the provider, and the
    # gateway names that backend in a cookie for the way back.
    redirect = challenges[0].headers["WWW-Authenticate"].split('x_redirect_server="')[1].split('"')[0]
    issuer = parse_qs(urlsplit(redirect).query)[BACKEND_PARAM][0]
    first = client.get(redirect, allow_redirects=False, timeout=15)
    assert first.status_code == 303
    cookie = next(c for c in first.cookies if c.name == "trino_gateway_oauth2_backend")
    assert cookie.value == issuer and cookie.path == "/oauth2/callback" and cookie.secure
    assert cookie.has_nonstandard_attr("HttpOnly")
    # A callback whose cookie names no backend, or one that does not exist, is routed as any other
    # request: the backend it reaches refuses the login it does not know (400), nothing breaks.
    for value in ("no-such-backend", "x" * 300):
        stray = requests.get(
            f"{gateway.url}/oauth2/callback?code=c&state=s",
            cookies={"trino_gateway_oauth2_backend": value},
            verify=ca,
            timeout=15,
        )
        assert stray.status_code == 400
    client.close()
