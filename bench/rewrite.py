"""``python -m bench.rewrite``: what pointing a page's URIs at the gateway costs, in process.

``rewrite_uris`` runs on every statement answer the gateway passes on. The pages are a trinosim's
own, in Trino's key order (URIs first, then columns, data, stats, warnings): the answer to a new
query (no rows: what every poll of a running query looks like), the first page of
``tpch.tiny.nation`` (25 rows) and a page of ``tpch.tiny.orders`` (4,096 rows, about 0.5 MB). The
orders page is measured again with a Trino coordinator's stage tree in its stats, and with its keys
in two other orders: sorted (as a proxy that decodes and re-encodes the page writes them) and with
``nextUri`` last. Each figure is CPU time per call (``time.process_time``: on a shared machine,
time spent waiting for a core is not counted), the fastest of 7 timeit runs; printed, never
asserted. ``make bench`` runs this as its section 6 (``python -m bench --only rewrite``).
"""

from __future__ import annotations

import argparse
import time
import timeit
from typing import Any

import orjson
import requests

GATEWAY = "http://gateway.example:8080"
ORDERS = "SELECT * FROM tpch.tiny.orders"
NATION = "SELECT * FROM tpch.tiny.nation"


def first_page_with_rows(url: str, sql: str) -> bytes:
    """The bytes of the first page of ``sql`` on the trinosim at ``url`` that holds rows."""
    session = requests.Session()
    page = session.post(f"{url}/v1/statement", data=sql.encode(), headers={"X-Trino-User": "bench"}, timeout=60)
    while True:
        document = page.json()
        if "data" in document:
            if "nextUri" in document:
                session.delete(document["nextUri"], timeout=30)
            return page.content
        assert "nextUri" in document, f"{sql} ended without rows: {document}"
        page = session.get(document["nextUri"], timeout=60)


def with_stage_tree(body: bytes, stages: int = 4) -> bytes:
    """The page with ``stats.rootStage``: a chain of ``stages`` stages, as a Trino coordinator
    reports a query's plan (trinosim leaves it out)."""
    page = orjson.loads(body)
    stage: dict[str, Any] | None = None
    for number in reversed(range(stages)):
        stage = {
            "stageId": str(number),
            "state": "RUNNING",
            "done": False,
            "nodes": 3,
            "totalSplits": 48,
            "queuedSplits": 0,
            "runningSplits": 12,
            "completedSplits": 36,
            "cpuTimeMillis": 1250,
            "wallTimeMillis": 4100,
            "processedRows": 150000,
            "processedBytes": 16_777_216,
            "physicalInputBytes": 4_194_304,
            "failedTasks": 0,
            "coordinatorOnly": False,
            "subStages": [stage] if stage is not None else [],
        }
    page["stats"]["rootStage"] = stage
    return orjson.dumps(page)


def reordered(body: bytes, order: str) -> bytes:
    """The page with its keys ``sorted``, or with ``next_last`` (nextUri and partialCancelUri last)."""
    page = orjson.loads(body)
    if order == "sorted":
        return orjson.dumps(page, option=orjson.OPT_SORT_KEYS)
    moved = {key: page.pop(key) for key in ("nextUri", "partialCancelUri") if key in page}
    return orjson.dumps(page | moved)


def pages(url: str) -> dict[str, bytes]:
    """The pages measured, by label, all fetched from the trinosim at ``url``."""
    answer = requests.post(f"{url}/v1/statement", data=b"SELECT 1", headers={"X-Trino-User": "bench"}, timeout=60)
    requests.delete(answer.json()["nextUri"], timeout=30)
    orders = first_page_with_rows(url, ORDERS)
    return {
        "no rows (a new query's answer)": answer.content,
        "nation, 25 rows": first_page_with_rows(url, NATION),
        "orders, 4,096 rows": orders,
        "orders, with a stage tree": with_stage_tree(orders),
        "orders, keys sorted": reordered(orders, "sorted"),
        "orders, nextUri last": reordered(orders, "next_last"),
    }


def on_gateway(page: bytes) -> bool:
    """Whether every protocol URI of ``page`` points at the gateway."""
    document = orjson.loads(page)
    uris = [document[key] for key in ("nextUri", "infoUri", "partialCancelUri") if key in document]
    return all(uri.startswith(GATEWAY) for uri in uris)


def rewrite_cost(url: str, run_seconds: float = 0.05, runs: int = 7) -> dict[str, Any]:
    """CPU microseconds per ``rewrite_uris`` call for each page (the fastest of ``runs``), its size,
    and whether the rewritten page has every URI on the gateway."""
    from gateway.dataplane.rewrite import rewrite_uris

    out: dict[str, Any] = {}
    for label, body in pages(url).items():
        complete = on_gateway(rewrite_uris(body, GATEWAY, url, "b1"))
        timer = timeit.Timer(lambda body=body: rewrite_uris(body, GATEWAY, url, "b1"), timer=time.process_time)
        once = min(timer.repeat(3, 1))
        number = max(1, int(run_seconds / max(once, 1e-7)))
        samples = [seconds / number * 1e6 for seconds in timer.repeat(runs, number)]
        out[label] = {"bytes": len(body), "microseconds": round(min(samples), 2), "complete": complete}
    return out


def print_cost(cost: dict[str, Any]) -> None:
    print("\n6. rewrite_uris per page (in process, CPU time per call, the fastest of 7 timeit runs)")
    for label, row in cost.items():
        missed = "" if row["complete"] else "  (URIs left on the backend)"
        print(f"  {label:<32} {row['bytes']:>9,} bytes  {row['microseconds']:>9.2f} us{missed}")


def main() -> None:
    from trinosim import TrinoSimProcess

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-seconds", type=float, default=0.05, help="length of each timeit run")
    args = parser.parse_args()
    with TrinoSimProcess(name="bench-rewrite") as backend:
        print_cost(rewrite_cost(backend.url, args.run_seconds))


if __name__ == "__main__":
    main()
