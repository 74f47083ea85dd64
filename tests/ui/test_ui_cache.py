"""The result cache in the UI: the overview's panel (each group's hit ratio, what the tiers hold), its
purge buttons (ADMIN only, confirmed, audited) and the cache's word on each query in the history.

A gateway of its own for the module (this ``ui_gateway`` replaces conftest's): group bi (trino-1,
trino-2), the default, caches results for five minutes; adhoc (trino-3) does not."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import run_query
from tests.inprocess import InProcessGateway
from tests.trinosim.helpers import wait_until
from tests.ui.conftest import PASSWORDS, password_auth
from trinosim.inprocess import InProcessSim, LoopThread

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ui_gateway(
    loop_thread: LoopThread, sims: list[InProcessSim], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessGateway]:
    directory = tmp_path_factory.mktemp("ui-cache")
    config = {
        "backends": [
            {"name": "trino-1", "proxy_to": sims[0].url, "routing_group": "bi"},
            {"name": "trino-2", "proxy_to": sims[1].url, "routing_group": "bi"},
            {"name": "trino-3", "proxy_to": sims[2].url, "routing_group": "adhoc"},
        ],
        "routing": {"default_group": "bi", "groups": {"bi": {"cache": {"ttl": "5m"}}}},
        "auth": password_auth(directory),
        "health": {"interval": 1},
    }
    with InProcessGateway(loop_thread, config, f"sqlite:///{directory / 'gateway.db'}") as gateway:
        token = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
        gateway.admin_headers = {"Authorization": f"Basic {token}"}
        yield gateway


def shoot(page: Any, screenshots: Any, name: str) -> None:
    page.screenshot(path=str(screenshots / f"ui-{name}.png"), full_page=True)


def history(gateway: InProcessGateway, sql: str) -> list[dict[str, Any]]:
    """The history's queries of ``sql``, oldest first."""
    status, page = gateway.call("GET", "/gateway/queries?limit=100")
    assert status == 200
    return sorted((q for q in page["queries"] if q["query"] == sql), key=lambda q: q["submittedAt"])


def test_the_overview_shows_a_groups_hit_ratio_and_an_admin_purges_the_cache(as_user, ui_gateway, screenshots):
    tag = uuid.uuid4().hex
    sql = f"SELECT n.name, '{tag}' AS tag FROM tpch.tiny.nation n"
    for _ in range(2):
        assert len(run_query(ui_gateway.url, sql, user="alice")) == 25
    queries = wait_until(
        lambda: (found := history(ui_gateway, sql)) and [q["cache"] for q in found] == ["miss", "hit"] and found,
        what="a miss and a hit in the history",
    )

    page = as_user("alice").goto("/")
    bi = page.locator('#cache-groups tr[data-cache-group="bi"]')
    cells = bi.locator("td")  # Hit ratio, Hits + waited, Misses, Refused, Not eligible, TTL, Shared
    expect(cells.nth(0)).to_have_text("50.0 %")
    expect(cells.nth(1)).to_have_text("1")
    expect(cells.nth(2)).to_have_text("1")
    expect(cells.nth(5)).to_have_text("5 min")
    expect(cells.nth(6)).to_have_text("no")
    memory = page.locator('#cache-tiers tr[data-tier="memory"] td')
    expect(memory.first).to_have_text("1")
    expect(memory.nth(1)).to_have_text(re.compile(r"^\d+(\.\d)? (B|KiB)$"))
    shoot(page, screenshots, "overview-cache")

    # bi's purge button, confirmed: the page says how many entries went; the audit trail has it.
    bi.get_by_role("button", name="Purge bi's cache").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Purge the cached results of bi?")
    dialog.get_by_role("button", name="Purge").click()
    expect(page.locator("#notice")).to_have_text("Purged 1 entry of the result cache (bi).")
    expect(memory.first).to_have_text("0")
    status, audit = ui_gateway.call("GET", "/gateway/audit")
    assert status == 200
    purges = [e for e in audit["entries"] if e["action"] == "cache.purge"]
    assert [(e["actor"], e["target"], e["outcome"], e["after"]) for e in purges] == [
        ("alice", "bi", "done", {"purged": 1})
    ]
    # Cancelled, the purge of every group does nothing.
    page.get_by_role("button", name="Purge cache").click()
    expect(page.get_by_role("dialog")).to_contain_text("Purge every cached result, of every group?")
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert len([e for e in ui_gateway.call("GET", "/gateway/audit")[1]["entries"] if e["action"] == "cache.purge"]) == 1

    # The history says which query the cache answered, in the list and on the query's page.
    miss, hit = queries
    page = as_user("alice").goto(f"/queries?text={tag}")
    expect(page.locator(f'#queries tr[data-query="{hit["queryId"]}"] td.cache')).to_have_text("hit")
    expect(page.locator(f'#queries tr[data-query="{miss["queryId"]}"] td.cache')).to_have_text("miss")
    shoot(page, screenshots, "queries-cache")
    page.get_by_role("link", name=hit["queryId"]).click()
    expect(page.locator("#cache-word")).to_contain_text("hit")


def test_a_user_sees_the_cache_panel_but_no_purge_buttons(as_user, ui_gateway):
    page = as_user("bob").goto("/")
    expect(page.locator('#cache-groups tr[data-cache-group="bi"]')).to_be_visible()
    expect(page.locator("#cache-tiers")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Purge"))).to_have_count(0)
    # The API refuses what the page does not offer.
    assert page.request.delete(f"{ui_gateway.url}/gateway/cache").status == 403
