"""The rules file: validation with precise errors, failing rules skipped, reloading on change."""

from __future__ import annotations

import logging
import os

import pytest

from gateway.routing.rules import RulesFile, RulesLoadError, parse_rules
from tests.rules.helpers import outcome, select

GOOD = """
---
name: "etl"
condition: 'request.getHeader("X-Trino-Source") == "airflow"'
actions: ['result.put("routingGroup", "etl")']
"""
OTHER = """
---
name: "bi"
condition: 'request.getHeader("X-Trino-Source") == "airflow"'
actions: ['result.put("routingGroup", "bi")']
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "document 1: a rule must be a mapping"),
        ("name: a\ncondition: 'true'\nactoins: []\n", "document 1: actoins: unknown key"),
        ("condition: 'true'\n", "document 1: name: Field required"),
        ("name: a\ncondition: 'x ==='\n", "rule 'a', condition: syntax error at line 1"),
        ("name: a\nactions: ['result.put(']\n", "rule 'a', action 1: syntax error"),
        ("name: a\n---\nname: a\n", "document 2: rule name 'a' appears twice"),
        ("name: a\nactions: ['new Socket()']\n", "cannot create Socket"),
        ("name: g\ncompositeRuleType: ActivationRuleGroup\n", "ActivationRuleGroup needs composingRules"),
        ("name: g\ncompositeRuleType: Other\ncomposingRules: [{name: x}]\n", "compositeRuleType"),
    ],
)
def test_a_broken_file_is_refused_with_the_reason(text, message):
    with pytest.raises(RulesLoadError, match=message):
        parse_rules(text, "rules.yaml")


def test_condition_written_as_a_yaml_boolean_and_empty_documents_are_accepted():
    assert len(parse_rules('---\nname: a\ncondition: true\nactions: \'result.put("routingGroup", "x")\'\n---\n')) == 1
    assert select('name: a\ncondition: true\nactions: \'result.put("routingGroup", "x")\'\n').group == "x"


def test_a_rule_that_fails_is_skipped_and_its_writes_undone(caplog):
    rules = """
---
name: "first"
priority: 1
condition: "true"
actions: ['result.put("routingGroup", "first")']
---
name: "raises"
priority: 2
condition: "true"
actions:
  - 'result.put("routingGroup", "half-done")'
  - 'request.getHeader("X-Missing").toLowerCase()'
---
name: "not boolean"
priority: 3
condition: 'request.getHeader("X-Trino-Source")'
actions: ['result.put("routingGroup", "never")']
"""
    with caplog.at_level(logging.WARNING, logger="gateway.routing.rules"):
        result = outcome(rules, {"X-Trino-Source": "cli"})
    assert result.routing_group == "first"
    assert [name for name, _ in result.failed] == ["raises", "not boolean"]
    assert "routing rule 'raises' failed and was skipped: null.toLowerCase()" in caplog.text
    assert "routing rule 'not boolean' failed" in caplog.text


def test_when_every_rule_fails_the_header_decides():
    rules = 'name: a\ncondition: \'request.getHeader("X").isEmpty()\'\nactions: [\'result.put("routingGroup", "a")\']\n'
    assert select(rules, {"X-Trino-Routing-Group": "etl"}).group == "etl"
    assert select(rules, {}).group is None


def _write(path, text: str) -> None:
    # A rename, as editors and config-map updates do: the reader never sees half a file.
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def test_the_file_is_reloaded_when_it_changes(tmp_path):
    path = tmp_path / "rules.yaml"
    _write(path, GOOD)
    rules = RulesFile(path)
    assert [r.name for r in rules.rules.rules] == ["etl"]
    assert rules.check() is False  # unchanged
    _write(path, OTHER)
    assert rules.check() is True
    assert [r.name for r in rules.rules.rules] == ["bi"]
    assert rules.reloads == 1


def test_a_broken_change_keeps_the_previous_rules_and_says_why(tmp_path, caplog):
    path = tmp_path / "rules.yaml"
    _write(path, GOOD)
    rules = RulesFile(path)
    with caplog.at_level(logging.ERROR, logger="gateway.routing.rules"):
        _write(path, GOOD.replace("==", "=== ="))
        assert rules.check() is False
    assert [r.name for r in rules.rules.rules] == ["etl"]
    assert "syntax error" in (rules.last_error or "")
    assert "routing rules not reloaded, the previous 1 rules stay in use" in caplog.text
    path.unlink()
    assert rules.check() is False
    assert "cannot read" in (rules.last_error or "")
    _write(path, OTHER)
    assert rules.check() is True
    assert rules.last_error is None
    assert [r.name for r in rules.rules.rules] == ["bi"]


def test_a_missing_file_at_start_is_an_error(tmp_path):
    with pytest.raises(RulesLoadError, match="cannot read"):
        RulesFile(tmp_path / "absent.yaml")


def test_rules_indexed_by_header_fire_exactly_as_if_every_rule_ran():
    import random

    from gateway.routing.rules.file_rules import RuleSet
    from tests.rules.helpers import scope, selector

    generator = random.Random(7)
    conditions = [
        'request.getHeader("X-Trino-Source") == "{v}"',
        '"{v}" == request.getHeader("x-trino-source") && request.getHeader("X-Trino-User") != "bob"',
        'request.getHeader("X-Trino-User") == "{v}"',
        'request.getHeader("X-Trino-Client-Tags") contains "{v}"',
        "state.size() == 0 || true",
    ]
    values = ["a", "b", "c"]
    for _ in range(40):
        documents = []
        for number in range(12):
            condition = generator.choice(conditions).format(v=generator.choice(values))
            priority = f"priority: {generator.randint(0, 3)}\n" if generator.random() < 0.7 else ""
            action = f'result.put("routingGroup", "g{number}"); state.put("r{number}", 1)'
            documents.append(f"name: r{number}\n{priority}condition: '{condition}'\nactions: ['{action}']\n")
        rules_selector = selector("---\n".join(documents))
        headers = {"X-Trino-Source": generator.choice(values), "X-Trino-User": generator.choice([*values, "bob"])}
        if generator.random() < 0.5:
            headers["X-Trino-Client-Tags"] = generator.choice(values)
        indexed = rules_selector.outcome(scope(headers), b"SELECT 1")
        every_rule = RuleSet(rules_selector.rules.rules.rules)
        every_rule._by_header = {}
        every_rule._unguarded = list(range(len(every_rule.rules)))
        reference = every_rule.evaluate(rules_selector.variables(scope(headers), b"SELECT 1"))
        assert (indexed.fired, indexed.routing_group) == (reference.fired, reference.routing_group)
