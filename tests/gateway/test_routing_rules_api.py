"""Routing rules through the admin API: a new rules file is checked as at start-up (a bad one is
refused with the line where it goes wrong, and nothing is written), written whole, in use at once,
and audited; rules are tried on a request without changing or counting anything."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from gateway.auth.password_file import hash_password
from tests.conftest import connect
from tests.inprocess import InProcessGateway

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}
RULES = """---
name: airflow
condition: 'request.getHeader("X-Trino-Source") == "airflow"'
actions: ['result.put("routingGroup", "etl")']
---
name: alice
condition: 'trinoRequestUser.userExistsAndEquals("alice")'
actions: ['result.put("routingGroup", "bi")']
"""
NEW_RULES = RULES.replace('"etl")', '"bi")', 1)


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()}


class RulesGateway:
    def __init__(self, gateway: InProcessGateway, rules: Path) -> None:
        self.gateway, self.rules, self.url = gateway, rules, gateway.url

    def put(self, body: Any, user: str = "alice", raw: bytes | None = None) -> tuple[int, Any]:
        sent = {"json": body} if raw is None else {"data": raw}
        answer = requests.put(f"{self.url}/gateway/routing-rules", headers=basic(user), timeout=15, **sent)
        return answer.status_code, answer.json()

    def routed_group(self, **options: Any) -> str:
        with connect(self.url, **options) as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            query_id = cursor.query_id
        status, record = self.gateway.call("GET", f"/gateway/queries/{query_id}")
        assert status == 200
        return record["routingGroup"]

    def audit(self) -> list[dict[str, Any]]:
        return self.gateway.call("GET", "/gateway/audit?actor=alice")[1]["entries"]


@pytest.fixture
def rules_gateway(sims, loop_thread, tmp_path) -> Iterator[RulesGateway]:
    """alice is ADMIN, bob USER. The file is checked once a minute only: what changes at once is
    the API's doing, not the watcher's."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    rules.chmod(0o644)
    password_file = tmp_path / "password.db"
    password_file.write_text("".join(f"{u}:{hash_password(pw, rounds=4)}\n" for u, pw in PASSWORDS.items()))
    config = {
        "routing_rules": {"enabled": True, "rules_file": str(rules), "refresh_seconds": 60},
        "auth": {"password_file": str(password_file), "roles": {"ADMIN": ["alice"], "USER": ["bob"]}},
        "backends": [
            {"name": f"trino-{n}", "proxy_to": sim.url, "routing_group": group}
            for n, (sim, group) in enumerate(zip(sims, ("adhoc", "etl", "bi"), strict=True), 1)
        ],
    }
    with InProcessGateway(loop_thread, config) as gateway:
        gateway.admin_headers = basic("alice")
        yield RulesGateway(gateway, rules)


def test_a_new_rules_file_is_written_whole_used_at_once_and_audited(rules_gateway):
    assert rules_gateway.routed_group(source="airflow") == "etl"
    status, described = rules_gateway.put({"text": NEW_RULES})
    assert status == 200, described
    assert (described["text"], [r["name"] for r in described["rules"]]) == (NEW_RULES, ["airflow", "alice"])
    assert described["reloads"] == 1 and described["lastError"] is None
    rules = rules_gateway.rules
    assert rules.read_text() == NEW_RULES
    assert stat.S_IMODE(rules.stat().st_mode) == 0o644  # the file keeps its permissions
    assert sorted(os.listdir(rules.parent)) == ["password.db", "rules.yaml"]  # no temporary file left behind
    assert rules_gateway.routed_group(source="airflow") == "bi"  # at once, not at the next check
    [entry] = rules_gateway.audit()
    assert (entry["action"], entry["target"], entry["outcome"]) == ("routing_rules.update", str(rules), "done")
    assert (entry["before"], entry["after"]) == (RULES, NEW_RULES)


BAD = [
    ("name: a\ncondition: 'true'\nactions: ['x'\n", 4, "not valid YAML"),
    ("name: a\n---\n# b\nname: b\ncondition: 'request.getHeader(\"a\") =='\n", 5, "rule 'b', condition: syntax error"),
    ('name: a\ncondition: |\n  request.getHeader("a") == "b" &&\n  request.getHeader("c") ==\n', 4, "syntax error"),
    ("name: a\nactions:\n  - 'result.put(\"routingGroup\", \"etl\")'\n  - 'result.put('\n", 4, "rule 'a', action 2"),
    ("name: a\n---\nname: b\nactoins: []\n", 4, "document 2: actoins: unknown key"),
    ("name: a\n---\ndescription: again\nname: a\n", 4, "rule name 'a' appears twice"),
    ("name: a\n---\n- a\n- list\n", 3, "a rule must be a mapping"),
    ("name: a\n---\ncondition: 'true'\n", 3, "document 2: name: Field required"),
    (
        "name: g\ncompositeRuleType: UnitRuleGroup\ncomposingRules:\n  - {name: x}\n"
        "  - name: y\n    condition: '1 +'\n",
        6,
        "rule 'y', condition",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD, ids=[f"line {line}" for _, line, _ in BAD])
def test_rules_that_do_not_load_are_refused_with_their_line_and_nothing_is_written(rules_gateway, text, line, message):
    status, refused = rules_gateway.put({"text": text})
    assert status == 400 and (refused["line"], message in refused["error"]) == (line, True), refused
    assert rules_gateway.rules.read_text() == RULES
    assert rules_gateway.routed_group(source="airflow") == "etl"
    assert rules_gateway.audit() == []


def test_a_rules_file_change_needs_the_right_role_a_body_of_text_and_rules_from_a_file(rules_gateway, make_gateway):
    assert rules_gateway.put({"text": NEW_RULES}, user="bob")[0] == 403
    assert rules_gateway.put({"text": 3})[0] == 400
    assert rules_gateway.put({"text": NEW_RULES, "more": 1})[0] == 400
    status, refused = rules_gateway.put(None, raw=b"{not json")
    assert (status, refused["line"]) == (400, None)
    assert rules_gateway.put({"text": "#" * (1 << 20)})[0] == 413
    assert rules_gateway.rules.read_text() == RULES and rules_gateway.audit() == []
    # No rules file to write: rules off.
    plain = make_gateway()
    status, refused = plain.call("PUT", "/gateway/routing-rules", {"text": RULES})
    assert status == 409 and "routing rules are off" in refused["error"]


def _fired(rules_gateway: RulesGateway) -> dict[str, int]:
    return {r["name"]: r["fired"] for r in rules_gateway.gateway.call("GET", "/gateway/routing-rules")[1]["rules"]}


def test_rules_are_tried_on_a_request_as_for_a_new_query_and_nothing_is_counted(rules_gateway):
    gateway = rules_gateway.gateway
    fired = _fired(rules_gateway)

    def tried(**body: Any) -> dict[str, Any]:
        status, answer = gateway.call("POST", "/gateway/routing-rules/test", body)
        assert status == 200, answer
        return answer

    assert tried(headers={"X-Trino-Source": "airflow"}) == {
        "routingGroup": "etl",
        "rule": "airflow",
        "fired": ["airflow"],
        "failed": [],
        "source": "rule",
        "estimate": None,  # no rule read one
    }
    # Both fire; the last group written wins, and the answer names the rule that wrote it.
    both = tried(headers={"X-Trino-Source": "airflow", "X-Trino-User": "bob"}, user="alice")
    assert (both["routingGroup"], both["rule"], both["fired"]) == ("bi", "alice", ["airflow", "alice"])
    assert tried(headers={"X-Trino-Routing-Group": "etl"}) == {
        "routingGroup": "etl",
        "rule": None,
        "fired": [],
        "failed": [],
        "source": "header",
        "estimate": None,
    }
    assert tried()["source"] == "default" and tried()["routingGroup"] is None
    # Rules not in use yet, read from the body: SQL and failures too.
    candidate = """---
name: writes
condition: 'trinoQueryProperties.getQueryType() == "Insert"'
actions: ['result.put("routingGroup", "etl")']
---
name: raises
condition: 'request.getHeader("X-Trino-Client-Info").startsWith("x")'
actions: ['result.put("routingGroup", "bi")']
"""
    tried_candidate = tried(text=candidate, sql="INSERT INTO t SELECT 1", headers={"X-Trino-Source": "airflow"})
    assert (tried_candidate["routingGroup"], tried_candidate["fired"]) == ("etl", ["writes"])
    assert [rule for rule, _ in tried_candidate["failed"]] == ["raises"]
    assert tried(text="", headers={"X-Trino-Source": "airflow"})["source"] == "default"  # no rules at all
    # Nothing changed and nothing counted: the file, the rules in use, the fired counts.
    assert rules_gateway.rules.read_text() == RULES
    assert _fired(rules_gateway) == fired


def test_a_rules_test_refuses_bad_rules_and_bodies_and_needs_a_session_token(rules_gateway, make_gateway):
    url = f"{rules_gateway.url}/gateway/routing-rules/test"
    refused = requests.post(url, json={"text": "name: a\ncondition: 'x =='\n"}, headers=basic("bob"), timeout=15)
    assert refused.status_code == 400 and refused.json()["line"] == 2
    for body in ({"headers": ["X-Trino-Source"]}, {"user": 1}, {"headers": {"a": 1}}, {"sq": "SELECT 1"}):
        assert requests.post(url, json=body, headers=basic("bob"), timeout=15).status_code == 400, body
    # A USER may try rules: it reads only.
    assert requests.post(url, json={}, headers=basic("bob"), timeout=15).status_code == 200
    # A POST with the session cookie needs the session's CSRF token, as every other POST does.
    browser = requests.Session()
    page = browser.get(f"{rules_gateway.url}/gateway/login", timeout=15).text
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    login = {"username": "bob", "password": PASSWORDS["bob"], "csrf_token": token}
    assert browser.post(f"{rules_gateway.url}/gateway/login", data=login, allow_redirects=False).status_code == 302
    assert browser.post(url, json={}, timeout=15).status_code == 403
    csrf = browser.get(f"{rules_gateway.url}/gateway/session", timeout=15).json()["csrfToken"]
    assert browser.post(url, json={}, headers={"X-CSRF-Token": csrf}, timeout=15).status_code == 200
    plain = make_gateway()
    assert plain.call("POST", "/gateway/routing-rules/test", {})[0] == 409
