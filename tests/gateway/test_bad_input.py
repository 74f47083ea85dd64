"""Bad input on the Trino path: oversize statements, clients that leave or stall mid-request,
hostile headers, made-up and over-long query ids and paths. Each gets a clear answer (or a closed
connection) and nothing of it reaches a backend; the gateway keeps serving everyone else, which
each test shows by running ordinary queries beside or after the bad one."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import trino

from tests.gateway.conftest import three_backends
from tests.inprocess import InProcessGateway
from tests.trinosim.helpers import wait_until
from trinosim.gateway_process import GatewayProcess
from trinosim.inprocess import InProcessSim

pytestmark = pytest.mark.slow

FORGED_ID = "20990101_000000_00001_zzzzz"


def seen(sims: list[InProcessSim]) -> int:
    """Queries the backends have had, all told."""
    return sum(len(s.queries()) for s in sims)


def ordinary_query(url: str, value: int = 7) -> None:
    cursor = trino.dbapi.connect(host=url, user="someone", request_timeout=30).cursor()
    cursor.execute(f"SELECT {value}")
    assert cursor.fetchall() == [[value]]


def raw(port: int, data: bytes, read: bool = True, timeout: float = 15.0) -> bytes:
    """``data`` written to the gateway's port as it is; what comes back until the gateway closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if not read:
            return b""
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and _complete(b"".join(chunks)):
                break
        return b"".join(chunks)


def _complete(answer: bytes) -> bool:
    head, _, body = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.fixture
def small_limits(loop_thread, sims) -> Iterator[InProcessGateway]:
    config = {
        **three_backends(sims),
        "proxy": {"max_query_length": 1000, "max_body_bytes": 4096, "body_timeout": 1.0},
    }
    with InProcessGateway(loop_thread, config) as gateway:
        yield gateway


@pytest.fixture
def gateway(loop_thread, sims) -> Iterator[InProcessGateway]:
    with InProcessGateway(loop_thread, three_backends(sims)) as started:
        yield started


def test_an_oversize_statement_fails_with_query_text_too_large_before_any_backend(small_limits, sims):
    url = small_limits.url
    before = seen(sims)
    cursor = trino.dbapi.connect(host=url, user="someone", request_timeout=30).cursor()
    with pytest.raises(trino.exceptions.TrinoUserError) as error:
        cursor.execute("SELECT 1 -- " + "x" * 2000)
    assert error.value.error_name == "QUERY_TEXT_TOO_LARGE" and error.value.error_code == 35
    assert "Query text length (2012) exceeds the maximum length (1000)" in error.value.message
    # Characters count, not bytes: 600 two-byte characters are within 1000.
    cursor.execute("SELECT '" + "é" * 600 + "'")
    assert cursor.fetchall() == [["é" * 600]]
    # A body announced far beyond the limit is refused without being read.
    huge = b"POST /v1/statement HTTP/1.1\r\nHost: x\r\nX-Trino-User: a\r\nContent-Length: 50000000\r\n\r\nSELECT 1"
    answer = raw(small_limits.port, huge)
    assert status_of(answer) == 200
    document = json.loads(answer.partition(b"\r\n\r\n")[2])
    assert document["error"]["errorName"] == "QUERY_TEXT_TOO_LARGE"
    # And one sent in chunks with no length, cut off at the limit.
    chunks = b"".join(b"%x\r\n%s\r\n" % (1000, b"x" * 1000) for _ in range(6)) + b"0\r\n\r\n"
    chunked = b"POST /v1/statement HTTP/1.1\r\nHost: x\r\nX-Trino-User: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = raw(small_limits.port, chunked + chunks)
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["errorName"] == "QUERY_TEXT_TOO_LARGE"
    assert seen(sims) == before + 1  # only the 600-character query
    ordinary_query(url)


def test_a_client_that_leaves_mid_statement_sends_nothing_to_a_backend(small_limits, sims):
    before = seen(sims)
    # "DELETE FROM orders WHERE id = 1" cut off after "DELETE FROM orders" is another statement:
    # it must not run.
    head = b"POST /v1/statement HTTP/1.1\r\nHost: x\r\nX-Trino-User: a\r\nContent-Length: 31\r\n\r\n"
    raw(small_limits.port, head + b"DELETE FROM orders", read=False)
    wait_until(lambda: "left while sending" in small_limits.log() or seen(sims) > before, timeout=10)
    assert seen(sims) == before, [q["query"] for s in sims for q in s.queries()][-1]
    ordinary_query(small_limits.url)


def test_a_stalled_body_times_out_while_others_are_served(small_limits, sims):
    before = seen(sims)
    head = b"POST /v1/statement HTTP/1.1\r\nHost: x\r\nX-Trino-User: a\r\nContent-Length: 100\r\n\r\nSELECT"
    answers: list[bytes] = []
    stalled = threading.Thread(target=lambda: answers.append(raw(small_limits.port, head)), daemon=True)
    stalled.start()
    # While that client stalls, others are served.
    for value in range(3):
        ordinary_query(small_limits.url, value)
    stalled.join(15)
    assert not stalled.is_alive()
    document = json.loads(answers[0].partition(b"\r\n\r\n")[2])
    assert document["stats"]["state"] == "FAILED"
    assert "the request body did not arrive within 1 s" in document["error"]["message"]
    assert seen(sims) == before + 3
    # Another proxied path: its body is limited too (HTTP 413, plain text).
    big = requests.post(f"{small_limits.url}/ui/login", data=b"x" * 5000, timeout=15)
    assert big.status_code == 413 and "5000 bytes, more than the 4096 allowed" in big.text


def test_hostile_headers_are_not_written_back_and_break_nothing(gateway, sims):
    port = gateway.port
    hostile = {
        "Host": 'evil.example", "nextUri": "http://attacker',
        "X-Forwarded-Proto": "javascript",
        "X-Forwarded-Host": "attacker/path?x=",
    }
    answer = requests.post(
        f"{gateway.url}/v1/statement", data="SELECT 1", headers={"X-Trino-User": "a", **hostile}, timeout=15
    )
    assert answer.status_code == 200
    document = answer.json()  # still one valid JSON document
    assert document["nextUri"].startswith(f"http://127.0.0.1:{port}/v1/statement/")
    # Header values no HTTP parser may accept (a NUL, a bare CR) are refused by the server, 4xx.
    for value in (b"a\x00b", b"a\rX-Injected: 1"):
        request = b"POST /v1/statement HTTP/1.1\r\nHost: x\r\nX-Trino-User: " + value + b"\r\nContent-Length: 8\r\n\r\n"
        answer = raw(port, request + b"SELECT 1")
        assert not answer or 400 <= status_of(answer) < 500, answer[:200]
    ordinary_query(gateway.url)


def test_made_up_and_over_long_ids_and_paths_cost_the_backends_nothing(gateway, sims):
    book = gateway.services.book
    asked: list[str] = []
    ask = book._ask_every_backend

    async def counting(query_id: str) -> Any:
        asked.append(query_id)
        return await ask(query_id)

    book._ask_every_backend = counting  # type: ignore[method-assign]
    url = gateway.url
    try:
        for _ in range(20):
            answer = requests.get(f"{url}/v1/statement/executing/{FORGED_ID}/y1/1", timeout=15)
            assert answer.status_code == 404 and answer.text == "Query not found"
        # Every backend said it does not know the id: it was asked about once, not twenty times.
        assert asked == [FORGED_ID]
        # An id longer than any Trino writes is no id: nobody is asked.
        long_id = "20990101_000000_" + "1" * 5000 + "_abcde"
        assert requests.get(f"{url}/v1/statement/executing/{long_id}/y/1", timeout=15).status_code == 404
        assert requests.delete(f"{url}/v1/query/{'9' * 3000}", timeout=15).status_code < 500
        assert asked == [FORGED_ID]
        # A path far beyond what servers take, and a made-up backend marker.
        assert requests.get(f"{url}/v1/statement/{'a' * 70000}", timeout=15).status_code in (400, 404, 414, 431)
        marked = requests.get(f"{url}/v1/info?trino_gateway_backend=no-such-backend", timeout=15)
        assert marked.status_code == 200 and "nodeVersion" in marked.json()
    finally:
        book._ask_every_backend = ask  # type: ignore[method-assign]
    ordinary_query(url)


def test_slow_loris_clients_do_not_hold_up_the_gateway(sims, tmp_path):
    """granian (the production server): connections that never finish their headers are closed
    after server.header_read_timeout, and while they hang, queries are served."""
    config = {**three_backends(sims), "server": {"header_read_timeout": 1}}
    with GatewayProcess(config=config) as gateway:
        port = gateway.port
        loris = []
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"POST /v1/statement HTTP/1.1\r\nHost: x\r\nX-Trino-")
            loris.append(sock)
        began = time.monotonic()
        for value in range(5):
            ordinary_query(gateway.url, value)
        closed = 0
        for sock in loris:
            try:
                # The server ends the connection (with or without a 408) instead of waiting forever.
                data = sock.recv(4096)
                closed += 1 if not data or data.startswith(b"HTTP/1.1 408") else 0
            except (ConnectionResetError, TimeoutError):
                closed += 1
            finally:
                sock.close()
        assert closed == 50
        assert time.monotonic() - began < 60  # bounded: every connection ended long before a test timeout
        ordinary_query(gateway.url)
        # granian too tells the gateway when a client leaves mid-statement: nothing is run.
        before = seen(sims)
        head = b"POST /v1/statement HTTP/1.1\r\nHost: x\r\nX-Trino-User: a\r\nContent-Length: 31\r\n\r\n"
        raw(port, head + b"DELETE FROM orders", read=False)
        wait_until(lambda: "left while sending" in gateway.log() or seen(sims) > before, timeout=10)
        assert seen(sims) == before
