"""Evaluating rules against a request built in the test, without a server."""

from __future__ import annotations

from typing import Any

from gateway.routing.rules.file_rules import Outcome, RuleSet, parse_rules
from gateway.routing.rules.request import VERIFIED_USER, UserSource
from gateway.routing.rules.selector import FileRulesSelector, Selection


def scope(headers: dict[str, str] | None = None, method: str = "POST", path: str = "/v1/statement") -> dict[str, Any]:
    """An ASGI scope as the proxy receives it."""
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "scheme": "http",
    }


UNVERIFIED = UserSource()


class _LoadedRules:
    """Stands in for a RulesFile: rules parsed from a string."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules


def selector(rules_yaml: str, users: UserSource = UNVERIFIED) -> FileRulesSelector:
    return FileRulesSelector(_LoadedRules(parse_rules(rules_yaml)), 1_000_000, users)  # type: ignore[arg-type]


def select(
    rules_yaml: str,
    headers: dict[str, str] | None = None,
    sql: str = "SELECT 1",
    users: UserSource = UNVERIFIED,
    verified_user: str | None = None,
) -> Selection:
    """The routing group the rules pick for a query with these headers and SQL (``verified_user``:
    what the gateway verified of the request's credentials, "" for refused ones)."""
    request = scope(headers)
    if verified_user is not None:
        request[VERIFIED_USER] = verified_user
    return selector(rules_yaml, users).evaluate(request, sql.encode())


def outcome(rules_yaml: str, headers: dict[str, str] | None = None, sql: str = "SELECT 1") -> Outcome:
    return selector(rules_yaml).outcome(scope(headers), sql.encode())
