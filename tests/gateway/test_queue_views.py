"""The gateway's queue where operators look: while a query waits in the gateway, ``/gateway/health``
and the JMX view show it beside its group's queue settings and the slots in use on its backend (this
worker's view; on PostgreSQL the fleet's); once it ran, its history row has the gateway id its client
saw first and how long it waited."""

from __future__ import annotations

import base64
from typing import Any

import requests

from gateway.auth.password_file import hash_password
from tests.gateway.test_admission import backends, follow, follow_in_background, is_waiting_in_gateway, submit
from tests.inprocess import InProcessGateway
from tests.trinosim.helpers import wait_until

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}
GROUP = {"max_queued": 5, "max_queue_wait": 120, "queue_policy": "fifo"}


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()}


def health_of(gateway: InProcessGateway, user: str) -> dict[str, Any]:
    answer = requests.get(f"{gateway.url}/gateway/health", headers=basic(user), timeout=15)
    assert answer.status_code == 200, answer.text
    return {backend["name"]: backend for backend in answer.json()}


def start(make_gateway, make_sim, tmp_path) -> InProcessGateway:
    """One cluster, solo, that the gateway runs one query at a time on; alice is ADMIN, bob USER."""
    sim = make_sim(name="solo")
    password_file = tmp_path / "password.db"
    password_file.write_text("".join(f"{u}:{hash_password(pw, rounds=4)}\n" for u, pw in PASSWORDS.items()))
    gateway = make_gateway(
        {
            "backends": backends(sim),
            "routing": {"groups": {"adhoc": GROUP}},
            "auth": {"password_file": str(password_file), "roles": {"ADMIN": ["alice"], "USER": ["bob"]}},
        }
    )
    gateway.admin_headers = basic("alice")
    return gateway


def admission_bean(gateway: InProcessGateway) -> dict[str, Any]:
    status, bean = gateway.call("GET", "/v1/jmx/mbean/trino.gateway:name=Admission")
    assert status == 200
    return {a["name"]: a["value"] for a in bean["attributes"] if a["name"] != "Worker"}


def settled(gateway: InProcessGateway, waiting: int, running: int) -> None:
    """On PostgreSQL the views show the fleet's counts, read from the store each second."""
    admission = gateway.services.admission
    wait_until(
        lambda: (admission.queued("adhoc"), admission.running.get("solo", 0)) == (waiting, running),
        timeout=15,
        what=f"{waiting} waiting and {running} running in the views",
    )


def test_a_waiting_query_shows_in_health_and_jmx_and_its_history_keeps_its_gateway_id(make_gateway, make_sim, tmp_path):
    gateway = start(make_gateway, make_sim, tmp_path)
    # The blocker holds solo's one slot until its client reads its last page: nothing frees it meanwhile.
    blocker = submit(gateway, "SELECT 1", user="carol")
    waiting = submit(gateway, "SELECT 2", user="dave")
    assert is_waiting_in_gateway(gateway, waiting)
    settled(gateway, 1, 1)

    solo = health_of(gateway, "alice")["solo"]
    assert (solo["maxRunning"], solo["runningSlots"]) == (1, 1)
    queue = solo["gatewayQueue"]
    assert queue["worker"]  # whose view this is
    assert {k: v for k, v in queue.items() if k != "worker"} == {
        "waiting": 1,
        "waitingByUser": [{"user": "dave", "waiting": 1}],
        "otherUsersWaiting": 0,
        "maxQueued": 5,
        "maxQueueWait": 120.0,
        "queuePolicy": "fifo",
    }
    # A USER sees how many wait, but not whose queries they are.
    seen_by_bob = health_of(gateway, "bob")["solo"]["gatewayQueue"]
    assert (seen_by_bob["waiting"], seen_by_bob["waitingByUser"], seen_by_bob["otherUsersWaiting"]) == (1, [], 1)

    assert admission_bean(gateway) == {
        "WaitingQueries": 1,
        "RunningSlots": 1,
        "WaitingQueries.adhoc": 1,
        "RunningSlots.solo": 1,
        "MaxRunning.solo": 1,
    }

    blocker_rows = follow_in_background(blocker, "carol")
    last, rows, _ = follow(waiting, "dave")
    assert rows == [[2]] and blocker_rows() == [[1]]
    settled(gateway, 0, 0)
    solo = health_of(gateway, "alice")["solo"]
    assert (solo["gatewayQueue"]["waiting"], solo["runningSlots"]) == (0, 0)  # both ended: their slots are free

    # Found by the id its client saw first; recorded under the cluster's own id.
    found = gateway.queries(id=waiting["id"])["queries"]
    assert [q["queryId"] for q in found] == [last["id"]]
    record = gateway.call("GET", f"/gateway/queries/{last['id']}")[1]
    assert record == found[0]
    assert record["gatewayQueryId"] == waiting["id"] and record["queuedMs"] > 0 and record["attempts"] is None
    sent_at_once = gateway.queries(user="carol")["queries"][0]
    assert (sent_at_once["queuedMs"], sent_at_once["attempts"]) == (None, None)
    # Held until its first rows (for failover), it never moved: its client saw the cluster's id alone,
    # and the gateway names a query only when it waits or moves (the name then ties its attempts).
    assert sent_at_once["gatewayQueryId"] is None
