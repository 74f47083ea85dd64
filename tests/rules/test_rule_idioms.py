"""The idioms of trino-gateway's rule files beyond its documentation page: shared ``state``,
``FileBasedRoutingGroupSelector.RESULTS_ROUTING_GROUP_KEY``, ``trinoRequestUser`` and
``trinoQueryProperties`` (user, source, client tags, query type, catalogs, schemas, tables)."""

from __future__ import annotations

import base64

import jwt
import pytest

from gateway.routing.rules.request import UserSource
from tests.rules.helpers import outcome, select

STATE_RULES = """
---
name: "initialize state"
priority: 0
condition: "true"
actions:
  - |
    state.put("triggeredRules",new HashSet())
---
name: "airflow"
priority: 1
condition: |
  request.getHeader("X-Trino-Source") == "airflow"
actions:
  - |
    result.put(FileBasedRoutingGroupSelector.RESULTS_ROUTING_GROUP_KEY, "etl")
  - |
    state.get("triggeredRules").add("airflow")
---
name: "airflow special"
priority: 2
condition: |
  state.get("triggeredRules").contains("airflow") && request.getHeader("X-Trino-Client-Tags") contains "label=special"
actions:
  - |
    result.put(FileBasedRoutingGroupSelector.RESULTS_ROUTING_GROUP_KEY, "etl-special")
"""


def test_state_is_shared_between_the_rules_of_one_evaluation():
    assert select(STATE_RULES, {"X-Trino-Source": "airflow", "X-Trino-Client-Tags": "label=special"}).group == (
        "etl-special"
    )
    assert select(STATE_RULES, {"X-Trino-Source": "airflow"}).group == "etl"
    # A query without the airflow source sees a fresh state: the special rule does not fire.
    assert select(STATE_RULES, {"X-Trino-Client-Tags": "label=special"}).group is None


PROPERTY_RULES = """
---
name: "nomatch"
priority: -1
condition: "true"
actions:
  - "result.put(\\"routingGroup\\", \\"no-match\\")"
---
name: "user"
condition: "trinoRequestUser.userExistsAndEquals(\\"will\\")"
actions:
  - "result.put(\\"routingGroup\\", \\"will-group\\")"
---
name: "tables"
condition: |
  trinoQueryProperties.tablesContains("cat_default.schem_default.tblz")
  && trinoQueryProperties.tablesContains("catx.schemx.tblx")
  && trinoQueryProperties.getSchemas().contains("schemy")
  && trinoQueryProperties.getCatalogs().contains("catx")
actions:
  - "result.put(\\"routingGroup\\", \\"tbl-group\\")"
---
name: "catalog-schema"
condition: |
  trinoQueryProperties.getCatalogSchemas.contains("catx.nondefault")
  && trinoQueryProperties.getCatalogSchemas.contains("caty.default")
  && !trinoQueryProperties.getCatalogSchemas.contains("catx.default")
actions:
  - "result.put(\\"routingGroup\\", \\"catalog-schema-group\\")"
---
name: "query-type"
condition: |
  trinoQueryProperties.getQueryType().toLowerCase.equals("insert")
actions:
  - "result.put(\\"routingGroup\\", \\"type-group\\")"
---
name: "prepared-statement-header"
condition: |
  trinoQueryProperties.getQueryType().toLowerCase.equals("query") && trinoQueryProperties.tablesContains("cat.schem.foo")
actions:
  - "result.put(\\"routingGroup\\", \\"statement-header-group\\")"
---
name: "defaults-group"
condition: |
  trinoQueryProperties.getDefaultCatalog().equals(java.util.Optional.of("other_catalog"))
  && trinoQueryProperties.getDefaultSchema().equals(java.util.Optional.of("other_schema"))
actions:
  - "result.put(\\"routingGroup\\", \\"defaults-group\\")"
---
name: "system-group"
condition: |
  trinoQueryProperties.getCatalogs().contains("system")
actions:
  - "result.put(\\"routingGroup\\", \\"system\\")"
"""


@pytest.mark.parametrize(
    ("headers", "sql", "group"),
    [
        ({"X-Trino-User": "will"}, "SELECT 1", "will-group"),
        ({"X-Trino-User": "bob"}, "SELECT 1", "no-match"),
        (
            {"X-Trino-Catalog": "cat_default", "X-Trino-Schema": "schem_default"},
            "SELECT * FROM tblz JOIN schemy.tbly ON true JOIN catx.schemx.tblx ON true",
            "tbl-group",
        ),
        (
            {"X-Trino-Catalog": "caty", "X-Trino-Schema": "default"},
            "SELECT * FROM catx.nondefault.t1 JOIN t2 ON true",
            "catalog-schema-group",
        ),
        ({}, "INSERT INTO c.s.t SELECT * FROM c.s.u", "type-group"),
        ({"X-Trino-Prepared-Statement": "p1=SELECT+*+FROM+cat.schem.foo"}, "EXECUTE p1", "statement-header-group"),
        ({"X-Trino-Catalog": "other_catalog", "X-Trino-Schema": "other_schema"}, "SELECT 1", "defaults-group"),
        ({}, "SELECT * FROM system.runtime.queries", "system"),
        ({}, "SELEC broken", "no-match"),
    ],
)
def test_query_and_user_properties_route_as_written(headers, sql, group):
    assert select(PROPERTY_RULES, headers, sql).group == group


ALICE_RULES = """
---
name: "alice"
condition: 'trinoRequestUser.getUser().orElse("") == "alice"'
actions: ['result.put("routingGroup", "alice-group")']
"""


def test_without_verification_the_user_comes_from_the_header_or_basic_auth_and_never_from_a_jwt():
    basic = "Basic " + base64.b64encode(b"alice:secret").decode()
    assert select(ALICE_RULES, {"Authorization": basic}).group == "alice-group"
    assert select(ALICE_RULES, {"X-Trino-User": "alice", "Authorization": "Basic Ym9iOng="}).group == "alice-group"
    # Anyone can write a JWT naming anyone: nobody verified this one, so it names no user.
    forged = jwt.encode({"email": "alice"}, "k" * 32, algorithm="HS256")
    assert select(ALICE_RULES, {"Authorization": f"Bearer {forged}"}).group is None
    assert select(ALICE_RULES, {"Cookie": f"Trino-UI-Token={forged}"}).group is None


def test_an_unverified_jwt_names_the_user_only_when_the_operator_says_so():
    trusting = UserSource(token_user_field="email", trust_unverified_jwt=True)
    token = jwt.encode({"email": "alice", "sub": "a-1"}, "k" * 32, algorithm="HS256")
    assert select(ALICE_RULES, {"Authorization": f"Bearer {token}"}, users=trusting).group == "alice-group"
    assert select(ALICE_RULES, {"Cookie": f"Trino-UI-Token={token}"}, users=trusting).group == "alice-group"
    assert select(ALICE_RULES, {"Authorization": "Bearer not-a-jwt"}, users=trusting).group is None
    by_sub = UserSource(token_user_field="sub", trust_unverified_jwt=True)
    assert select(ALICE_RULES, {"Authorization": f"Bearer {token}"}, users=by_sub).group is None


def test_a_verified_user_wins_over_every_claim_of_the_request():
    claims = {"X-Trino-User": "alice", "Authorization": "Basic " + base64.b64encode(b"alice:guess").decode()}
    # The gateway verified bob's credentials: the header saying alice does not count.
    assert select(ALICE_RULES, claims, verified_user="bob").group is None
    assert select(ALICE_RULES, {"X-Trino-User": "bob"}, verified_user="alice").group == "alice-group"
    # It checked the credentials and refused them: no user at all, whatever the header says.
    assert select(ALICE_RULES, claims, verified_user="").group is None


def test_rules_on_resource_group_query_type_and_parse_failures():
    rules = """
---
name: "writes"
condition: 'trinoQueryProperties.getResourceGroupQueryType() == "INSERT"'
actions: ['result.put("routingGroup", "etl")']
---
name: "ddl"
condition: 'trinoQueryProperties.getResourceGroupQueryType() == "DATA_DEFINITION"'
actions: ['result.put("routingGroup", "admin")']
---
name: "unparsed"
condition: '!trinoQueryProperties.isQueryParsingSuccessful()'
actions: ['result.put("routingGroup", "unparsed")']
"""
    assert select(rules, sql="CREATE TABLE memory.default.t AS SELECT 1").group == "etl"
    assert select(rules, sql="DROP TABLE memory.default.t").group == "admin"
    assert select(rules, sql="SELECT 1").group is None
    assert select(rules, sql="this is not sql").group == "unparsed"


def test_the_rule_that_decided_is_reported():
    result = outcome(PROPERTY_RULES, {"X-Trino-User": "will"})
    assert result.routing_group == "will-group"
    assert result.decided_by == "user"
    assert result.fired == ["nomatch", "user"]
