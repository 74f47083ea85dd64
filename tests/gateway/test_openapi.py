"""``GET /gateway/openapi.json`` describes the admin API the code serves: every route of the Quart app
is documented and every documented operation is served, the document is valid OpenAPI and needs no
credentials, and who may call what is the handlers' own access declaration. (That the answers match
the document is shown by fuzzing it: ``test_admin_fuzz.py``.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from quart import Quart

from gateway.auth.password_file import hash_password
from gateway.control.api import create_admin_app
from gateway.control.api.openapi import build, openapi_path
from gateway.store.backend import Backend
from tests.inprocess import InProcessGateway
from trinosim.inprocess import LoopThread

ANSWERED_BEFORE_THE_HANDLER = {"401", "403", "429"}


@pytest.fixture(scope="module")
def secured(loop_thread: LoopThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    password_file = tmp_path_factory.mktemp("openapi") / "password.db"
    password_file.write_text(f"alice:{hash_password('alice-pw', rounds=4)}\n")
    config = {"auth": {"password_file": str(password_file), "roles": {"ADMIN": ["alice"]}}}
    with InProcessGateway(loop_thread, config) as gateway:
        yield gateway


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


def mismatch(app: Quart, document: dict[str, Any]) -> list[str]:
    served, documented = served_operations(app), documented_operations(document)
    return [f"served, not in the document: {method} {path}" for method, path in sorted(served - documented)] + [
        f"in the document, not served: {method} {path}" for method, path in sorted(documented - served)
    ]


def test_every_route_is_documented_and_every_documented_operation_is_served(secured: InProcessGateway):
    app = secured.app.admin
    document = requests.get(f"{secured.url}/gateway/openapi.json", timeout=15).json()
    assert mismatch(app, document) == []
    # Not a vacuous match: the API's known corners are there.
    assert {
        ("POST", "/gateway/backend/modify/delete"),
        ("GET", "/v1/jmx/mbean/{name}"),
        ("GET", "/gateway/login/oidc/callback"),
        ("GET", "/gateway/openapi.json"),
    } <= documented_operations(document)


def test_a_route_added_without_documenting_it_is_named(secured: InProcessGateway):
    """The check above can fail: an app with one more route, and a document with one operation too many."""
    app = create_admin_app(secured.services)

    @app.post("/gateway/backend/<name>/undocumented")
    async def undocumented(name: str) -> str:
        return name

    document = build(secured.app.admin, secured.config.auth)
    document["paths"]["/gateway/retired"] = {"get": {"responses": {"200": {"description": "gone"}}}}
    assert mismatch(app, document) == [
        "served, not in the document: POST /gateway/backend/{name}/undocumented",
        "in the document, not served: GET /gateway/retired",
    ]


def test_the_document_is_valid_openapi_and_needs_no_credentials(secured: InProcessGateway):
    answer = requests.get(f"{secured.url}/gateway/openapi.json", timeout=15)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    document = answer.json()
    assert document["openapi"].startswith("3.")
    schemathesis.openapi.from_dict(document).validate()
    # The backend is pydantic's schema of the record, not a copy typed by hand.
    backend = document["components"]["schemas"]["Backend"]
    assert backend["properties"].keys() == Backend.model_json_schema(by_alias=True)["properties"].keys()
    assert backend["required"] == ["name", "proxyTo"] and backend["additionalProperties"] is False


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
    document = build(secured.app.admin, None)
    assert "securitySchemes" not in document["components"]
    assert not [
        (method, path)
        for path, operations in document["paths"].items()
        for method, op in operations.items()
        if "security" in op or "WWW-Authenticate" in op["responses"].get("401", {}).get("headers", {})
    ]
