"""The chaos suite's summary: one row per scenario and cluster kind, printed and written as JSON.

Columns: queries submitted / succeeded / failed (and of those, how many had returned no row: the
ones failover could have saved) / lost; the time the gateway took to detect the
fault (the scenario measures it, e.g. until ``/gateway/health`` shows the backend UNHEALTHY); the
time until new queries flow normally again: from the fault to the submission of the first query
after which every later query succeeded (0 when no query submitted after the fault failed).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from chaos.workload import FAILED, LOST, SUCCEEDED, QueryOutcome

RESULTS = Path(__file__).parent / "results" / "latest.json"


@dataclass
class ScenarioRow:
    scenario: str
    kind: str
    submitted: int
    succeeded: int
    failed: int
    lost: int
    detect_s: float | None
    recover_s: float | None
    errors: dict[str, int] = field(default_factory=dict)
    notes: str = ""
    # Failed queries no row of which had reached the client (the rest had returned rows).
    failed_without_rows: int = 0


def recovery_time(records: list[QueryOutcome], fault_at: float) -> float:
    """Seconds from ``fault_at`` to the submission of the first query from which on every query
    submitted succeeded."""
    after = sorted((r for r in records if r.submitted >= fault_at), key=lambda r: r.submitted)
    last_bad = max((i for i, r in enumerate(after) if r.outcome != SUCCEEDED), default=None)
    if last_bad is None:
        return 0.0
    if last_bad + 1 < len(after):
        return after[last_bad + 1].submitted - fault_at
    return float("nan")  # nothing succeeded after the last failure


_QUERY_ID = re.compile(r"\d{8}_\d{6}_\d{5}_\w+")


def _error_key(record: QueryOutcome) -> str:
    """The error without its query id, so that one cause counts once."""
    text = (record.error or "").splitlines()[0] if record.error else ""
    return f"{record.error_type}: {_QUERY_ID.sub('<id>', text)[:200]}"


def summarise(
    scenario: str,
    kind: str,
    records: list[QueryOutcome],
    detect_s: float | None = None,
    fault_at: float | None = None,
    notes: str = "",
) -> ScenarioRow:
    outcomes = Counter(r.outcome for r in records)
    errors = Counter(_error_key(r) for r in records if r.outcome in (FAILED, LOST))
    return ScenarioRow(
        scenario=scenario,
        kind=kind,
        submitted=len(records),
        succeeded=outcomes[SUCCEEDED],
        failed=outcomes[FAILED],
        lost=outcomes[LOST],
        detect_s=None if detect_s is None else round(detect_s, 2),
        recover_s=None if fault_at is None else round(recovery_time(records, fault_at), 2),
        errors=dict(errors.most_common(5)),
        notes=notes,
        failed_without_rows=sum(1 for r in records if r.outcome == FAILED and r.rows_at is None),
    )


class Summary:
    """The rows of one pytest session. A test's rows reach them through its report (``reported`` in
    the process that ran it, ``receive`` where the session's reports are gathered): with pytest-xdist
    that is the controller, which prints the table, while the workers ran the scenarios."""

    def __init__(self) -> None:
        self.rows: list[ScenarioRow] = []
        self._unreported: list[ScenarioRow] = []

    def add(self, row: ScenarioRow) -> None:
        self._unreported.append(row)

    def reported(self) -> list[dict[str, Any]]:
        """The rows added since the last call, as plain data for a test's report."""
        rows, self._unreported = self._unreported, []
        return [asdict(row) for row in rows]

    def receive(self, rows: list[dict[str, Any]]) -> None:
        self.rows.extend(ScenarioRow(**row) for row in rows)

    def table(self) -> str:
        header = (
            "scenario",
            "kind",
            "submitted",
            "succeeded",
            "failed",
            "failed, no row",
            "lost",
            "detect s",
            "recover s",
        )
        rows = sorted(self.rows, key=lambda r: (_number(r.scenario), r.scenario, r.kind))
        lines = [header] + [
            (
                r.scenario,
                r.kind,
                str(r.submitted),
                str(r.succeeded),
                str(r.failed),
                str(r.failed_without_rows),
                str(r.lost),
                _seconds(r.detect_s),
                _seconds(r.recover_s),
            )
            for r in rows
        ]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        out = ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)) + " |" for line in lines]
        out.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
        return "\n".join(out)

    def write(self, path: Path = RESULTS) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        document: dict[str, Any] = {
            "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "rows": [asdict(r) for r in self.rows],
        }
        path.write_text(json.dumps(document, indent=2, default=str) + "\n")
        return path


def _number(scenario: str) -> int:
    """The scenario's number (``"2b pause"`` -> 2), for ordering the table."""
    match = re.match(r"\d+", scenario)
    return int(match.group()) if match else 0


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


SUMMARY = Summary()
