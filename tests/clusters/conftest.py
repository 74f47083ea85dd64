"""Fixtures of the cluster management tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clusters.helpers import CommandCluster


@pytest.fixture
def made(tmp_path: Path) -> Iterator[list[CommandCluster]]:
    """The clusters a test makes (``made.append``); whatever is left of them is killed after it."""
    clusters: list[CommandCluster] = []
    yield clusters
    for cluster in clusters:
        cluster.kill()
