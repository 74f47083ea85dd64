"""``GET /gateway/openapi.json`` is generated from the handlers' declarations and their pydantic models,
and the gateway's real answers are what it says: every operation of the admin API is asked (as ADMIN,
USER, a user with no role and nobody; with auth off; with routing rules off and from a service) and
each answer's status, content type, headers and body are checked against the document. The document
is valid OpenAPI, needs no credentials, documents every route and no other, and says who may call what
as the handlers' access declarations do. (Generated requests against the same document:
``test_admin_fuzz.py``.)"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import orjson
import pytest
import requests
import schemathesis
from quart import Quart

from gateway.auth.password_file import hash_password
from gateway.control.api import create_admin_app
from gateway.control.api.models import StoredBackend
from gateway.control.api.openapi import Undocumented, build, openapi_path
from gateway.control.api.routing_rules import RULES_BODY_MAX_BYTES
from gateway.store.backend import Backend
from tests.conftest import run_query
from tests.gateway.conftest import three_backends
from tests.inprocess import InProcessGateway
from trinosim.inprocess import InProcessSim, LoopThread

ANSWERED_BEFORE_THE_HANDLER = {"401", "403", "429"}
# What the secured gateway below is not made to answer: with no rules file (the test after it), while
# the node shuts down or its store is down, when the rules file cannot be written, or when no auth is
# configured (the test after it); single sign-on is test_admin_auth's (a real OpenID provider).
NOT_ASKED_HERE = {
    ("PUT", "/gateway/routing-rules", "409"),
    ("POST", "/gateway/routing-rules/test", "409"),
    ("GET", "/gateway/readyz", "503"),
    ("PUT", "/gateway/routing-rules", "500"),
    ("GET", "/gateway/login", "302"),
    ("GET", "/gateway/login/oidc", "302"),
    ("GET", "/gateway/login/oidc", "503"),
    ("GET", "/gateway/login/oidc/callback", "302"),
    ("GET", "/gateway/login/oidc/callback", "401"),
    ("GET", "/gateway/login/oidc/callback", "403"),
    # A backend with a scaler started and stopped: tests/clusters and the UI's tests.
    ("POST", "/gateway/backend/{name}/start", "200"),
    ("POST", "/gateway/backend/{name}/stop", "200"),
}
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "mallory": "mallory-pw", "locked": "locked-pw"}
RULES = """---
name: airflow
condition: 'request.getHeader("X-Trino-Source") == "airflow"'
actions: ['result.put("routingGroup", "etl")']
---
name: group
compositeRuleType: ActivationRuleGroup
composingRules:
  - name: first
    condition: 'request.getHeader("X-Trino-Source") == "first"'
    actions: ['result.put("routingGroup", "etl")']
"""
SPARE = {
    "name": "spare-1",
    "proxyTo": "http://127.0.0.1:9",
    "routingGroup": "spare",
    "active": False,
    "maxRunning": 3,
    "monitor": "NOOP",
    "tls": {"caFile": "/nowhere/ca.pem", "verify": False},
}


@pytest.fixture(scope="module")
def secured(
    loop_thread: LoopThread, sims: list[InProcessSim], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessGateway]:
    """Auth on (alice ADMIN, bob USER, mallory no role), routing rules from a file, three backends."""
    directory = tmp_path_factory.mktemp("openapi")
    password_file = directory / "password.db"
    password_file.write_text("".join(f"{user}:{hash_password(pw, rounds=4)}\n" for user, pw in PASSWORDS.items()))
    rules = directory / "rules.yaml"
    rules.write_text(RULES)
    config = {
        **three_backends(sims),
        "auth": {
            "password_file": str(password_file),
            "roles": {"ADMIN": ["alice"], "USER": ["bob"]},
            # Two wrong passwords lock a user out (429); the address may fail as often as this test needs.
            "login_limit": {"failures": 2, "address_failures": 1000},
        },
        "routing_rules": {"enabled": True, "rules_file": str(rules)},
        "health": {"interval": 60, "timeout": 0.5},
    }
    with InProcessGateway(loop_thread, config) as gateway:
        for user in ("bob", "someone"):
            assert run_query(gateway.url, "SELECT 1", user=user) == [[1]]
        yield gateway


def basic(user: str, password: str | None = None) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password or PASSWORDS[user]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def conformance(document: dict[str, Any], method: str, path: str, status: int, headers: Any, body: bytes) -> list[str]:
    """What in one answer to ``method path`` (an OpenAPI path) the document does not describe."""
    responses = document["paths"][path][method.lower()]["responses"]
    documented = responses.get(str(status))
    if documented is None:
        return [f"{method} {path}: {status} is not documented (only {', '.join(responses)})"]
    problems = []
    for name, header in documented.get("headers", {}).items():
        if name not in headers:
            problems += [f"{method} {path} {status}: no {name} header"] if header.get("required") else []
        elif not re.search(header["schema"].get("pattern", ""), headers[name]):
            problems.append(f"{method} {path} {status}: {name} {headers[name]!r} is not as documented")
    if "content" not in documented:
        return problems
    media = headers.get("Content-Type", "").split(";")[0]
    if media not in documented["content"]:
        return [*problems, f"{method} {path} {status}: {media!r} is not documented"]
    if media == "application/json":
        # The schema's references (#/components/schemas/...) resolve against the document's components.
        schema = {**documented["content"][media]["schema"], "components": document["components"]}
        validator = jsonschema.Draft202012Validator(schema)
        errors = validator.iter_errors(orjson.loads(body))
        problems += sorted(f"{method} {path} {status}: {error.json_path}: {error.message}" for error in errors)
    return problems


class Asker:
    """Asks a gateway, keeping each answer with the OpenAPI path of the operation it answers."""

    def __init__(self, gateway: InProcessGateway) -> None:
        self.url = gateway.url
        self.browser = requests.Session()
        self.answers: list[tuple[str, str, requests.Response]] = []

    def __call__(
        self, method: str, path: str, headers: dict[str, str] | None = None, browser: bool = False, **options: Any
    ) -> requests.Response:
        arguments = options.pop("values", {})
        client = self.browser if browser else requests
        answer = client.request(
            method,
            self.url + path.format(**arguments),
            headers=headers,
            allow_redirects=False,
            timeout=30,
            **options,
        )
        self.answers.append((method, path, answer))
        return answer


def ask_everything(ask: Asker, gateway: InProcessGateway) -> None:
    """Every operation of the admin API, answering as many of its documented statuses as a test can."""
    admin, user, nobody = basic("alice"), basic("bob"), {}
    for path in ("/gateway", "/gateway/livez", "/gateway/readyz", "/gateway/health", "/metrics", "/v1/jmx/mbean"):
        assert ask("GET", path, admin).status_code == 200
    assert ask("GET", "/gateway/health", user).status_code == 200
    for path in ("/gateway/backend/all", "/gateway/backend/active", "/gateway/openapi.json"):
        assert ask("GET", path, admin).status_code == 200
    for name, status in (("trino-1", 200), ("nope", 404)):
        assert ask("GET", "/gateway/backend/{name}", admin, values={"name": name}).status_code == status
        assert ask("GET", "/gateway/backend/{name}/drain", admin, values={"name": name}).status_code == status
    mbean = "/v1/jmx/mbean/{name}"
    assert ask("GET", mbean, admin, values={"name": "trino.gateway:name=ProxyHandler"}).status_code == 200
    assert ask("GET", mbean, admin, values={"name": "trino.gateway:name=Nothing"}).status_code == 404

    add, update, delete = (
        "/gateway/backend/modify/add",
        "/gateway/backend/modify/update",
        "/gateway/backend/modify/delete",
    )
    assert ask("POST", add, admin, json=SPARE).status_code == 200
    assert ask("POST", add, admin, json=SPARE).status_code == 409
    assert ask("POST", add, admin, json={**SPARE, "proxyTo": "ftp://nowhere"}).status_code == 400
    assert ask("POST", update, admin, json={**SPARE, "externalUrl": "https://trino.example.com"}).status_code == 200
    assert ask("POST", update, admin, data=b"[1]").status_code == 400
    for action in ("activate", "deactivate"):
        assert ask("POST", f"/gateway/backend/{action}/{{name}}", admin, values={"name": "spare-1"}).status_code == 200
        assert ask("POST", f"/gateway/backend/{action}/{{name}}", admin, values={"name": "nope"}).status_code == 404
    assert ask("GET", "/gateway/backend/{name}/drain", admin, values={"name": "spare-1"}).json()["drained"] is True
    for action in ("start", "stop"):
        # spare-1 has no scaler: the gateway does not start or stop it.
        assert ask("POST", f"/gateway/backend/{{name}}/{action}", admin, values={"name": "spare-1"}).status_code == 409
        assert ask("POST", f"/gateway/backend/{{name}}/{action}", admin, values={"name": "nope"}).status_code == 404
    assert ask("POST", delete, admin, data=b"spare-1").status_code == 200
    assert ask("POST", delete, admin, json={"name": "spare-1"}).status_code == 404
    assert ask("POST", delete, admin, json={}).status_code == 400

    page = ask("GET", "/gateway/queries", admin)
    assert page.status_code == 200 and page.json()["total"] >= 2
    assert {q["user"] for q in ask("GET", "/gateway/queries", user).json()["queries"]} == {"bob"}
    assert ask("GET", "/gateway/queries", admin, params={"limit": 0}).status_code == 400
    query_id = page.json()["queries"][0]["queryId"]
    assert ask("GET", "/gateway/queries/{query_id}", admin, values={"query_id": query_id}).status_code == 200
    assert ask("GET", "/gateway/queries/{query_id}", admin, values={"query_id": "20260101_x"}).status_code == 404
    assert ask("GET", "/gateway/queries/stats", admin).json()["buckets"]
    assert ask("GET", "/gateway/queries/stats", admin, params={"step": 5}).status_code == 400

    rules = "/gateway/routing-rules"
    assert ask("GET", rules, admin).json()["type"] == "FILE"
    assert ask("PUT", rules, admin, json={"text": RULES.replace("airflow", "airflow2")}).status_code == 200
    assert ask("PUT", rules, admin, json={"text": "---\nname: [\n"}).json()["line"] is not None
    too_large = b" " * (RULES_BODY_MAX_BYTES + 1)
    assert ask("PUT", rules, admin, data=too_large).status_code == 413
    assert ask("POST", rules + "/test", admin, data=too_large).status_code == 413
    trial = {"headers": {"X-Trino-Source": "airflow2"}, "user": "alice", "sql": "SELECT 1"}
    assert ask("POST", rules + "/test", user, json=trial).json()["rule"] == "airflow2"
    assert ask("POST", rules + "/test", user, json={"sql": 1}).status_code == 400

    cache = "/gateway/cache"
    assert ask("GET", cache, user).json()["tiers"]["memory"]["entries"] == 0
    assert ask("GET", cache, admin, params={"since": "yesterday"}).status_code == 400
    assert ask("DELETE", cache, user).status_code == 403
    assert ask("DELETE", cache, admin, params={"group": "adhoc"}).json() == {"group": "adhoc", "purged": 0}
    assert ask("DELETE", cache, admin, params={"group": ""}).status_code == 400

    assert ask("GET", "/gateway/audit", admin).json()["entries"]
    assert ask("GET", "/gateway/audit", admin, params={"limit": "x"}).status_code == 400
    # Refused before the handler runs: no role, no right to change, no credentials, wrong ones, too many.
    assert ask("GET", "/gateway/health", basic("mallory")).status_code == 403
    assert ask("GET", "/gateway/audit", user).status_code == 403
    assert ask("POST", add, nobody, json=SPARE).status_code == 401
    statuses = [ask("GET", "/gateway/backend/all", basic("locked", "wrong")).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    locked = {"username": "locked", "password": "locked-pw"}

    # The UI's login, in a browser's session.
    assert ask("GET", "/gateway/session", nobody).status_code == 401
    form = ask("GET", "/gateway/login", browser=True, params={"next": "/queries"})
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert form.status_code == 200 and token is not None
    login = {"username": "alice", "password": "wrong", "csrf_token": token.group(1), "next": "/queries"}
    assert ask("POST", "/gateway/login", browser=True, data={**login, "csrf_token": "stale"}).status_code == 403
    assert ask("POST", "/gateway/login", browser=True, data=login).status_code == 401
    assert ask("POST", "/gateway/login", browser=True, data={**login, **locked}).status_code == 429
    assert ask("POST", "/gateway/login", browser=True, data={**login, "password": "alice-pw"}).status_code == 302
    session = ask("GET", "/gateway/session", browser=True)
    assert session.json()["roles"] == ["ADMIN"]
    assert ask("POST", "/gateway/logout", browser=True).status_code == 403
    csrf = {"X-CSRF-Token": session.json()["csrfToken"]}
    assert ask("POST", "/gateway/logout", csrf, browser=True).status_code == 302
    assert ask("GET", "/gateway/login/oidc", nobody).status_code == 404
    assert ask("GET", "/gateway/login/oidc/callback", nobody, params={"code": "c", "state": "s"}).status_code == 400


def test_every_answer_is_as_the_document_says(
    secured: InProcessGateway, loop_thread: LoopThread, sims: list[InProcessSim]
):
    document = requests.get(f"{secured.url}/gateway/openapi.json", timeout=15).json()
    ask = Asker(secured)
    ask_everything(ask, secured)
    problems = [
        problem
        for method, path, answer in ask.answers
        for problem in conformance(document, method, path, answer.status_code, answer.headers, answer.content)
    ]
    assert problems == []
    # Every operation was asked, and each answer its handler declares was seen but those listed; the
    # refusals before any handler, at least once each.
    seen = {(method, path, str(answer.status_code)) for method, path, answer in ask.answers}
    assert {(method, path) for method, path, _ in seen} == documented_operations(document)
    declared = {
        (method.upper(), path, status)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        for status in operation["responses"]
        if "security" not in operation or status not in ANSWERED_BEFORE_THE_HANDLER
    }
    assert declared - seen == NOT_ASKED_HERE
    assert {status for *_, status in seen} >= ANSWERED_BEFORE_THE_HANDLER


@pytest.mark.parametrize(
    "rules",
    [
        {"enabled": False},
        {"enabled": True, "type": "EXTERNAL", "external": {"url": "http://127.0.0.1:9"}},
    ],
    ids=["rules off", "rules from a service"],
)
def test_without_auth_or_rules_file_the_answers_are_as_the_document_says(
    loop_thread: LoopThread, sims: list[InProcessSim], rules: dict[str, Any]
):
    with InProcessGateway(loop_thread, {**three_backends(sims), "routing_rules": rules}) as gateway:
        document = requests.get(f"{gateway.url}/gateway/openapi.json", timeout=15).json()
        ask = Asker(gateway)
        assert ask("GET", "/gateway/routing-rules").json()["enabled"] is rules["enabled"]
        assert ask("PUT", "/gateway/routing-rules", json={"text": RULES}).status_code == 409
        assert ask("POST", "/gateway/routing-rules/test", json={}).status_code == 409
        assert ask("GET", "/gateway/login").status_code == 302
        assert ask("POST", "/gateway/login", data={}).status_code == 302
        assert ask("GET", "/gateway/audit").status_code == 200
    problems = [
        problem
        for method, path, answer in ask.answers
        for problem in conformance(document, method, path, answer.status_code, answer.headers, answer.content)
    ]
    assert problems == []


def test_the_conformance_check_finds_what_the_document_does_not_describe(secured: InProcessGateway):
    """The check above can fail: answers the document does not describe are named."""
    document = requests.get(f"{secured.url}/gateway/openapi.json", timeout=15).json()
    json = {"Content-Type": "application/json"}
    backend = requests.get(f"{secured.url}/gateway/backend/trino-1", headers=basic("alice"), timeout=15).json()
    path = "/gateway/backend/{name}"
    assert conformance(document, "GET", path, 200, json, orjson.dumps(backend)) == []
    assert conformance(document, "GET", path, 418, json, b"{}") == [
        "GET /gateway/backend/{name}: 418 is not documented (only 200, 401, 403, 404, 429)"
    ]
    del backend["proxyTo"]
    assert conformance(document, "GET", path, 200, json, orjson.dumps({**backend, "extra": 1, "weight": "1"})) == [
        "GET /gateway/backend/{name} 200: $.weight: '1' is not of type 'number'",
        "GET /gateway/backend/{name} 200: $: 'proxyTo' is a required property",
        "GET /gateway/backend/{name} 200: $: Additional properties are not allowed ('extra' was unexpected)",
    ]
    assert conformance(document, "GET", path, 404, {"Content-Type": "text/html"}, b"<p>") == [
        "GET /gateway/backend/{name} 404: 'text/html' is not documented"
    ]
    assert conformance(document, "GET", path, 429, json, b'{"error": "slow down"}') == [
        "GET /gateway/backend/{name} 429: no Retry-After header"
    ]


def served_operations(app: Quart) -> set[tuple[str, str]]:
    """(METHOD, OpenAPI path) of every API route; the HEAD and OPTIONS Quart adds by itself are not routes of
    ours, and the web UI's pages and assets (blueprint ``ui``) are no API operations."""
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("ui."):
            continue
        methods = set(rule.methods or ())
        if "GET" in methods:
            methods.discard("HEAD")
        if getattr(rule, "provide_automatic_options", False):
            methods.discard("OPTIONS")
        out |= {(method, openapi_path(rule.rule)) for method in methods}
    return out


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, operations in document["paths"].items() for method in operations}


def test_every_route_is_documented_and_every_documented_operation_is_served(secured: InProcessGateway):
    app = secured.app.admin
    document = requests.get(f"{secured.url}/gateway/openapi.json", timeout=15).json()
    assert served_operations(app) == documented_operations(document)
    # Not a vacuous match: the API's known corners are there.
    assert {
        ("POST", "/gateway/backend/modify/delete"),
        ("GET", "/v1/jmx/mbean/{name}"),
        ("GET", "/gateway/login/oidc/callback"),
        ("GET", "/gateway/openapi.json"),
    } <= documented_operations(document)


def test_a_route_that_declares_no_answers_is_named(secured: InProcessGateway):
    app = create_admin_app(secured.services)

    @app.post("/gateway/backend/<name>/undocumented")
    async def undocumented(name: str) -> str:
        return name

    with pytest.raises(Undocumented, match=r"POST /gateway/backend/<name>/undocumented \(undocumented\) declares"):
        build(app, secured.config.auth)


def test_the_document_is_valid_openapi_and_needs_no_credentials(secured: InProcessGateway):
    answer = requests.get(f"{secured.url}/gateway/openapi.json", timeout=15)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    document = answer.json()
    assert document["openapi"].startswith("3.")
    schemathesis.openapi.from_dict(document).validate()
    # The schemas are pydantic's of the models the handlers declare: what is sent, what is answered.
    schemas = document["components"]["schemas"]
    backend, stored = schemas["Backend"], schemas["StoredBackend"]
    assert backend["properties"].keys() == Backend.model_json_schema(by_alias=True)["properties"].keys()
    assert backend["required"] == ["name", "proxyTo"] and backend["additionalProperties"] is False
    assert stored["required"] == list(StoredBackend.model_json_schema(mode="serialization")["properties"])
    add = document["paths"]["/gateway/backend/modify/add"]["post"]
    assert add["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Backend"}
    assert add["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/StoredBackend"
    }
    # Summaries and descriptions are the handlers' docstrings.
    drain = document["paths"]["/gateway/backend/{name}/drain"]["get"]
    assert drain["summary"] == "What the backend still has to finish"
    assert drain["description"].startswith("Over every worker and gateway node: `drained` is true")


def test_security_follows_the_handlers_access_and_the_configuration(secured: InProcessGateway):
    document = requests.get(f"{secured.url}/gateway/openapi.json", timeout=15).json()
    schemes = document["components"]["securitySchemes"]
    # Passwords are configured, OIDC is not: no bearer scheme is offered.
    assert schemes["basic"] == {"type": "http", "scheme": "basic", "description": "the password file, then LDAP"}
    assert "bearer" not in schemes
    assert (schemes["session"]["in"], schemes["session"]["name"]) == ("cookie", "trino_gateway_session")
    paths = document["paths"]

    def operation(method: str, path: str) -> dict[str, Any]:
        return paths[path][method]

    change = operation("post", "/gateway/backend/modify/add")
    assert change["security"] == [{"basic": ["ADMIN", "API"]}, {"session": ["ADMIN", "API"]}]
    assert ANSWERED_BEFORE_THE_HANDLER | {"200", "400", "409"} == change["responses"].keys()
    assert operation("get", "/gateway/audit")["security"][0] == {"basic": ["ADMIN", "API"]}
    read = operation("get", "/gateway/backend/all")
    assert read["security"][0] == {"basic": ["ADMIN", "USER", "API"]}
    assert read["responses"].keys() >= ANSWERED_BEFORE_THE_HANDLER
    # Public handlers and the configured public paths (auth.public_paths) ask for nothing and refuse nobody.
    for method, path in [
        ("get", "/gateway/openapi.json"),
        ("get", "/gateway"),
        ("post", "/gateway/login"),
        ("get", "/gateway/livez"),
        ("get", "/metrics"),
    ]:
        assert "security" not in operation(method, path), path
        assert not {"401", "429"} & operation(method, path)["responses"].keys() or path == "/gateway/login", path


def test_without_auth_the_document_offers_no_security(secured: InProcessGateway):
    document = build(create_admin_app(secured.services), None)
    assert "securitySchemes" not in document["components"]
    assert not [
        (method, path)
        for path, operations in document["paths"].items()
        for method, op in operations.items()
        if "security" in op or "WWW-Authenticate" in op["responses"].get("401", {}).get("headers", {})
    ]
