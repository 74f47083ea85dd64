"""The web UI in a real browser: Debian's Chromium (``apt-get install chromium``, which ``make test``
installs) driven by Playwright for Python through its ``executable_path``; Playwright never
downloads a browser here.

One gateway for the module: auth on (alice is ADMIN, bob is USER, carol has no role), three
trinosim clusters (adhoc: trino-1, trino-2, whose health checks read their load (UI_API); etl:
trino-3, checked by INFO_API), a rules file, a SQLite store. Screenshots
go to ``$UI_SCREENSHOTS`` when it is set (``make screenshots`` sets it to docs/images), else to the
test's temporary directory."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.auth.password_file import hash_password
from tests.gateway.conftest import three_backends
from tests.inprocess import InProcessGateway
from trinosim.inprocess import InProcessSim, LoopThread
from trinosim.otlp_receiver import OtlpReceiver

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
ROLES = {"ADMIN": ["alice"], "USER": ["bob"]}
# Where a query's trace opens (never visited by the tests: the link is checked, not followed).
TRACING_UI = "http://tracing.invalid/trace/{trace_id}"
RULES = """---
name: airflow
description: queries from Airflow go to etl
priority: 1
condition: 'request.getHeader("X-Trino-Source") == "airflow"'
actions:
  - 'result.put("routingGroup", "etl")'
"""

pytestmark = pytest.mark.slow


# Per module, not per session: while Playwright's sync API is open, its event loop counts as running
# in the main thread, and any later test of the session calling asyncio.run() there would fail (with
# several workers, any module may come after the UI's).
@pytest.fixture(scope="module")
def playwright_browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `apt-get install chromium` (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def traces() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


def password_auth(directory: Path) -> dict[str, Any]:
    """The ``auth`` section: alice, bob and carol in a password file in ``directory``, with ROLES."""
    password_file = directory / "password.db"
    password_file.write_text("".join(f"{user}:{hash_password(pw, rounds=4)}\n" for user, pw in PASSWORDS.items()))
    return {"password_file": str(password_file), "roles": ROLES}


@pytest.fixture(scope="module")
def ui_gateway(
    loop_thread: LoopThread, sims: list[InProcessSim], traces: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessGateway]:
    directory = tmp_path_factory.mktemp("ui")
    rules_file = directory / "rules.yaml"
    rules_file.write_text(RULES)
    backends = three_backends(sims)
    for backend in backends["backends"][:2]:
        # adhoc's clusters get a health check that reads their load; etl's keeps INFO_API, which cannot.
        backend["monitor"] = "UI_API"
    config = {
        **backends,
        "auth": password_auth(directory),
        "routing_rules": {"enabled": True, "type": "FILE", "rules_file": str(rules_file)},
        "health": {"interval": 1},
        "observability": {"tracing": {"endpoint": traces.url, "ui_url": TRACING_UI}},
    }
    with InProcessGateway(loop_thread, config, f"sqlite:///{directory / 'gateway.db'}") as gateway:
        yield gateway


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("UI_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


class LoggedIn:
    """A browser page logged in through the login form, as a person does."""

    def __init__(self, browser: Any, url: str, user: str | None, **context: Any) -> None:
        self.url = url
        self.context = browser.new_context(**{"viewport": {"width": 1280, "height": 860}, **context})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.set_default_timeout(15_000)
        if user is not None:
            self.page.goto(f"{url}/")
            self.page.get_by_label("User").fill(user)
            self.page.get_by_label("Password").fill(PASSWORDS[user])
            self.page.get_by_role("button", name="Log in").click()

    def goto(self, path: str) -> Any:
        self.page.goto(f"{self.url}{path}")
        return self.page

    def close(self) -> None:
        self.context.close()
        assert not self.errors, f"script errors in the page: {self.errors}"


@pytest.fixture
def as_user(playwright_browser: Any, ui_gateway: InProcessGateway) -> Iterator[Any]:
    opened: list[LoggedIn] = []

    def open_as(user: str | None, **context: Any) -> LoggedIn:
        session = LoggedIn(playwright_browser, ui_gateway.url, user, **context)
        opened.append(session)
        return session

    yield open_as
    for session in opened:
        session.close()
