"""Cluster management on the clusters page: each cluster's state beside its health, and Start and Stop
for a cluster the gateway can start and stop (its scaler), for ADMIN only; Stop asks first, drains the
cluster and is in the audit trail.

A gateway of its own for the module (this ``ui_gateway`` replaces conftest's): in group etl, ``scaled``
(trino-1 behind a command scaler whose commands do nothing, so it stays READY) and ``manual`` (trino-2,
no scaler). The manager's default interval (5 s) keeps a stopped cluster DRAINING for 11 s at least
before it would stop it: long enough to see, and Start takes it back."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.inprocess import InProcessGateway
from tests.ui.conftest import PASSWORDS, password_auth
from trinosim.inprocess import InProcessSim, LoopThread

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ui_gateway(
    loop_thread: LoopThread, sims: list[InProcessSim], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessGateway]:
    directory = tmp_path_factory.mktemp("ui-clusters")
    config = {
        "backends": [
            {
                "name": "scaled",
                "proxy_to": sims[0].url,
                "routing_group": "etl",
                "scaler": {"kind": "command", "start": "true", "stop": "true", "timeout": 5},
            },
            {"name": "manual", "proxy_to": sims[1].url, "routing_group": "etl"},
        ],
        "routing": {"default_group": "etl"},
        "auth": password_auth(directory),
        "health": {"interval": 0.5, "success_threshold": 1},
    }
    with InProcessGateway(loop_thread, config, f"sqlite:///{directory / 'gateway.db'}") as gateway:
        token = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
        gateway.admin_headers = {"Authorization": f"Basic {token}"}
        yield gateway


def shoot(page: Any, screenshots: Any, name: str) -> None:
    page.screenshot(path=str(screenshots / f"ui-{name}.png"), full_page=True)


def state_of(gateway: InProcessGateway, name: str) -> str:
    status, backend = gateway.call("GET", f"/gateway/backend/{name}")
    assert status == 200
    return backend["state"]


def test_an_admin_stops_a_scaled_cluster_which_drains_and_starts_it_again(as_user, ui_gateway, screenshots):
    page = as_user("alice").goto("/clusters")
    scaled = page.locator('tr[data-backend="scaled"]')
    manual = page.locator('tr[data-backend="manual"]')
    expect(scaled.locator("[data-cluster-state]")).to_have_text("READY")
    expect(scaled.locator("td.health")).to_have_text("HEALTHY")
    expect(manual.locator("[data-cluster-state]")).to_have_text("READY")
    # Start and Stop where the gateway can start and stop the cluster, not elsewhere.
    expect(scaled.get_by_role("button", name="Stop scaled")).to_be_enabled()
    expect(scaled.get_by_role("button", name="Start scaled")).to_be_disabled()  # it is READY
    expect(manual.get_by_role("button", name="Deactivate manual")).to_be_visible()
    expect(manual.get_by_role("button", name="Start manual")).to_have_count(0)
    expect(manual.get_by_role("button", name="Stop manual")).to_have_count(0)

    # Stop asks first; cancelled, nothing happens.
    scaled.get_by_role("button", name="Stop scaled").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("drains, then stops it")
    dialog.get_by_role("button", name="Cancel").click()
    assert state_of(ui_gateway, "scaled") == "READY"

    scaled.get_by_role("button", name="Stop scaled").click()
    page.get_by_role("dialog").get_by_role("button", name="Stop").click()
    expect(scaled.locator("[data-cluster-state]")).to_have_text("DRAINING")
    assert state_of(ui_gateway, "scaled") == "DRAINING"
    expect(scaled.get_by_role("button", name="Start scaled")).to_be_enabled()
    expect(scaled.get_by_role("button", name="Stop scaled")).to_be_disabled()
    shoot(page, screenshots, "clusters-scaled-draining")

    # Start takes a draining cluster back into service.
    scaled.get_by_role("button", name="Start scaled").click()
    expect(scaled.locator("[data-cluster-state]")).to_have_text("READY")
    assert state_of(ui_gateway, "scaled") == "READY"

    audit = as_user("alice").goto("/audit").locator("#audit tbody")
    expect(audit.locator('tr[data-action="backend.stop"]').first).to_contain_text("scaled")
    expect(audit.locator('tr[data-action="backend.stop"]').first).to_contain_text("alice")
    expect(audit.locator('tr[data-action="backend.start"]').first).to_contain_text("scaled")


def test_a_user_sees_each_clusters_state_but_no_buttons(as_user, ui_gateway):
    page = as_user("bob").goto("/clusters")
    expect(page.locator('tr[data-backend="scaled"] [data-cluster-state]')).to_have_text("READY")
    expect(page.locator('tr[data-backend="manual"] td.health')).to_have_text("HEALTHY")
    expect(page.locator("#backends button")).to_have_count(0)
    # The API refuses what the page does not offer.
    assert page.request.post(f"{ui_gateway.url}/gateway/backend/scaled/stop").status == 403
    assert state_of(ui_gateway, "scaled") == "READY"
