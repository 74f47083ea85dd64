"""The query history API with roles: one query by its id, the history's filters, and what a USER may
read (its own queries; of everyone's only counts)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import requests
from trino.exceptions import TrinoUserError

from gateway.auth.password_file import hash_password
from tests.conftest import connect, run_query
from tests.gateway.conftest import three_backends
from tests.inprocess import InProcessGateway

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()}


@pytest.fixture
def secured(make_gateway, sims, tmp_path) -> InProcessGateway:
    """alice is ADMIN, bob is USER; the gateway's admin calls (``call``, ``queries``) are alice's."""
    password_file = tmp_path / "password.db"
    password_file.write_text("".join(f"{u}:{hash_password(pw, rounds=4)}\n" for u, pw in PASSWORDS.items()))
    auth = {"password_file": str(password_file), "roles": {"ADMIN": ["alice"], "USER": ["bob"]}}
    gateway = make_gateway({**three_backends(sims), "auth": auth})
    gateway.admin_headers = basic("alice")
    return gateway


def get(gateway: InProcessGateway, path: str, user: str) -> tuple[int, Any]:
    answer = requests.get(gateway.url + path, headers=basic(user), timeout=15)
    return answer.status_code, answer.json()


def test_one_query_is_read_by_its_id_and_a_user_gets_404_for_another_users(secured):
    run_query(secured.url, "SELECT 'bob'", user="bob")
    run_query(secured.url, "SELECT 'alice'", user="alice")
    listed = {q["user"]: q for q in secured.queries()["queries"]}
    bobs, alices = listed["bob"]["queryId"], listed["alice"]["queryId"]

    assert get(secured, f"/gateway/queries/{bobs}", "bob") == (200, listed["bob"])
    assert get(secured, f"/gateway/queries/{alices}", "alice") == (200, listed["alice"])
    assert get(secured, f"/gateway/queries/{bobs}", "alice") == (200, listed["bob"])
    # bob may not see alice's query, and is not told it exists: the same answer as for no query at all.
    status, theirs = get(secured, f"/gateway/queries/{alices}", "bob")
    nothing = get(secured, "/gateway/queries/20000101_000000_00000_zzzzz", "bob")
    assert (status, nothing[0]) == (404, 404)
    assert theirs["error"] == f"no query '{alices}' in the history"
    assert nothing[1]["error"] == "no query '20000101_000000_00000_zzzzz' in the history"


def test_the_history_is_filtered_by_sql_text_and_query_id(secured):
    run_query(secured.url, "SELECT 'Find_Me 100%'", user="carol")
    run_query(secured.url, "SELECT 'findXme 100x'", user="carol")
    by_text = {q["query"]: q for q in secured.queries(user="carol")["queries"]}
    first, second = by_text["SELECT 'Find_Me 100%'"], by_text["SELECT 'findXme 100x'"]

    def texts(**filters: str) -> list[str]:
        return sorted(q["query"] for q in secured.queries(user="carol", **filters)["queries"])

    assert texts(text="find_me") == ["SELECT 'Find_Me 100%'"]  # any case; _ is no wildcard
    assert texts(text="100%25") == ["SELECT 'Find_Me 100%'"]  # nor is %
    assert texts(text="FIND") == ["SELECT 'Find_Me 100%'", "SELECT 'findXme 100x'"]
    assert texts(id=second["queryId"]) == [second["query"]]
    common = first["queryId"][: first["queryId"].index("_") + 1]  # the day: 20261201_
    assert len(texts(id=common)) == 2
    assert texts(id=common, text="findx") == [second["query"]]
    assert secured.queries(user="carol", id="nope_")["total"] == 0


def test_query_counts_cover_everyones_queries_for_a_user_too(secured):
    run_query(secured.url, "SELECT 1", user="alice")
    run_query(secured.url, "SELECT 2", user="bob", http_headers={"X-Trino-Routing-Group": "etl"})
    with pytest.raises(TrinoUserError), connect(secured.url, user="carol") as conn:
        conn.cursor().execute("SELECT * FROM tpch.tiny.nope")

    status, stats = get(secured, "/gateway/queries/stats", "bob")
    assert status == 200
    assert stats["until"] - stats["since"] == 3600 * 1000 and stats["step"] == 60
    buckets = stats["buckets"]
    assert all(b["at"] % 60_000 == 0 and stats["since"] - 60_000 < b["at"] < stats["until"] for b in buckets)
    by_group: dict[str, list[int]] = {}
    for bucket in buckets:
        counted = by_group.setdefault(bucket["routingGroup"], [0, 0])
        counted[0] += bucket["queries"]
        counted[1] += bucket["failed"]
    assert by_group == {"adhoc": [2, 1], "etl": [1, 0]}
    assert {b["backend"] for b in buckets if b["routingGroup"] == "etl"} == {"trino-3"}
    # Nothing submitted in the range: no buckets.
    status, old = get(secured, "/gateway/queries/stats?since=0&until=600000&step=600", "bob")
    assert (status, old) == (200, {"since": 0, "until": 600_000, "step": 600, "buckets": []})


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ("step=9", "step must be between 10 and 3600"),
        ("step=3601", "step must be between 10 and 3600"),
        ("since=2000&until=1000", "since (2000) must be before until (1000)"),
        ("since=0&until=10000001&step=10", "1001 buckets of 10 s from since to until; at most 1000"),
        ("since=yesterday", "since must be an integer"),
    ],
)
def test_query_counts_refuse_bad_ranges_naming_the_limit(secured, parameters, message):
    status, refused = get(secured, f"/gateway/queries/stats?{parameters}", "alice")
    assert status == 400 and message in refused["error"]
    assert get(secured, "/gateway/queries/stats?since=0&until=10000000&step=10", "alice")[0] == 200
