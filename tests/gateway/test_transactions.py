"""Transaction affinity: every statement of a transaction goes to the backend that started it, from
any worker or gateway node, whatever the routers and the active flag say; the binding ends when the
transaction does."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from trino.exceptions import DatabaseError, TrinoQueryError, TrinoUserError
from trino.transaction import IsolationLevel

from tests.conftest import connect
from tests.gateway.conftest import every_store
from tests.trinosim.helpers import wait_until
from trinosim.gateway_process import GatewayProcess

ROUND_ROBIN = {"routing": {"router": "round-robin"}}


def _two_backends(first, second, **sections) -> dict:
    # Round-robin: without affinity, consecutive statements would alternate between the two.
    return {
        **ROUND_ROBIN,
        **sections,
        "backends": [{"name": first.name, "proxy_to": first.url}, {"name": second.name, "proxy_to": second.url}],
    }


def _transaction(url: str, statements: int = 3, tag: str = "") -> str:
    with connect(url, isolation_level=IsolationLevel.READ_COMMITTED) as conn:
        cursor = conn.cursor()
        for i in range(statements):
            cursor.execute(f"SELECT {i} AS n{tag}")
            assert cursor.fetchall() == [[i]]
        transaction_id = conn.transaction.id
        conn.commit()
    return transaction_id


def _where_transactions_ran(clusters) -> dict[str, set[str]]:
    """Transaction id -> the clusters that ran any statement of it."""
    seen: dict[str, set[str]] = defaultdict(set)
    for cluster in clusters:
        for query in cluster.queries():
            transaction_id = query["session"]["transactionId"]
            if transaction_id:
                seen[transaction_id].add(cluster.name)
    return seen


def _open_transactions(gateway) -> dict[str, int]:
    return {b["name"]: b["openTransactions"] for b in gateway.call("GET", "/gateway/health")[1]}


def test_every_statement_of_a_transaction_goes_to_the_backend_that_started_it(make_sim, make_gateway):
    first, second = make_sim(name="tx-1"), make_sim(name="tx-2")
    gateway = make_gateway(_two_backends(first, second))
    transaction_ids = [_transaction(gateway.url, statements=3) for _ in range(6)]
    ran = _where_transactions_ran([first, second])
    assert set(transaction_ids) <= set(ran)
    for transaction_id in transaction_ids:
        assert len(ran[transaction_id]) == 1, ran[transaction_id]
    # Both backends started some (round-robin still decides where a transaction starts).
    assert {name for names in ran.values() for name in names} == {"tx-1", "tx-2"}
    history = gateway.queries(transaction=transaction_ids[0])["queries"]
    assert len(history) == 4 and {q["transactionId"] for q in history} == {transaction_ids[0]}  # 3 + COMMIT
    # The history says why: each went to its transaction's owner, whatever the selector would say.
    assert {(q["routingSource"], q["routingRule"]) for q in history} == {("transaction", None)}
    assert _open_transactions(gateway) == {"tx-1": 0, "tx-2": 0}


def test_a_deactivated_owner_finishes_its_transaction_while_new_ones_go_elsewhere(make_sim, make_gateway):
    first, second = make_sim(name="own-1"), make_sim(name="own-2")
    gateway = make_gateway(_two_backends(first, second))
    conn = connect(gateway.url, isolation_level=IsolationLevel.READ_COMMITTED)
    cursor = conn.cursor()
    cursor.execute("SELECT 1")
    cursor.fetchall()
    owner = next(c for c in (first, second) if c.transactions())
    other = second if owner is first else first
    assert _open_transactions(gateway)[owner.name] == 1
    gateway.deactivate(owner.name)
    for i in range(3):
        cursor.execute(f"SELECT {i}")
        assert cursor.fetchall() == [[i]]
    conn.commit()
    transaction_id = next(iter(_where_transactions_ran([owner])))
    assert _where_transactions_ran([first, second])[transaction_id] == {owner.name}
    # New transactions (and queries) go to the active backend only.
    started = _transaction(gateway.url, statements=1)
    assert _where_transactions_ran([first, second])[started] == {other.name}
    assert _open_transactions(gateway) == {"own-1": 0, "own-2": 0}


def test_rollback_and_an_owner_that_forgot_the_transaction_release_the_binding(make_sim, make_gateway):
    # The owner forgets idle transactions after 1 s (Trino's transaction.idle-timeout).
    first = make_sim(name="forgets", transaction_idle_timeout="1s")
    gateway = make_gateway({"backends": [{"name": "forgets", "proxy_to": first.url}]})
    with connect(gateway.url, isolation_level=IsolationLevel.READ_COMMITTED) as conn:
        conn.cursor().execute("SELECT 1")
        assert _open_transactions(gateway) == {"forgets": 1}
        conn.rollback()
    assert _open_transactions(gateway) == {"forgets": 0}

    conn = connect(gateway.url, isolation_level=IsolationLevel.READ_COMMITTED)
    cursor = conn.cursor()
    cursor.execute("SELECT 1")
    cursor.fetchall()  # the statement ended: the transaction is idle from now on
    assert _open_transactions(gateway) == {"forgets": 1}
    wait_until(lambda: not first.transactions(), timeout=10, what="the backend to abort the idle transaction")
    with pytest.raises(TrinoUserError) as raised:
        conn.cursor().execute("SELECT 2")
    assert raised.value.error_name == "UNKNOWN_TRANSACTION"
    assert _open_transactions(gateway) == {"forgets": 0}
    with pytest.raises(DatabaseError):
        conn.commit()


@every_store
def test_the_binding_is_shared_through_the_store(make_sim, make_gateway, lasting_store_url):
    first, second = make_sim(name="shared-1"), make_sim(name="shared-2")
    config = _two_backends(first, second)
    starter = make_gateway(config, store=lasting_store_url)
    follower = make_gateway(config, store=lasting_store_url)
    conn = connect(starter.url, isolation_level=IsolationLevel.READ_COMMITTED)
    conn.cursor().execute("SELECT 1")
    transaction_id = conn.transaction.id
    # The same transaction continued through another gateway that never saw it start.
    headers = {"X-Trino-Transaction-Id": transaction_id, "X-Trino-User": "test"}
    for i in range(4):
        page = requests.post(f"{follower.url}/v1/statement", data=f"SELECT {i}", headers=headers, timeout=10).json()
        while "nextUri" in page:
            page = requests.get(page["nextUri"], headers=headers, timeout=10).json()
        assert "error" not in page, page
    assert len(_where_transactions_ran([first, second])[transaction_id]) == 1
    conn.commit()


def test_a_restarted_owner_takes_its_transactions_with_it(loop_thread, make_gateway):
    from trinosim.inprocess import InProcessSim

    owner = InProcessSim(loop_thread, name="restarts").start()
    try:
        config = {
            "health": {"interval": 0.2, "failure_threshold": 1, "success_threshold": 1},
            "backends": [{"name": "restarts", "proxy_to": owner.url}],
        }
        gateway = make_gateway(config)
        conn = connect(gateway.url, isolation_level=IsolationLevel.READ_COMMITTED)
        conn.cursor().execute("SELECT 1")
        assert _open_transactions(gateway) == {"restarts": 1}
        time.sleep(2.5)  # an uptime from which a restart can be told (its printed precision is 1 %)
        port = owner.port
        owner.stop()
        owner = InProcessSim(loop_thread, name="restarts", port=port).start()
        wait_until(lambda: _open_transactions(gateway) == {"restarts": 0}, timeout=10, what="the binding to end")
        assert "backend restarts restarted: its 1 open transactions are gone" in gateway.log()
    finally:
        owner.stop()


def test_idle_bindings_end(make_sim, make_gateway):
    backend = make_sim(name="idles")
    gateway = make_gateway(
        {"transactions": {"idle_timeout": 1}, "backends": [{"name": "idles", "proxy_to": backend.url}]}
    )
    conn = connect(gateway.url, isolation_level=IsolationLevel.READ_COMMITTED)
    conn.cursor().execute("SELECT 1")
    assert _open_transactions(gateway) == {"idles": 1}
    wait_until(lambda: _open_transactions(gateway) == {"idles": 0}, timeout=10, what="the idle binding to end")


def test_transactions_are_counted_in_metrics(make_sim, make_gateway):
    backend = make_sim(name="counted")
    gateway = make_gateway({"backends": [{"name": "counted", "proxy_to": backend.url}]})
    _transaction(gateway.url, statements=1)
    exposition = requests.get(f"{gateway.url}/metrics", timeout=10).text
    for line in (
        'trino_gateway_transactions_total{backend="counted",event="started"}',
        'trino_gateway_transactions_total{backend="counted",event="committed"}',
        'trino_gateway_open_transactions{backend="counted"} 0.0',
    ):
        assert line in exposition, line


# -- child processes: several workers, a killed owner ---------------------------------------------
@every_store
def test_20_concurrent_transactions_through_two_workers_each_stay_on_one_cluster(clusters, lasting_store_url):
    config = _two_backends(clusters[0], clusters[1])
    with (
        GatewayProcess(store=lasting_store_url, config=config, workers=2) as gateway,
        ThreadPoolExecutor(max_workers=20) as pool,
    ):
        transaction_ids = list(pool.map(lambda i: _transaction(gateway.url, 3, tag=f"_{i}"), range(20)))
    assert len(set(transaction_ids)) == 20
    ran = _where_transactions_ran(clusters[:2])
    assert all(len(ran[t]) == 1 for t in transaction_ids), {t: ran[t] for t in transaction_ids}
    per_cluster = defaultdict(int)
    for t in transaction_ids:
        per_cluster[next(iter(ran[t]))] += 1
        statements = [q for c in clusters[:2] for q in c.queries() if q["session"]["transactionId"] == t]
        assert len(statements) == 4 and all(q["state"] == "FINISHED" for q in statements)
    assert set(per_cluster) == {"trino-1", "trino-2"}, per_cluster


def test_a_killed_owner_fails_the_next_statement_at_once_naming_it(sim_factory, store_url):
    owner = sim_factory(name="doomed-owner")
    spare = sim_factory(name="spare")
    with GatewayProcess(store=store_url, config=_two_backends(owner, spare, health={"monitor": "NOOP"})) as gateway:
        gateway.deactivate("spare")  # the transaction starts on the owner
        conn = connect(gateway.url, isolation_level=IsolationLevel.READ_COMMITTED, max_attempts=1)
        conn.cursor().execute("SELECT 1")
        transaction_id = conn.transaction.id
        gateway.activate("spare")
        owner.kill()
        began = time.monotonic()
        with pytest.raises(TrinoQueryError) as raised:
            conn.cursor().execute("SELECT 2")
        took = time.monotonic() - began
        message = raised.value.message
        assert "backend doomed-owner" in message and transaction_id in message, message
        assert "cannot continue on another backend" in message
        # Nothing of the transaction went to the other backend.
        assert not any(q["session"]["transactionId"] == transaction_id for q in spare.queries())
        assert took < 30  # not a read timeout: the refused connection answers at once


@every_store
def test_concurrent_statements_find_a_binding_made_an_instant_before(make_sim, make_gateway):
    # A client's next statement follows the START TRANSACTION's last page at once: the binding is
    # in place before that page reaches the client.
    first, second = make_sim(name="race-1"), make_sim(name="race-2")
    gateway = make_gateway(_two_backends(first, second))
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            _transaction(gateway.url, statements=2, tag=f"_{i}")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    assert all(len(where) == 1 for where in _where_transactions_ran([first, second]).values())


@every_store
def test_a_transaction_started_through_polls_on_another_gateway_is_bound(make_sim, make_gateway, lasting_store_url):
    # Behind a load balancer that spreads requests, START TRANSACTION may be sent through one gateway and
    # its last page (the one that carries the started transaction's id) fetched through another: that
    # one binds it.
    first, second = make_sim(name="spread-1"), make_sim(name="spread-2")
    config = _two_backends(first, second)
    sender = make_gateway(config, store=lasting_store_url)
    poller = make_gateway(config, store=lasting_store_url)
    headers = {"X-Trino-User": "test", "X-Trino-Transaction-Id": "NONE"}
    page = requests.post(f"{sender.url}/v1/statement", data="START TRANSACTION", headers=headers, timeout=10)
    transaction_id = page.headers.get("X-Trino-Started-Transaction-Id")
    body = page.json()
    while "nextUri" in body:
        page = requests.get(body["nextUri"].replace(sender.url, poller.url), headers=headers, timeout=10)
        transaction_id = transaction_id or page.headers.get("X-Trino-Started-Transaction-Id")
        body = page.json()
    assert "error" not in body and transaction_id, body
    headers["X-Trino-Transaction-Id"] = transaction_id
    for i, gateway in enumerate([sender, poller, sender, poller]):
        body = requests.post(f"{gateway.url}/v1/statement", data=f"SELECT {i}", headers=headers, timeout=10).json()
        while "nextUri" in body:
            body = requests.get(body["nextUri"], headers=headers, timeout=10).json()
        assert "error" not in body, body
    assert len(_where_transactions_ran([first, second])[transaction_id]) == 1
    # Its COMMIT's last page fetched through the other gateway too: the binding ends there.
    body = requests.post(f"{sender.url}/v1/statement", data="COMMIT", headers=headers, timeout=10).json()
    while "nextUri" in body:
        body = requests.get(body["nextUri"].replace(sender.url, poller.url), headers=headers, timeout=10).json()
    assert "error" not in body, body
    wait_until(lambda: set(_open_transactions(sender).values()) == {0}, timeout=10, what="the binding to end")
