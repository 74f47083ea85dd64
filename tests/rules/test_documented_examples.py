"""Every rule example of trinodb/trino-gateway's routing-rules documentation, unmodified.

The YAML below is the documentation's text as users copy it (docs/routing-rules.md); each test
routes the requests the documentation describes and checks the group it promises.
"""

from __future__ import annotations

import pytest

from tests.rules.helpers import select

AIRFLOW_RULES = """
---
name: "airflow"
description: "if query from airflow, route to etl group"
condition: 'request.getHeader("X-Trino-Source") == "airflow"'
actions:
  - 'result.put("routingGroup", "etl")'
---
name: "airflow special"
description: "if query from airflow with special label, route to etl-special group"
condition: 'request.getHeader("X-Trino-Source") == "airflow" && request.getHeader("X-Trino-Client-Tags") contains "label=special"'
actions:
  - 'result.put("routingGroup", "etl-special")'
"""

NULL_CHECK_CONDITION = """
---
name: "foo"
condition: 'request.getHeader("X-Trino-Client-Tags") != null && request.getHeader("X-Trino-Client-Tags").contains("label=foo")'
actions:
  - 'result.put("routingGroup", "foo")'
"""

CONTAINS_OPERATOR_CONDITION = """
---
name: "foo"
condition: 'request.getHeader("X-Trino-Client-Tags") contains "label=foo"'
actions:
  - 'result.put("routingGroup", "foo")'
"""

ATOMIC_AIRFLOW_RULE = """
---
name: "airflow"
description: "if query from airflow, route to etl group"
condition: 'request.getHeader("X-Trino-Source") == "airflow" && request.getHeader("X-Trino-Client-Tags") == null'
actions:
  - 'result.put("routingGroup", "etl")'
---
"""

PRIORITY_RULES = """
---
name: "airflow"
description: "if query from airflow, route to etl group"
priority: 0
condition: 'request.getHeader("X-Trino-Source") == "airflow"'
actions:
  - 'result.put("routingGroup", "etl")'
---
name: "airflow special"
description: "if query from airflow with special label, route to etl-special group"
priority: 1
condition: 'request.getHeader("X-Trino-Source") == "airflow" && request.getHeader("X-Trino-Client-Tags") contains "label=special"'
actions:
  - 'result.put("routingGroup", "etl-special")'
"""

ACTIVATION_GROUP = """
---
name: "airflow rule group"
description: "routing rules for query from airflow"
compositeRuleType: "ActivationRuleGroup"
composingRules:
  - name: "airflow special"
    description: "if query from airflow with special label, route to etl-special group"
    priority: 0
    condition: 'request.getHeader("X-Trino-Source") == "airflow" && request.getHeader("X-Trino-Client-Tags") contains "label=special"'
    actions:
      - 'result.put("routingGroup", "etl-special")'
  - name: "airflow"
    description: "if query from airflow, route to etl group"
    priority: 1
    condition: 'request.getHeader("X-Trino-Source") == "airflow"'
    actions:
      - 'result.put("routingGroup", "etl")'
"""

CONDITIONAL_GROUP = """
name: "airflow rule group"
description: "routing rules for query from airflow"
compositeRuleType: "ConditionalRuleGroup"
composingRules:
  - name: "main condition"
    description: "source is airflow"
    priority: 0 # rule with the highest priority acts as main condition
    condition: 'request.getHeader("X-Trino-Source") == "airflow"'
    actions:
      - ""
  - name: "airflow subrules"
    compositeRuleType: "ActivationRuleGroup" # use ActivationRuleGroup to simulate if/else
    composingRules:
      - name: "label foo"
        description: "label client tag is foo"
        priority: 0
        condition: 'request.getHeader("X-Trino-Client-Tags") contains "label=foo"'
        actions:
          - 'result.put("routingGroup", "etl-foo")'
      - name: "label bar"
        description: "label client tag is bar"
        priority: 0
        condition: 'request.getHeader("X-Trino-Client-Tags") contains "label=bar"'
        actions:
          - 'result.put("routingGroup", "etl-bar")'
      - name: "airflow default"
        description: "airflow queries default to etl"
        condition: "true"
        actions:
          - 'result.put("routingGroup", "etl")'
"""

IF_STATEMENTS = r"""
---
name: "airflow rules"
description: "if query from airflow"
condition: "request.getHeader(\"X-Trino-Source\") == \"airflow\""
actions:
  - "if (request.getHeader(\"X-Trino-Client-Tags\") contains \"label=foo\") {
      result.put(\"routingGroup\", \"etl-foo\")
    }
    else if (request.getHeader(\"X-Trino-Client-Tags\") contains \"label=bar\") {
      result.put(\"routingGroup\", \"etl-bar\")
    }
    else {
      result.put(\"routingGroup\", \"etl\")
    }"
"""

AIRFLOW = {"X-Trino-Source": "airflow"}
AIRFLOW_SPECIAL = {"X-Trino-Source": "airflow", "X-Trino-Client-Tags": "label=special"}
AIRFLOW_FOO = {"X-Trino-Source": "airflow", "X-Trino-Client-Tags": "label=foo"}
AIRFLOW_BAR = {"X-Trino-Source": "airflow", "X-Trino-Client-Tags": "team=x,label=bar"}
CLI = {"X-Trino-Source": "trino-cli"}


@pytest.mark.parametrize(
    ("rules", "headers", "group"),
    [
        (AIRFLOW_RULES, AIRFLOW, "etl"),
        # Both rules fire; the second, later in the file, writes last.
        (AIRFLOW_RULES, AIRFLOW_SPECIAL, "etl-special"),
        (AIRFLOW_RULES, CLI, None),
        (NULL_CHECK_CONDITION, {"X-Trino-Client-Tags": "label=foo"}, "foo"),
        (NULL_CHECK_CONDITION, {}, None),
        (CONTAINS_OPERATOR_CONDITION, {"X-Trino-Client-Tags": "a=b,label=foo"}, "foo"),
        (CONTAINS_OPERATOR_CONDITION, {}, None),
        (ATOMIC_AIRFLOW_RULE, AIRFLOW, "etl"),
        (ATOMIC_AIRFLOW_RULE, AIRFLOW_SPECIAL, None),
        (PRIORITY_RULES, AIRFLOW, "etl"),
        (PRIORITY_RULES, AIRFLOW_SPECIAL, "etl-special"),
        (ACTIVATION_GROUP, AIRFLOW_SPECIAL, "etl-special"),
        (ACTIVATION_GROUP, AIRFLOW, "etl"),
        (ACTIVATION_GROUP, CLI, None),
        (CONDITIONAL_GROUP, AIRFLOW_FOO, "etl-foo"),
        (CONDITIONAL_GROUP, AIRFLOW_BAR, "etl-bar"),
        (CONDITIONAL_GROUP, AIRFLOW, "etl"),
        (CONDITIONAL_GROUP, {"X-Trino-Client-Tags": "label=foo"}, None),
        (IF_STATEMENTS, AIRFLOW_FOO, "etl-foo"),
        (IF_STATEMENTS, AIRFLOW_BAR, "etl-bar"),
        (IF_STATEMENTS, AIRFLOW, "etl"),
        (IF_STATEMENTS, CLI, None),
    ],
)
def test_documented_example_routes_as_documented(rules, headers, group):
    selection = select(rules, headers)
    assert selection.group == group
    assert selection.source == ("rule" if group else "default")


def test_priority_order_decides_when_the_file_order_is_reversed():
    reversed_file = "---" + PRIORITY_RULES.split("---")[2] + "---" + PRIORITY_RULES.split("---")[1]
    assert reversed_file.index("airflow special") < reversed_file.index('name: "airflow"\n')
    assert select(reversed_file, AIRFLOW_SPECIAL).group == "etl-special"


def test_without_priorities_the_file_order_decides():
    reversed_file = "---" + AIRFLOW_RULES.split("---")[2] + "---" + AIRFLOW_RULES.split("---")[1]
    assert select(reversed_file, AIRFLOW_SPECIAL).group == "etl"


def test_no_matching_rule_leaves_the_routing_group_header_in_charge():
    selection = select(AIRFLOW_RULES, {**CLI, "X-Trino-Routing-Group": "bi"})
    assert (selection.group, selection.source) == ("bi", "header")
