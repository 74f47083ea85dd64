"""A cached result's key: the same for the same query of the same owner with the same X-Trino-*
headers; different as soon as anything that can change the answer, or whose answer it is, differs."""

from __future__ import annotations

import pytest

from gateway.cache.key import cache_key, is_key, owner_of

SECRET = b"s" * 32
SQL = "select * from orders where id = ?"
HEADERS = [
    (b"x-trino-user", b"alice"),
    (b"x-trino-catalog", b"hive"),
    (b"x-trino-schema", b"sales"),
    (b"x-trino-session", b"query_max_run_time=1h,join_distribution_type=BROADCAST"),
    (b"user-agent", b"Trino JDBC Driver/446"),
]


def key(
    headers: list[tuple[bytes, bytes]] = HEADERS,
    sql: str = SQL,
    group: str = "adhoc",
    owner: str = "verified:alice",
    secret: bytes = SECRET,
) -> str:
    return cache_key(secret, sql, group, owner, headers)


def test_the_same_inputs_give_the_same_key_of_64_hex_digits():
    assert key() == key(list(HEADERS))
    assert is_key(key())


@pytest.mark.parametrize(
    "changed",
    [
        {"sql": "select * from orders where id = 2"},
        {"group": "etl"},
        {"owner": "verified:bob"},
        {"secret": b"t" * 32},
    ],
    ids=["sql", "group", "owner", "secret"],
)
def test_the_sql_the_group_the_owner_and_the_secret_each_change_the_key(changed):
    assert key(**changed) != key()


@pytest.mark.parametrize(
    "header",
    [
        (b"x-trino-catalog", b"iceberg"),
        (b"x-trino-schema", b"staging"),
        (b"x-trino-session", b"query_max_run_time=1h"),
        (b"x-trino-time-zone", b"Europe/Paris"),
        (b"x-trino-language", b"fr-FR"),
        (b"x-trino-role", b"hive=ROLE{analyst}"),
        (b"x-trino-path", b"hive.udfs"),
        (b"x-trino-extra-credential", b"token=abc"),
        (b"x-trino-prepared-statement", b"q1=select+1"),
        (b"x-trino-client-capabilities", b"PATH,PARAMETRIC_DATETIME"),
        (b"x-trino-query-data-encoding", b"json+zstd"),
        (b"x-trino-foo", b"bar"),  # a header a later Trino adds: fail-closed
    ],
    ids=lambda header: header[0].decode() if isinstance(header, tuple) else None,
)
def test_any_x_trino_header_that_can_change_the_answer_changes_the_key(header):
    name = header[0]
    others = [(n, v) for n, v in HEADERS if n != name]
    assert key([*others, header]) != key()


def test_a_header_is_told_apart_from_its_absence_and_from_an_empty_value():
    assert key([*HEADERS, (b"x-trino-time-zone", b"")]) != key()


@pytest.mark.parametrize(
    "name",
    [
        b"x-trino-user",
        b"x-trino-source",
        b"x-trino-client-tags",
        b"x-trino-client-info",
        b"x-trino-trace-token",
        b"x-trino-routing-group",
    ],
)
def test_the_headers_that_describe_only_the_client_or_the_request_leave_the_key_alone(name):
    others = [(n, v) for n, v in HEADERS if n != name]
    assert key([*others, (name, b"something else")]) == key()
    assert key(others) == key()


@pytest.mark.parametrize("name", [b"user-agent", b"accept-encoding", b"authorization", b"x-forwarded-for"])
def test_headers_that_are_not_x_trino_leave_the_key_alone(name):
    assert key([*HEADERS, (name, b"gzip, whatever")]) == key()


def test_header_names_count_whatever_their_case():
    assert key([(name.upper(), value) for name, value in HEADERS]) == key()


def test_the_order_of_session_properties_and_of_repeated_header_lines_does_not_change_the_key():
    others = [(n, v) for n, v in HEADERS if n != b"x-trino-session"]
    swapped = key([*others, (b"x-trino-session", b"join_distribution_type=BROADCAST, query_max_run_time=1h")])
    assert swapped == key()
    one = (b"x-trino-session", b"query_max_run_time=1h")
    two = (b"x-trino-session", b"join_distribution_type=BROADCAST")
    assert key([*others, one, two]) == key([*others, two, one]) == key()
    roles = [(b"x-trino-role", b"hive=ROLE{a}"), (b"x-trino-role", b"system=ROLE{b}")]
    assert key([*HEADERS, *roles]) == key([*HEADERS, *reversed(roles)])


def test_the_order_of_the_headers_themselves_does_not_change_the_key():
    assert key(list(reversed(HEADERS))) == key()


def test_parts_cannot_run_into_each_other():
    # Length-prefixed: moving text from one part to the next makes another key.
    assert cache_key(SECRET, "select 1", "ab", "c", []) != cache_key(SECRET, "select 1", "a", "bc", [])


def test_the_owner_is_the_verified_user_whatever_the_request_names():
    assert owner_of("alice", "bob", b"Basic xyz", None) == owner_of("alice", "mallory", None, None)
    assert owner_of("alice", None, None, None) != owner_of("bob", None, None, None)


def test_a_named_user_is_told_apart_by_the_credentials_sent_with_the_name():
    with_password = owner_of(None, "alice", b"Basic YWxpY2U6c2VjcmV0", None)
    assert with_password == owner_of(None, "alice", b"Basic YWxpY2U6c2VjcmV0", None)
    assert with_password != owner_of(None, "alice", b"Basic YWxpY2U6Z3Vlc3M=", None)
    assert with_password != owner_of(None, "alice", None, None)
    assert owner_of(None, "alice", None, None) != owner_of(None, "bob", None, None)
    # A name alone is never the verified user of that name.
    assert owner_of(None, "alice", None, None) != owner_of("alice", None, None, None)


def test_an_empty_verified_user_counts_as_not_verified():
    assert owner_of("", "alice", None, None) == owner_of(None, "alice", None, None)
    assert owner_of("", None, None, None) != owner_of("", "alice", None, None)


def test_in_a_shared_group_the_owner_is_the_group_whoever_the_user_is():
    assert owner_of("alice", None, None, "dash") == owner_of(None, "bob", b"Basic x", "dash")
    assert owner_of("alice", None, None, "dash") != owner_of("alice", None, None, "etl")


def test_is_key_accepts_64_lowercase_hex_digits_only():
    assert is_key("0" * 64)
    assert is_key("0123456789abcdef" * 4)
    assert not is_key("0" * 63)
    assert not is_key("0" * 65)
    assert not is_key("A" * 64)
    assert not is_key("g" * 64)
    assert not is_key("")
