"""Authentication and roles on the gateway's own API, against real servers: a password file (bcrypt
and PBKDF2, Trino's password.db format), OpenLDAP (Debian's slapd) and an OpenID Connect provider
process (oidc-provider-mock). Each method with each role: what the role may do succeeds, the rest
answers 401/403 and the store is unchanged; forged, expired and foreign tokens are refused; a rotated
signing key is picked up; failed logins are limited; the UI session is a signed cookie whose
state-changing requests need the CSRF token; and the audit trail lists every change made here,
with the user who made it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.auth.password_file import PasswordFile, hash_password, pbkdf2_hash
from tests.gateway.conftest import every_store, three_backends
from tests.inprocess import InProcessGateway
from tests.ldap_server import LdapServer
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, OidcProviderProcess
from trinosim.inprocess import InProcessSim, LoopThread

pytestmark = pytest.mark.slow

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "robot": "robot-pw", "mallory": "mallory-pw"}
LDAP_USERS = {"carol": "carol-pw", "dave": "dave-pw", "erin": "erin-pw"}
LDAP_GROUPS = {"gw-admins": ["carol"], "gw-users": ["dave"], "gw-robots": ["erin"]}
OIDC_USERS = {"oidc-admin": ["oidc-admins"], "oidc-user": [], "oidc-robot": []}
ROLES = {
    "ADMIN": ["alice", "group:gw-admins", "group:oidc-admins"],
    "USER": ["bob", "group:gw-users", "oidc-user"],
    "API": ["robot", "group:gw-robots", "oidc-robot"],
}
# Who logs in with each method in each role.
CALLERS = {
    ("password", "ADMIN"): "alice",
    ("password", "USER"): "bob",
    ("password", "API"): "robot",
    ("ldap", "ADMIN"): "carol",
    ("ldap", "USER"): "dave",
    ("ldap", "API"): "erin",
    ("oidc", "ADMIN"): "oidc-admin",
    ("oidc", "USER"): "oidc-user",
    ("oidc", "API"): "oidc-robot",
}


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    # robot's line is PBKDF2, Trino's other password.db format; the rest bcrypt.
    lines = ["# user:hash, as Trino's password.db"]
    for user, password in users.items():
        lines.append(f"{user}:{pbkdf2_hash(password) if user == 'robot' else hash_password(password, rounds=4)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def ldap() -> Iterator[LdapServer]:
    with LdapServer(users=LDAP_USERS, groups=LDAP_GROUPS) as server:
        yield server


@pytest.fixture(scope="module")
def provider(tmp_path_factory) -> Iterator[OidcProviderProcess]:
    with OidcProviderProcess(tmp_path_factory.mktemp("oidc")) as process:
        yield process


def auth_config(password_file: Path, ldap: LdapServer, provider: OidcProviderProcess, **more: Any) -> dict:
    return {
        "password_file": str(password_file),
        "ldap": {
            "url": ldap.url,
            "user_dn": f"uid={{user}},{ldap.people_dn}",
            "group_base": ldap.groups_dn,
        },
        "oidc": {
            "issuer": provider.issuer,
            "audience": CLIENT_ID,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            # No wait between two reads of the keys: the tests rotate them at will.
            "keys_cooldown": 0,
        },
        "roles": ROLES,
        **more,
    }


@dataclass
class Secured:
    gateway: InProcessGateway
    provider: OidcProviderProcess
    # Every change made through the API in this module: (actor, action, target).
    changes: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.gateway.url

    def credentials(self, method: str, user: str) -> dict[str, str]:
        if method == "password":
            return basic(user, PASSWORDS[user])
        if method == "ldap":
            return basic(user, LDAP_USERS[user])
        return bearer(self.provider.id_token(user, groups=OIDC_USERS[user], email=f"{user}@example.org"))

    def backends(self) -> dict[str, dict[str, Any]]:
        """What the store holds, read behind the API's back."""
        listed = self.gateway.loop.run(self.gateway.services.store.list_backends())
        return {b.name: b.model_dump(mode="json", by_alias=True) for b in listed}

    def change(self, headers: dict[str, str], path: str, body: Any = None, actor: str | None = None) -> int:
        answer = requests.post(self.url + path, json=body, headers=headers, timeout=15)
        if answer.status_code == 200 and actor is not None:
            action = "backend." + re.sub(r"^/gateway/backend/(modify/)?(\w+).*", r"\2", path)
            target = body["name"] if isinstance(body, dict) else path.rsplit("/", 1)[1]
            self.changes.append((actor, action, target))
        return answer.status_code


@pytest.fixture(scope="module")
def secured(loop_thread: LoopThread, sims: list[InProcessSim], ldap, provider, tmp_path_factory) -> Iterator[Secured]:
    directory = tmp_path_factory.mktemp("secured")
    password_file = write_password_file(directory / "password.db", PASSWORDS)
    for sub, groups in OIDC_USERS.items():
        provider.set_user(sub, groups=groups)
    config = {**three_backends(sims), "auth": auth_config(password_file, ldap, provider)}
    gateway = InProcessGateway(loop_thread, config, f"sqlite:///{directory / 'gateway.db'}").start()
    yield Secured(gateway, provider)
    gateway.stop()


MAY_CHANGE = {"ADMIN": True, "USER": False, "API": True}


@pytest.mark.parametrize("method", ["password", "ldap", "oidc"])
@pytest.mark.parametrize("role", ["ADMIN", "USER", "API"])
def test_each_method_and_role_may_do_what_the_role_allows_and_nothing_more(secured: Secured, method, role):
    user = CALLERS[(method, role)]
    headers = secured.credentials(method, user)
    url = secured.url

    # Reading is every role's.
    listed = requests.get(f"{url}/gateway/backend/all", headers=headers, timeout=15)
    assert listed.status_code == 200, listed.text
    assert {b["name"] for b in listed.json()} >= {"trino-1", "trino-2", "trino-3"}
    assert requests.get(f"{url}/gateway/health", headers=headers, timeout=15).status_code == 200

    allowed = MAY_CHANGE[role]
    before = secured.backends()
    name = f"added-by-{user}"
    added = secured.change(
        headers,
        "/gateway/backend/modify/add",
        {"name": name, "proxyTo": "http://127.0.0.1:9", "routingGroup": "spare", "active": False},
        actor=user,
    )
    deactivated = secured.change(headers, "/gateway/backend/deactivate/trino-2", actor=user)
    audit = requests.get(f"{url}/gateway/audit", headers=headers, timeout=15)
    if allowed:
        assert (added, deactivated, audit.status_code) == (200, 200, 200)
        assert secured.backends()[name]["routingGroup"] == "spare"
        assert secured.backends()["trino-2"]["active"] is False
        assert secured.change(headers, "/gateway/backend/activate/trino-2", actor=user) == 200
        assert secured.change(headers, "/gateway/backend/modify/delete", {"name": name}, actor=user) == 200
    else:
        assert (added, deactivated, audit.status_code) == (403, 403, 403)
        assert secured.change(headers, "/gateway/backend/modify/delete", {"name": "trino-1"}) == 403
    assert secured.backends() == before


def test_without_credentials_or_with_wrong_ones_nothing_changes(secured: Secured):
    url = secured.url
    before = secured.backends()
    refused = {
        "none": {},
        "wrong password": basic("alice", "guess"),
        "unknown user": basic("nobody", "guess"),
        "LDAP user, wrong password": basic("carol", "guess"),
        "empty LDAP password (an anonymous bind)": basic("carol", ""),
        "not base64": {"Authorization": "Basic !!!"},
        "no colon": {"Authorization": "Basic " + base64.b64encode(b"alice").decode()},
        "another scheme": {"Authorization": "Digest username=alice"},
        "a bearer that is no JWT": bearer("not-a-token"),
    }
    for what, headers in refused.items():
        for method, path in (("GET", "/gateway/backend/all"), ("POST", "/gateway/backend/deactivate/trino-1")):
            answer = requests.request(method, url + path, headers=headers, timeout=15)
            assert answer.status_code == 401, (what, method, answer.text)
            assert answer.json()["error"] in ("authentication required", "the credentials were not accepted")
            challenges = answer.headers["WWW-Authenticate"]
            assert 'Basic realm="trino-gateway"' in challenges and 'Bearer realm="trino-gateway"' in challenges
    # Authenticated, but no role: may neither read nor change.
    mallory = basic("mallory", PASSWORDS["mallory"])
    assert requests.get(f"{url}/gateway/backend/all", headers=mallory, timeout=15).status_code == 403
    assert secured.change(mallory, "/gateway/backend/deactivate/trino-1") == 403
    assert secured.backends() == before
    # Liveness, readiness and metrics stay open.
    for path in ("/gateway/livez", "/gateway/readyz", "/metrics"):
        assert requests.get(url + path, timeout=15).status_code == 200, path


def _forge(claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers=header)


def test_forged_foreign_and_expired_tokens_are_refused(secured: Secured):
    provider, url = secured.provider, secured.url
    genuine = provider.id_token("oidc-admin", groups=["oidc-admins"])
    claims = jwt.decode(genuine, options={"verify_signature": False})
    kid = requests.get(f"{provider.issuer}/jwks", timeout=10).json()["keys"][0]["kid"]
    now = int(time.time())
    public_pem = (
        serialization.load_der_public_key(base64.b64decode(_public_der(provider)))
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    header, _, signature = genuine.split(".")
    tampered_claims = {**claims, "sub": "alice", "groups": ["oidc-admins", "more"]}
    tampered_payload = base64.urlsafe_b64encode(json.dumps(tampered_claims).encode()).rstrip(b"=").decode()
    tokens = {
        "signed by another key": _forge(claims),
        "signed by another key, naming the provider's key": _forge(claims, {"kid": kid}),
        "claims changed after signing": f"{header}.{tampered_payload}.{signature}",
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "HS256 keyed with the public key": _hs256_with(public_pem, claims),
        "another audience": provider.id_token("oidc-admin", client_id="someone-else"),
        "another issuer": _forge({**claims, "iss": "http://127.0.0.1:1"}),
        "no expiry": _forge({k: v for k, v in claims.items() if k != "exp"}),
    }
    for what, token in tokens.items():
        answer = requests.get(f"{url}/gateway/backend/all", headers=bearer(token), timeout=15)
        assert answer.status_code == 401, (what, answer.text)
    assert requests.get(f"{url}/gateway/backend/all", headers=bearer(genuine), timeout=15).status_code == 200

    # Expiry, judged with the configured clock skew (60 s): the provider is made to issue tokens that
    # expired before they were issued (a restart: a new key, which the gateway picks up).
    restart_provider(provider, token_max_age=-300)
    expired = provider.id_token("oidc-admin", groups=["oidc-admins"])
    assert jwt.decode(expired, options={"verify_signature": False})["exp"] < now
    assert requests.get(f"{url}/gateway/backend/all", headers=bearer(expired), timeout=15).status_code == 401
    assert "ExpiredSignatureError" in secured.gateway.log()
    restart_provider(provider, token_max_age=-20)
    within_skew = provider.id_token("oidc-admin", groups=["oidc-admins"])
    assert requests.get(f"{url}/gateway/backend/all", headers=bearer(within_skew), timeout=15).status_code == 200
    restart_provider(provider)


def test_a_rotated_signing_key_is_picked_up(secured: Secured):
    provider, url = secured.provider, secured.url
    first = provider.id_token("oidc-user")
    assert requests.get(f"{url}/gateway/backend/all", headers=bearer(first), timeout=15).status_code == 200
    unused_old = provider.id_token("oidc-user", email="another token of the old key")
    old_key = requests.get(f"{provider.issuer}/jwks", timeout=10).json()
    restart_provider(provider)
    assert requests.get(f"{provider.issuer}/jwks", timeout=10).json() != old_key
    rotated = provider.id_token("oidc-user")
    assert requests.get(f"{url}/gateway/backend/all", headers=bearer(rotated), timeout=15).status_code == 200
    # The old key is gone from the provider's set: a token it signed is no longer accepted.
    assert requests.get(f"{url}/gateway/backend/all", headers=bearer(unused_old), timeout=15).status_code == 401


def restart_provider(provider: OidcProviderProcess, token_max_age: int = 3600) -> None:
    """A new provider process on the same port (a new signing key), its users set again."""
    provider.restart(token_max_age=token_max_age)
    for sub, groups in OIDC_USERS.items():
        provider.set_user(sub, groups=groups)


def _public_der(provider: OidcProviderProcess) -> str:
    key = jwt.PyJWK(requests.get(f"{provider.issuer}/jwks", timeout=10).json()["keys"][0]).key
    return base64.b64encode(
        key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ).decode()


def _hs256_with(secret: str, claims: dict[str, Any]) -> str:
    """An HS256 token keyed with the provider's public key (the classic algorithm confusion), put
    together by hand: PyJWT refuses to sign with a PEM key as an HMAC secret, as it refuses to verify."""

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing_input = part(b'{"alg":"HS256","typ":"JWT"}') + "." + part(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


def test_failed_logins_are_limited_per_user_and_per_address(loop_thread, sims, ldap, provider, tmp_path):
    password_file = write_password_file(tmp_path / "password.db", PASSWORDS)
    auth = auth_config(password_file, ldap, provider, login_limit={"failures": 3, "address_failures": 5, "window": 600})
    gateway = InProcessGateway(loop_thread, {**three_backends(sims), "auth": auth}).start()
    try:
        url = f"{gateway.url}/gateway/backend/all"
        for _ in range(3):
            assert requests.get(url, headers=basic("bob", "guess"), timeout=15).status_code == 401
        # bob's right password no longer counts until the window moves on.
        limited = requests.get(url, headers=basic("bob", PASSWORDS["bob"]), timeout=15)
        assert limited.status_code == 429, limited.text
        assert 0 < int(limited.headers["Retry-After"]) <= 601
        assert "too many failed logins" in limited.json()["error"]
        # The same through the login form.
        form = _login_form(requests.Session(), gateway.url)
        assert form.post("bob", PASSWORDS["bob"]).status_code == 429
        # A guesser spraying names from one address is stopped too: five failures from the address,
        # each under another name, and then even alice's right password waits.
        gateway2 = InProcessGateway(loop_thread, {**three_backends(sims), "auth": auth}).start()
        try:
            url2 = f"{gateway2.url}/gateway/backend/all"
            for user in ("nobody", "somebody", "anybody", "everybody", "alice"):
                assert requests.get(url2, headers=basic(user, "guess"), timeout=15).status_code == 401
            assert requests.get(url2, headers=basic("alice", PASSWORDS["alice"]), timeout=15).status_code == 429
        finally:
            gateway2.stop()
    finally:
        gateway.stop()


def test_an_unknown_user_costs_a_password_check_as_a_known_one_does(tmp_path, monkeypatch):
    """No timing oracle on who exists: a wrong name runs the same bcrypt check as a wrong password.
    (The figures: ``bench/auth_timing.py``.)"""
    import bcrypt

    passwords = PasswordFile(str(write_password_file(tmp_path / "password.db", {"alice": "pw"})))
    checked: list[bytes] = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda secret, hashed: checked.append(hashed) or real(secret, hashed))
    assert passwords.check("alice", "wrong") is False
    assert passwords.check("nobody", "wrong") is None
    assert passwords.check("alice", "pw") is True
    assert len(checked) == 3
    # The stand-in hash has the work factor of the file's own (here 4): it costs what theirs cost.
    assert checked[1] != checked[0] and checked[1][:7] == checked[0][:7] == b"$2b$04$"


class _login_form:
    """The UI's login page, as a browser uses it: the form's CSRF token, then the post."""

    def __init__(self, session: requests.Session, url: str) -> None:
        self.session, self.url = session, url
        page = session.get(f"{url}/gateway/login", timeout=15)
        assert page.status_code == 200
        self.token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)

    def post(self, user: str, password: str, token: str | None = None) -> requests.Response:
        data = {"username": user, "password": password, "csrf_token": self.token if token is None else token}
        return self.session.post(f"{self.url}/gateway/login", data=data, allow_redirects=False, timeout=15)


def test_ui_session_is_a_signed_cookie_and_changes_need_its_csrf_token(secured: Secured):
    url = secured.url
    browser = requests.Session()
    form = _login_form(browser, url)
    assert form.post("alice", PASSWORDS["alice"], token="forged").status_code == 403
    assert form.post("alice", "guess").status_code == 401
    logged_in = form.post("alice", PASSWORDS["alice"])
    assert logged_in.status_code == 302
    cookie = logged_in.headers["Set-Cookie"]
    assert cookie.startswith("trino_gateway_session=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the HTTPS test for Secure
    who = browser.get(f"{url}/gateway/session", timeout=15).json()
    assert (who["user"], who["roles"]) == ("alice", ["ADMIN"])
    # The cookie alone (what a forged cross-site form would carry) changes nothing.
    before = secured.backends()
    assert browser.post(f"{url}/gateway/backend/deactivate/trino-1", timeout=15).status_code == 403
    assert (
        browser.post(
            f"{url}/gateway/backend/deactivate/trino-1", headers={"X-CSRF-Token": "guess"}, timeout=15
        ).status_code
        == 403
    )
    assert secured.backends() == before
    csrf = {"X-CSRF-Token": who["csrfToken"]}
    assert browser.post(f"{url}/gateway/backend/deactivate/trino-1", headers=csrf, timeout=15).status_code == 200
    secured.changes.append(("alice", "backend.deactivate", "trino-1"))
    assert browser.post(f"{url}/gateway/backend/activate/trino-1", headers=csrf, timeout=15).status_code == 200
    secured.changes.append(("alice", "backend.activate", "trino-1"))
    # A tampered cookie is no session.
    value = browser.cookies["trino_gateway_session"]
    forged = requests.Session()
    forged.cookies.set("trino_gateway_session", value[:-3] + ("AAA" if value[-3:] != "AAA" else "BBB"))
    assert forged.get(f"{url}/gateway/backend/all", timeout=15).status_code == 401
    # A USER's session reads, and may not change even with the token.
    reader = requests.Session()
    assert _login_form(reader, url).post("bob", PASSWORDS["bob"]).status_code == 302
    token = reader.get(f"{url}/gateway/session", timeout=15).json()["csrfToken"]
    assert reader.get(f"{url}/gateway/backend/all", timeout=15).status_code == 200
    denied = reader.post(f"{url}/gateway/backend/deactivate/trino-1", headers={"X-CSRF-Token": token}, timeout=15)
    assert denied.status_code == 403
    # Logging out ends the session.
    assert browser.post(f"{url}/gateway/logout", headers=csrf, allow_redirects=False, timeout=15).status_code == 302
    assert browser.get(f"{url}/gateway/backend/all", timeout=15).status_code == 401
    # A user with no role cannot start one.
    assert _login_form(requests.Session(), url).post("mallory", PASSWORDS["mallory"]).status_code == 403


def test_single_sign_on_logs_in_to_the_ui_by_authorization_code_with_pkce(secured: Secured):
    url, provider = secured.url, secured.provider
    browser = requests.Session()
    start = browser.get(f"{url}/gateway/login/oidc?next=/gateway/backend/all", allow_redirects=False, timeout=15)
    assert start.status_code == 302
    authorize = urlsplit(start.headers["Location"])
    assert f"{authorize.scheme}://{authorize.netloc}" == provider.issuer
    asked = parse_qs(authorize.query)
    assert asked["code_challenge_method"] == ["S256"] and asked["client_id"] == [CLIENT_ID]
    assert asked["redirect_uri"] == [f"{url}/gateway/login/oidc/callback"]
    # The user logs in at the provider, which sends the browser back with a code.
    back = requests.post(start.headers["Location"], data={"sub": "oidc-admin"}, allow_redirects=False, timeout=15)
    assert back.status_code == 302
    callback = back.headers["Location"]
    # The callback with another state is not this login's.
    forged_state = re.sub(r"state=[^&]+", "state=forged", callback)
    stranger = requests.Session()
    stranger.cookies.update(browser.cookies)
    assert stranger.get(forged_state, allow_redirects=False, timeout=15).status_code == 401
    done = browser.get(callback, allow_redirects=False, timeout=15)
    assert done.status_code == 302 and done.headers["Location"] == "/gateway/backend/all"
    who = browser.get(f"{url}/gateway/session", timeout=15).json()
    assert (who["user"], who["roles"]) == ("oidc-admin", ["ADMIN"])
    # The code was used once: replaying the callback starts nothing.
    assert requests.get(callback, allow_redirects=False, timeout=15).status_code == 400


def test_a_user_reads_its_own_query_history_and_an_admin_everyone_s(secured: Secured):
    url = secured.url
    for user in ("bob", "alice", "bob"):
        document = requests.post(
            f"{url}/v1/statement", data="SELECT 1", headers={"X-Trino-User": user}, timeout=15
        ).json()
        while "nextUri" in document:
            document = requests.get(document["nextUri"], timeout=15).json()
    bob = basic("bob", PASSWORDS["bob"])
    mine = requests.get(f"{url}/gateway/queries", headers=bob, timeout=15).json()
    assert {q["user"] for q in mine["queries"]} == {"bob"} and mine["total"] == 2
    # Asking for another user's queries does not widen a USER's view.
    theirs = requests.get(f"{url}/gateway/queries?user=alice", headers=bob, timeout=15).json()
    assert {q["user"] for q in theirs["queries"]} == {"bob"}
    everyone = requests.get(f"{url}/gateway/queries", headers=basic("alice", PASSWORDS["alice"]), timeout=15).json()
    assert {q["user"] for q in everyone["queries"]} >= {"alice", "bob"}


def test_the_backend_command_takes_credentials_from_the_environment(secured: Secured, monkeypatch, capsys):
    from gateway.control.backend_command import run
    from gateway.node.cli import build_parser

    def command(*argv: str) -> tuple[int, str, str]:
        code = run(build_parser().parse_args(["backend", *argv, "--server", secured.url]))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    for name in ("TRINO_GATEWAY_USER", "TRINO_GATEWAY_PASSWORD", "TRINO_GATEWAY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = command("deactivate", "trino-3")
    assert code == 2 and "HTTP 401" in err and "TRINO_GATEWAY_USER" in err
    monkeypatch.setenv("TRINO_GATEWAY_USER", "bob")
    monkeypatch.setenv("TRINO_GATEWAY_PASSWORD", PASSWORDS["bob"])
    assert command("list")[0] == 0
    code, _, err = command("deactivate", "trino-3")
    assert code == 2 and "HTTP 403" in err
    monkeypatch.setenv("TRINO_GATEWAY_USER", "alice")
    monkeypatch.setenv("TRINO_GATEWAY_PASSWORD", PASSWORDS["alice"])
    assert command("deactivate", "trino-3") == (0, "trino-3: inactive\n", "")
    secured.changes.append(("alice", "backend.deactivate", "trino-3"))
    monkeypatch.setenv("TRINO_GATEWAY_TOKEN", secured.provider.id_token("oidc-robot"))
    assert command("activate", "trino-3") == (0, "trino-3: active\n", "")
    secured.changes.append(("oidc-robot", "backend.activate", "trino-3"))


def test_zz_the_audit_trail_lists_every_change_made_here_with_its_user(secured: Secured):
    """(Runs last in this module.) Every change the tests above made through the API, with the user
    who made it, and each refused attempt at a change."""
    headers = basic("robot", PASSWORDS["robot"])
    answer = requests.get(f"{secured.url}/gateway/audit?limit=1000", headers=headers, timeout=15).json()
    entries = answer["entries"]
    done = [(e["actor"], e["action"], e["target"]) for e in reversed(entries) if e["outcome"] == "done"]
    assert done == secured.changes
    assert all(e["address"] == "127.0.0.1" for e in entries)
    refused = {(e["actor"], e["target"]) for e in entries if e["outcome"] == "refused"}
    assert {("bob", "trino-2"), ("dave", "trino-2"), ("oidc-user", "trino-2"), ("mallory", "trino-1")} <= refused
    # Before and after of one change; the actor filter.
    deactivations = [e for e in entries if e["action"] == "backend.deactivate" and e["outcome"] == "done"]
    assert deactivations[-1]["before"]["active"] is True and deactivations[-1]["after"]["active"] is False
    carol = requests.get(f"{secured.url}/gateway/audit?actor=carol", headers=headers, timeout=15).json()
    assert carol["entries"] and {e["actor"] for e in carol["entries"]} == {"carol"}
    # One structured log line per entry.
    lines = [
        json.loads(line[line.index('{"audit":') :])
        for line in secured.gateway.log().splitlines()
        if '{"audit":' in line
    ]
    assert len([line for line in lines if line["audit"]["outcome"] == "done"]) == len(secured.changes)


@every_store
def test_the_audit_trail_pages_and_filters_in_every_store(make_gateway, sims, tmp_path):
    password_file = write_password_file(tmp_path / "password.db", PASSWORDS)
    auth = {"password_file": str(password_file), "roles": {"ADMIN": ["alice"], "API": ["robot"], "USER": ["bob"]}}
    gateway = make_gateway({**three_backends(sims), "auth": auth})
    alice, robot, bob = (basic(u, PASSWORDS[u]) for u in ("alice", "robot", "bob"))
    url = gateway.url
    started = int(time.time() * 1000)
    for headers in (alice, robot, alice):
        assert requests.post(f"{url}/gateway/backend/deactivate/trino-3", headers=headers, timeout=15).ok
        assert requests.post(f"{url}/gateway/backend/activate/trino-3", headers=headers, timeout=15).ok
    assert requests.post(f"{url}/gateway/backend/deactivate/trino-3", headers=bob, timeout=15).status_code == 403

    def audit(query: str) -> dict:
        answer = requests.get(f"{url}/gateway/audit?{query}", headers=alice, timeout=15)
        assert answer.status_code == 200, answer.text
        return answer.json()

    everything = audit("limit=100")
    assert everything["total"] == 7
    assert [(e["actor"], e["action"], e["outcome"]) for e in everything["entries"][:3]] == [
        ("bob", "backend.deactivate", "refused"),
        ("alice", "backend.activate", "done"),
        ("alice", "backend.deactivate", "done"),
    ]
    assert all(e["at"] >= started for e in everything["entries"])
    page = audit("limit=2&offset=2")
    assert page["total"] == 7 and page["entries"] == everything["entries"][2:4]
    assert audit("actor=robot")["total"] == 2
    assert audit(f"since={everything['entries'][0]['at']}")["total"] >= 1
    assert audit(f"since={int(time.time() * 1000) + 60_000}")["total"] == 0
    for bad in ("limit=0", "limit=1001", "offset=-1", "since=yesterday", "limit=ten"):
        answer = requests.get(f"{url}/gateway/audit?{bad}", headers=alice, timeout=15)
        assert answer.status_code == 400, bad
    assert requests.get(f"{url}/gateway/audit", headers=bob, timeout=15).status_code == 403
