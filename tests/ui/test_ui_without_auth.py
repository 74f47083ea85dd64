"""``make demo`` runs with auth off: the UI needs no login, says loudly that the API is open, and
offers every control (the API is open to anyone who reaches the port)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import run_query
from tests.gateway.conftest import three_backends
from tests.inprocess import InProcessGateway
from trinosim.inprocess import InProcessSim, LoopThread

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def open_gateway(loop_thread: LoopThread, sims: list[InProcessSim]) -> Iterator[InProcessGateway]:
    with InProcessGateway(loop_thread, three_backends(sims)) as gateway:
        yield gateway


def test_with_auth_off_every_page_opens_without_a_login_and_changes_work(playwright_browser: Any, open_gateway):
    run_query(open_gateway.url, "SELECT 'open'", user="demo")
    context = playwright_browser.new_context()
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{open_gateway.url}/")
        expect(page.locator(".who")).to_contain_text("auth off")
        expect(page.locator('[data-group="adhoc"]')).to_contain_text("trino-2")
        page.goto(f"{open_gateway.url}/queries")
        expect(page.locator("#queries tbody")).to_contain_text("SELECT 'open'")
        page.goto(f"{open_gateway.url}/clusters")
        page.locator('tr[data-backend="trino-2"]').get_by_role("button", name="Deactivate").click()
        page.get_by_role("dialog").get_by_role("button", name="Deactivate").click()
        expect(page.locator('[data-drain="trino-2"]')).to_contain_text("Drained — safe to stop")
        assert open_gateway.call("GET", "/gateway/backend/trino-2")[1]["active"] is False
        page.locator('tr[data-backend="trino-2"]').get_by_role("button", name="Activate").click()
        page.get_by_role("dialog").get_by_role("button", name="Activate").click()
        expect(page.locator('[data-drain="trino-2"]')).to_have_count(0)
        assert open_gateway.call("GET", "/gateway/backend/trino-2")[1]["active"] is True
    finally:
        context.close()
    assert not errors, errors
