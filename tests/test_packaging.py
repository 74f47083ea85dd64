"""``pip install trino-ha-gateway`` installs the gateway alone, and it serves: the simulator and its
DuckDB/TPC-H dependencies come only with the ``[sim]`` extra."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import run_query
from trinosim.gateway_process import free_port
from trinosim.harness import stop_process, wait_until_ready

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_the_package_without_extras_installs_only_the_gateway_and_serves(tmp_path, sim):
    # Built from a copy: setuptools writes build/ and *.egg-info/ next to the sources.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".demo", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
        ),
    )
    venv = tmp_path / "venv"
    # A venv without pip of its own: this environment's pip installs into it (``--python``), which
    # spares the new venv's ensurepip, about ten seconds. ``--no-compile``: Python writes the bytecode
    # of what it imports anyway; compiling all ~70 packages up front took half a minute on two CPUs.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "--disable-pip-version-check"]
    install = subprocess.run(
        [*pip, "install", "--quiet", "--no-compile", str(source)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run(
        [*pip, "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.lower()
    installed = {line.split("==", 1)[0] for line in listed.splitlines()}
    assert "trino-ha-gateway" in installed
    assert not installed & {"duckdb", "tpchgen-cli", "aiohttp"}, sorted(installed)

    # The simulator says what it needs instead of failing with a traceback.
    trinosim = subprocess.run(
        [str(venv / "bin" / "trinosim")], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert trinosim.returncode == 2 and "[sim] extra" in trinosim.stderr

    port = free_port()
    log = tmp_path / "gateway.log"
    with log.open("wb") as out:
        # From the temporary directory, so nothing of the source tree is importable.
        process = subprocess.Popen(
            [
                str(venv / "bin" / "trino-gateway"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--store",
                "memory://",
                "--backend",
                f"sim={sim.url}",
            ],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(process, f"{url}/gateway/readyz", "the installed gateway", log.read_text, 60)
        assert run_query(url, "SELECT count(*) FROM tpch.tiny.region") == [[5]]
        # The web UI's templates and assets are in the wheel (package data, not only the source tree).
        page = requests.get(f"{url}/", timeout=10)
        assert page.status_code == 200 and '<script type="module" src="/assets/overview.js">' in page.text
        for asset in ("app.css", "app.js", "overview.js", "vendor/uplot/uPlot.iife.min.js"):
            assert requests.get(f"{url}/assets/{asset}", timeout=10).status_code == 200, asset
    finally:
        # SIGINT: no shutdown grace to wait through.
        stop_process(process, sig=signal.SIGINT)
