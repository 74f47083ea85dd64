"""The rule language: what it computes, what it refuses, and how it reports mistakes."""

from __future__ import annotations

import pytest

from gateway.routing.rules.language import RuleSyntaxError, compile_program
from gateway.routing.rules.values import GLOBALS, Optional, RuleRuntimeError


def run(source: str, **variables):
    return compile_program(source)({**GLOBALS, **variables})


@pytest.mark.parametrize(
    ("source", "variables", "expected"),
    [
        ("1 + 2 * 3 - 4 / 2", {}, 5),
        ("7 % 3 == 1", {}, True),
        ('"a" + 1 + null', {}, "a1null"),
        ("x contains 'b'", {"x": "abc"}, True),
        ("x contains 'b'", {"x": None}, False),
        ("[1, 2] contains 2", {}, True),
        ("m contains 'k'", {"m": {"k": 1}}, True),
        ("!(a || b) && !false", {"a": False, "b": False}, True),
        ("a == null ? 'none' : a", {"a": None}, "none"),
        ("x ~= 'ab+c'", {"x": "abbbc"}, True),
        ("x.matches('a.*')", {"x": "abc"}, True),
        ("' Mixed '.trim().toUpperCase()", {}, "MIXED"),
        ("'a,b,,'.split(',')", {}, ["a", "b"]),
        ("'abc'.substring(1)", {}, "bc"),
        ("'abc'.length() > 2 && 'abc'.startsWith('a')", {}, True),
        ("m.k", {"m": {"k": 5}}, 5),
        ("m['k']", {"m": {"k": 5}}, 5),
        ("r.put('a', 1); r.put('b', 2); r.size()", {"r": {}}, 2),
        ("if (1 > 2) { 'x' } else if (2 > 1) { 'y' } else { 'z' }", {}, "y"),
        ("java.util.Optional.of('a').equals(Optional.of('a'))", {}, True),
        ("Optional.empty().isPresent()", {}, False),
        ("o.get()", {"o": Optional("v")}, "v"),
        ("new ArrayList().isEmpty()", {}, True),
        ("new java.util.HashMap().size", {}, 0),
        ("// a comment\n 1 /* another */ + 1", {}, 2),
        ("", {}, None),
    ],
)
def test_expressions(source, variables, expected):
    assert run(source, **variables) == expected


@pytest.mark.parametrize(
    "source",
    [
        "a &&",
        "s = 1",
        "import os",
        "r.put('a', 1) r.put('b', 2)",
        "new java.io.File('/etc/passwd')",
        "new Runtime()",
        "while (true) { 1 }",
        "for (x : y) { 1 }",
        "def f() { 1 }",
        "'unterminated",
    ],
)
def test_what_is_not_rule_language_is_refused_at_load(source):
    with pytest.raises(RuleSyntaxError):
        compile_program(source)


def test_a_syntax_error_names_line_and_column():
    with pytest.raises(RuleSyntaxError, match=r"line 2, column 3"):
        compile_program("1 +\n2 ) 3")


@pytest.mark.parametrize(
    ("source", "variables", "reason"),
    [
        ("x.__class__", {"x": "s"}, "no property '__class__'"),
        ("x.__class__()", {"x": "s"}, "no method '__class__'"),
        ("x.format('a')", {"x": "s"}, "no method 'format'"),
        ("request.getHeader('a')", {}, "unknown variable 'request'"),
        ("x.length()", {"x": None}, "null"),
        ("o.get()", {"o": Optional()}, "empty Optional"),
        ("1 / 0", {}, "cannot compute"),
        ("'a' < 1", {}, "cannot compare"),
        ("'a' && true", {}, "expected true or false"),
        ("x ~= '(a|aa)+$'", {"x": "a" * 40 + "!"}, "took too long"),
        ("x ~= '('", {"x": "a"}, "bad regular expression"),
        ("r.keySet().add('x')", {"r": {}}, None),
        ("s.add('x')", {"s": frozenset()}, "add"),
    ],
)
def test_run_time_failures_are_rule_errors_not_crashes(source, variables, reason):
    if reason is None:
        run(source, **variables)  # a fresh copy of the keys: allowed, and harmless
        return
    with pytest.raises(RuleRuntimeError, match=reason):
        run(source, **variables)


def test_rules_cannot_reach_python_objects_behind_rule_objects():
    from gateway.routing.rules.request import RuleRequest

    request = RuleRequest([("X-Trino-User", "alice")])
    assert run("request.getHeader('x-trino-user')", request=request) == "alice"
    for source in ("request.headers", "request._by_name", "request.header('x')", "request.rule_methods"):
        with pytest.raises(RuleRuntimeError):
            run(source, request=request)
