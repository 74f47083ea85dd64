"""Every configuration and rules example of docs/routing.md (and the README's routing by cost) loads as
written: a reader who copies one gets no error."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import CostRouterConfig, parse_config
from gateway.routing.rules import parse_rules

ROOT = Path(__file__).resolve().parents[2]


def _yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", path.read_text(), re.DOTALL)


BLOCKS = [
    pytest.param(block, id=f"{path.name}-{n}")
    for path in (ROOT / "docs" / "routing.md", ROOT / "README.md")
    for n, block in enumerate(_yaml_blocks(path))
    if path.name != "README.md" or "queryEstimate" in block or "estimates:" in block
]


@pytest.mark.parametrize("block", BLOCKS)
def test_the_example_loads(block: str) -> None:
    if block.lstrip().startswith(("---", "# a rule", "# rules.yaml")):
        assert len(parse_rules(block, "example")) >= 1
        return
    data: Any = yaml.safe_load(block)
    if "targets" in data:  # a fragment: the cost router's part
        CostRouterConfig.model_validate(data)
        return
    if "tls" in (data.get("server") or {}):  # the README's whole configuration: its files do not exist here
        data = {"routing": data["routing"]}
    config = parse_config(data, "example")
    assert config.routing.estimates is not None
