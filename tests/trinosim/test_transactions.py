"""Transactions as Trino keeps them: known only to the server that started them, ended by COMMIT or
ROLLBACK, aborted when idle, forgotten by a restart; autocommit statements unaffected."""

from __future__ import annotations

import uuid

import pytest
from trino.exceptions import DatabaseError, TrinoUserError
from trino.transaction import IsolationLevel

from tests.conftest import connect
from tests.trinosim.helpers import follow, submit, wait_until
from trinosim import TrinoSimProcess


def _in_transaction(url: str, statements: list[str]) -> tuple[str, list[list[list[object]]]]:
    """Run ``statements`` in one transaction with the Python client, then COMMIT."""
    with connect(url, isolation_level=IsolationLevel.READ_COMMITTED) as conn:
        cursor = conn.cursor()
        results = []
        for sql in statements:
            cursor.execute(sql)
            results.append(cursor.fetchall())
        transaction_id = conn.transaction.id
        conn.commit()
    return transaction_id, results


def _final(url: str, sql: str, transaction_id: str) -> dict[str, object]:
    return follow(submit(url, sql, **{"X-Trino-Transaction-Id": transaction_id}))[-1]


def test_the_python_client_runs_a_transaction_and_commits_it(sims):
    sim = sims[0]
    transaction_id, results = _in_transaction(
        sim.url, ["SELECT count(*) FROM tpch.tiny.nation", "SELECT 1", "SELECT name FROM tpch.tiny.region LIMIT 1"]
    )
    assert results == [[[25]], [[1]], [["AFRICA"]]]
    uuid.UUID(transaction_id)
    statements = [q for q in sim.queries() if q["session"]["transactionId"] == transaction_id]
    # The three statements and the COMMIT ran in it (START TRANSACTION started it: it carried none).
    assert [q["query"] for q in statements][-1] == "COMMIT" and len(statements) == 4
    assert all(q["state"] == "FINISHED" for q in statements)
    assert transaction_id not in {t["id"] for t in sim.transactions()}


def test_a_transaction_is_known_only_to_the_server_that_started_it(sims):
    first, other = sims[0], sims[1]
    started = follow(submit(first.url, "START TRANSACTION"))
    transaction_id = next(iter({p.get("id") for p in started}))  # any page: just the query
    assert transaction_id
    created = [t["id"] for t in first.transactions()]
    elsewhere = _final(other.url, "SELECT 1", created[-1])
    assert elsewhere["error"]["errorName"] == "UNKNOWN_TRANSACTION"
    assert f"Unknown transaction ID: {created[-1]}. Possibly expired?" in elsewhere["error"]["message"]
    assert "error" not in _final(first.url, "SELECT 1", created[-1])
    assert "error" not in _final(first.url, "ROLLBACK", created[-1])
    # Ended: the id is unknown from now on, even to the server that started it.
    assert _final(first.url, "SELECT 1", created[-1])["error"]["errorName"] == "UNKNOWN_TRANSACTION"


def test_made_up_and_ended_ids_fail_and_autocommit_is_unaffected(sims):
    sim = sims[0]
    assert _final(sim.url, "SELECT 1", str(uuid.uuid4()))["error"]["errorName"] == "UNKNOWN_TRANSACTION"
    assert "error" not in _final(sim.url, "SELECT 1", "NONE")
    with pytest.raises(TrinoUserError) as raised, connect(sim.url) as conn:
        conn.cursor().execute("COMMIT")
    assert raised.value.error_name == "NOT_IN_TRANSACTION"


def test_a_nested_start_transaction_is_refused(sims):
    with connect(sims[0].url, isolation_level=IsolationLevel.READ_COMMITTED) as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT 1")
        cursor.fetchall()
        with pytest.raises(TrinoUserError) as raised:
            cursor.execute("START TRANSACTION")
        assert raised.value.error_name == "NOT_SUPPORTED" and "Nested transactions" in raised.value.message
        conn.rollback()


def test_an_idle_transaction_is_aborted_after_the_idle_timeout(make_sim):
    sim = make_sim(name="idle", transaction_idle_timeout="1s")
    conn = connect(sim.url, isolation_level=IsolationLevel.READ_COMMITTED)
    cursor = conn.cursor()
    cursor.execute("SELECT 1")
    cursor.fetchall()
    transaction_id = conn.transaction.id
    wait_until(lambda: not sim.transactions(), timeout=10, what="the idle transaction to be aborted")
    with pytest.raises(TrinoUserError) as raised:
        cursor.execute("SELECT 2")
    assert raised.value.error_name == "UNKNOWN_TRANSACTION" and transaction_id in raised.value.message
    # COMMIT (and ROLLBACK) of the aborted transaction fail the same way, as on Trino.
    with pytest.raises(DatabaseError, match="UNKNOWN_TRANSACTION"):
        conn.commit()
    conn.close()


def test_a_restarted_server_knows_no_transaction(sim_factory):
    server: TrinoSimProcess = sim_factory(name="restarts")
    follow(submit(server.url, "START TRANSACTION"))
    transaction_id = server.transactions()[0]["id"]
    server.stop()
    server.start()
    assert _final(server.url, "SELECT 1", transaction_id)["error"]["errorName"] == "UNKNOWN_TRANSACTION"


def test_the_trino_cli_runs_a_transaction(sim, trino_cli):
    result = trino_cli(sim.url, "START TRANSACTION; SELECT 42; COMMIT")
    assert result.returncode == 0, result.stderr
    assert '"42"' in result.stdout
    statements = [q for q in sim.queries() if q["query"] in ("SELECT 42", "COMMIT")]
    transaction_ids = {q["session"]["transactionId"] for q in statements[-2:]}
    assert len(transaction_ids) == 1 and None not in transaction_ids
