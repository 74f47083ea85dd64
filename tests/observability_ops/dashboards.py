"""The Grafana dashboards in dashboards/: their panels' PromQL, with Grafana's variables filled in."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

# What Grafana puts in place of its built-in interval variables when Prometheus scrapes every second
# ($__rate_interval is at least four scrape intervals; a wider window keeps rates defined between
# the workload's bursts).
BUILTINS = {"$__rate_interval": "30s", "$__interval": "5s", "$__range": "5m"}


@dataclass(frozen=True)
class Expression:
    dashboard: str
    panel: str
    ref: str
    expr: str

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref}: {self.expr}"


def load(name: str) -> dict[str, Any]:
    return json.loads((DASHBOARDS / name).read_text())


def files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def expressions(path: Path) -> list[Expression]:
    dashboard = json.loads(path.read_text())
    return [
        Expression(path.name, panel["title"], target["refId"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def variables(dashboard: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in dashboard.get("templating", {}).get("list", [])}


LABEL_VALUES = re.compile(r"^label_values\((?P<metric>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*(?P<label>[a-zA-Z_]\w*)\)$")


def label_values_query(variable: dict[str, Any]) -> tuple[str, str]:
    """(metric, label) of a ``label_values(metric, label)`` query variable."""
    query = variable["query"]
    text = query["query"] if isinstance(query, dict) else query
    match = LABEL_VALUES.match(text.strip())
    if match is None:
        raise ValueError(f"variable {variable['name']}: not a label_values(metric, label) query: {text!r}")
    return match["metric"], match["label"]


VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute(expr: str, values: dict[str, str]) -> str:
    """``expr`` with Grafana's variables replaced; a variable without a value is an error."""
    for name, value in BUILTINS.items():
        expr = expr.replace(name, value)

    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name not in values:
            raise KeyError(f"no value for variable ${name} in {expr!r}")
        return values[name]

    return VARIABLE.sub(replace, expr)
