"""Schemathesis fuzzes the admin API from its own OpenAPI document (``GET /gateway/openapi.json``), on an
in-process gateway with auth on. As ADMIN and as USER on PostgreSQL (the stricter store about the
text and numbers it keeps), as a user with no role on the in-memory store (refused before any
handler, so the store plays no part), and without credentials (the ADMIN run's ``ignored_auth``
check asks each operation that answered it again without any): no answer is a server error, and every answer is
one the document describes (status code, content type, headers, body). Callers who may not change
anything change nothing: the store's backends and the routing rules file are the same after each of
their requests, and the audit trail gains no change. The routing rules come from a file, so that
replacing and trying them is fuzzed too.

The budget (hypothesis settings below) keeps the module near two minutes: schemathesis' examples
and coverage cases of each operation, then ``max_examples`` generated ones, derandomized so that a
run repeats the one before it."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.auth.password_file import hash_password
from gateway.store import AuditEntry
from gateway.store.backend import Backend
from tests.conftest import run_query
from tests.gateway.conftest import three_backends
from tests.inprocess import InProcessGateway
from tests.postgres import PostgresServer
from trinosim.inprocess import InProcessSim, LoopThread

pytestmark = pytest.mark.slow

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "mallory": "mallory-pw"}
# Rules from a file, so that replacing and trying them is fuzzed too (SQL included: one rule reads it).
RULES = """---
name: airflow
condition: 'request.getHeader("X-Trino-Source") == "airflow"'
actions: ['result.put("routingGroup", "etl")']
---
name: writes
condition: 'trinoQueryProperties.getQueryType() == "Insert" || trinoQueryProperties.tablesContains("a.b.c")'
actions: ['result.put("routingGroup", "etl")']
"""
ROLES = {"ADMIN": ["alice"], "USER": ["bob"]}  # mallory logs in, with no role
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    # An operation that declares security and answers 2xx is asked again without and with wrong credentials.
    ignored_auth,
]
BUDGET = settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    # The gateway is slow next to hypothesis' expectations of a pure function, and that is fine here.
    suppress_health_check=list(HealthCheck),
)
# Callers refused before any handler runs (no credentials, no role) answer alike whatever the
# request holds: schemathesis' examples and coverage cases, and a few generated ones, show it.
REFUSED_BEFORE_THE_HANDLER = settings(BUDGET, max_examples=5)


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()}


@pytest.fixture(scope="module", params=["postgres"])
def fuzzed_store(request: pytest.FixtureRequest) -> Iterator[str]:
    """PostgreSQL by default: the stricter SQL store about what text and numbers it keeps (it found
    the NUL and BIGINT faults SQLite let pass)."""
    if request.param == "memory":
        yield "memory://"
        return
    with PostgresServer() as server:
        yield server.url(driver="postgresql")


@pytest.fixture(scope="module")
def secured(
    loop_thread: LoopThread, sims: list[InProcessSim], fuzzed_store: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessGateway]:
    directory = tmp_path_factory.mktemp("fuzz")
    password_file = directory / "password.db"
    password_file.write_text("".join(f"{user}:{hash_password(pw, rounds=4)}\n" for user, pw in PASSWORDS.items()))
    auth = {
        "password_file": str(password_file),
        "roles": ROLES,
        # No request here guesses a password, yet generated Authorization headers fail; the limit must not
        # turn the callers' own requests into 429s halfway through.
        "login_limit": {"failures": 1_000_000, "address_failures": 1_000_000},
    }
    rules = directory / "rules.yaml"
    rules.write_text(RULES)
    # Backends the fuzzer adds point anywhere: their first check must not hold a request long.
    config = {
        **three_backends(sims),
        "auth": auth,
        "health": {"interval": 60, "timeout": 0.5},
        "routing_rules": {"enabled": True, "rules_file": str(rules)},
    }
    gateway = InProcessGateway(loop_thread, config, fuzzed_store).start()
    # Some history to read: bob (USER) sees his own query only.
    for user in ("bob", "someone"):
        assert run_query(gateway.url, "SELECT 1", user=user) == [[1]]
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def admin_api(secured: InProcessGateway) -> Any:
    # Read without credentials: the document is public.
    return schemathesis.openapi.from_url(f"{secured.url}/gateway/openapi.json")


schema = schemathesis.pytest.from_fixture("admin_api")


@pytest.fixture(autouse=True)
def node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32's from_fixture reads ``item._nodeid``, which pytest 9.2 no longer has (it keeps ``nodeid``).
    request.node._nodeid = request.node.nodeid


def backends(gateway: InProcessGateway) -> dict[str, dict[str, Any]]:
    """What the store holds, read behind the API's back."""
    return {
        b.name: b.model_dump(mode="json", by_alias=True)
        for b in gateway.loop.run(gateway.services.store.list_backends())
    }


def rules_text(gateway: InProcessGateway) -> str:
    """The rules file, read behind the API's back."""
    path = gateway.config.routing_rules.rules_file
    assert path is not None
    return Path(path).read_text()


Change = tuple[str, str, str | None]


def _done(entries: list[AuditEntry]) -> list[Change]:
    return [(e.actor, e.action, e.target) for e in entries if e.outcome == "done"]


def changes(gateway: InProcessGateway) -> list[Change]:
    """Every change the audit trail holds: (actor, action, target)."""
    _, entries = gateway.loop.run(gateway.services.store.find_audit(None, None, 1_000_000, 0))
    return _done(entries)


def audited(gateway: InProcessGateway) -> int:
    """How many entries the audit trail holds (changes and refused attempts)."""
    total, _ = gateway.loop.run(gateway.services.store.find_audit(None, None, 0, 0))
    return total


def held_after(gateway: InProcessGateway, seen: int) -> tuple[dict[str, dict[str, Any]], int, list[Change]]:
    """The backends, how many entries the audit trail holds, and the changes among those after the
    first ``seen``: read behind the API's back in one go (the whole trail, read after each request,
    grew with every refused attempt and took over a quarter of the USER run)."""
    store = gateway.services.store

    async def read() -> tuple[list[Backend], int, list[AuditEntry]]:
        held = await store.list_backends()
        total, _ = await store.find_audit(None, None, 0, 0)
        _, newest = await store.find_audit(None, None, total - seen, 0)
        return held, total, newest

    held, total, newest = gateway.loop.run(read())
    return {b.name: b.model_dump(mode="json", by_alias=True) for b in held}, total, _done(newest)


@schema.parametrize()
@BUDGET
def test_as_admin_no_answer_is_a_server_error_or_undocumented(case: schemathesis.Case, secured: InProcessGateway):
    case.call_and_validate(headers=basic("alice"), checks=CHECKS)


@dataclass
class Refused:
    """A caller who may not change anything, and what the gateway held when its run began."""

    user: str | None
    headers: dict[str, str]
    backends: dict[str, dict[str, Any]]
    changes: list[Change]
    rules: str
    audited: int
    """Entries in the audit trail after the last request checked."""


@pytest.fixture
def refused(request: pytest.FixtureRequest, secured: InProcessGateway) -> Iterator[Refused]:
    """After each request of the run, the entries it added hold no change (``call_and_check_nothing_changed``);
    at its end, the whole trail holds the changes it began with, no more, no fewer."""
    user = request.param
    before = changes(secured)
    assert not [change for change in before if change[0] == user], f"the audit trail has {user}'s changes"
    state = Refused(user, basic(user) if user else {}, backends(secured), before, rules_text(secured), audited(secured))
    yield state
    assert changes(secured) == before, f"the audit trail's changes are not those before {user or 'nobody'}'s run"


@pytest.mark.parametrize("refused", ["bob"], ids=["USER"], indirect=True)
@pytest.mark.usefixtures("refused")
@schema.parametrize()
@BUDGET
def test_a_user_gets_documented_answers_and_changes_nothing(
    case: schemathesis.Case, secured: InProcessGateway, refused: Refused
):
    call_and_check_nothing_changed(case, secured, refused)


# Refused before any handler runs: the store plays no part, the in-memory one will do (on SQLite,
# reading the backends and the audit trail back after each request took a quarter of this run).
# Without credentials: the ADMIN run's ignored_auth check asks every operation that answered it
# again without any.
@pytest.mark.parametrize("fuzzed_store", ["memory"], indirect=True)
@pytest.mark.parametrize("refused", ["mallory"], ids=["no role"], indirect=True)
@pytest.mark.usefixtures("refused")
@schema.parametrize()
@REFUSED_BEFORE_THE_HANDLER
def test_callers_without_a_role_get_documented_answers_and_change_nothing(
    case: schemathesis.Case, secured: InProcessGateway, refused: Refused
):
    call_and_check_nothing_changed(case, secured, refused)


def call_and_check_nothing_changed(case: schemathesis.Case, secured: InProcessGateway, refused: Refused) -> None:
    case.call_and_validate(headers=refused.headers, checks=CHECKS)
    what = f"{case.method} {case.formatted_path} as {refused.user or 'nobody'}"
    held, refused.audited, added = held_after(secured, refused.audited)
    assert held == refused.backends, f"{what} changed the backends"
    assert rules_text(secured) == refused.rules, f"{what} changed the routing rules"
    assert added == [], f"{what} left a change in the audit trail: {added}"
