"""The web UI, driven in Chromium as operators and analysts use it. Each test starts from the login
form; what a page shows is checked against what the gateway did (queries run, the store's state)."""

from __future__ import annotations

import base64
import re
import threading
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import connect, run_query
from tests.gateway.test_admission import follow, follow_in_background
from tests.inprocess import InProcessGateway
from tests.ui.conftest import PASSWORDS, RULES, TRACING_UI

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def admin_calls(ui_gateway: InProcessGateway) -> None:
    """The tests' own admin calls (setting up, checking the store) are alice's."""
    token = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    ui_gateway.admin_headers = {"Authorization": f"Basic {token}"}


def shoot(page: Any, screenshots: Any, name: str) -> None:
    page.screenshot(path=str(screenshots / f"ui-{name}.png"), full_page=True)


def test_an_admin_deactivates_a_cluster_watches_it_drain_while_a_query_runs_and_reactivates_it(
    as_user, ui_gateway, screenshots
):
    finished: dict[str, Any] = {}

    def long_query() -> None:
        # etl has one cluster, trino-3: the query runs there while the admin deactivates it. 4 s was once
        # too short: in a loaded run the query ended between the page's in-flight count and its drain.
        session = {"sim_run_time": "12s"}
        with connect(
            ui_gateway.url, user="alice", session_properties=session, http_headers={"X-Trino-Routing-Group": "etl"}
        ) as conn:
            cursor = conn.cursor()
            cursor.execute("SELECT 42")
            finished["rows"] = cursor.fetchall()

    runner = threading.Thread(target=long_query)
    runner.start()
    try:
        page = as_user("alice").goto("/clusters")
        row = page.locator('tr[data-backend="trino-3"]')
        expect(row).to_contain_text("HEALTHY")
        expect(page.locator('tr[data-backend="trino-3"] td').nth(5)).to_have_text("1", timeout=10_000)  # in flight

        row.get_by_role("button", name="Deactivate").click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text("Deactivate trino-3?")
        dialog.get_by_role("button", name="Deactivate").click()

        drain = page.locator('[data-drain="trino-3"]')
        expect(drain).to_contain_text("Draining: 1 query")
        shoot(page, screenshots, "clusters-draining")
        assert ui_gateway.call("GET", "/gateway/backend/trino-3")[1]["active"] is False
        # The running query finishes on its cluster; then the page says it is safe to stop.
        expect(drain).to_contain_text("Drained — safe to stop", timeout=30_000)
        runner.join(timeout=30)
        assert finished.get("rows") == [[42]]

        page.locator('tr[data-backend="trino-3"]').get_by_role("button", name="Activate").click()
        page.get_by_role("dialog").get_by_role("button", name="Activate").click()
        expect(page.locator('tr[data-backend="trino-3"]')).to_contain_text("active")
        expect(drain).to_have_count(0)
        assert ui_gateway.call("GET", "/gateway/backend/trino-3")[1]["active"] is True
        shoot(page, screenshots, "clusters")
    finally:
        runner.join(timeout=30)
        ui_gateway.activate("trino-3")


def test_an_admin_adds_edits_and_deletes_a_cluster(as_user, ui_gateway, sims):
    page = as_user("alice").goto("/clusters")
    page.get_by_role("button", name="Add a cluster").click()
    form = page.get_by_role("dialog")
    form.get_by_label("Name").fill("trino-new")
    form.get_by_label("URL the gateway sends requests to").fill(sims[0].url)
    form.get_by_label("Routing group").fill("reports")
    form.get_by_label("Max running queries").fill("4")
    form.get_by_role("button", name="Save").click()
    row = page.locator('tr[data-backend="trino-new"]')
    expect(row).to_contain_text("reports")
    max_running = row.locator("td").nth(7)
    expect(max_running).to_have_text("4")
    added = ui_gateway.call("GET", "/gateway/backend/trino-new")[1]
    assert (added["routingGroup"], added["maxRunning"]) == ("reports", 4)

    # An empty limit is no limit.
    row.get_by_role("button", name="Edit").click()
    expect(form.get_by_label("Max running queries")).to_have_value("4")
    form.get_by_label("Max running queries").fill("")
    form.get_by_role("button", name="Save").click()
    expect(max_running).to_have_text("—")
    assert ui_gateway.call("GET", "/gateway/backend/trino-new")[1]["maxRunning"] is None

    # A bad URL is refused with the API's message, and nothing changes.
    page.locator('tr[data-backend="trino-new"]').get_by_role("button", name="Edit").click()
    form.get_by_label("URL the gateway sends requests to").fill("ftp://nowhere")
    form.get_by_role("button", name="Save").click()
    expect(form.get_by_role("alert")).to_contain_text("http")
    form.get_by_role("button", name="Cancel").click()
    assert ui_gateway.call("GET", "/gateway/backend/trino-new")[1]["proxyTo"] == sims[0].url

    page.locator('tr[data-backend="trino-new"]').get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    expect(page.locator('tr[data-backend="trino-new"]')).to_have_count(0)
    assert ui_gateway.call("GET", "/gateway/backend/trino-new")[0] == 404


def test_a_user_sees_only_own_queries_and_no_admin_controls(as_user, ui_gateway, screenshots):
    run_query(ui_gateway.url, "SELECT 'bob was here'", user="bob")
    run_query(ui_gateway.url, "SELECT 'secret of dave'", user="dave")

    page = as_user("bob").goto("/queries")
    table = page.locator("#queries tbody")
    expect(table).to_contain_text("bob was here")
    expect(table).not_to_contain_text("secret of dave")
    assert set(table.locator("tr td:nth-child(2)").all_inner_texts()) == {"bob"}
    expect(page.get_by_role("navigation", name="Pages", exact=True)).not_to_contain_text("Audit")

    page = as_user("bob").goto("/clusters")
    expect(page.locator('tr[data-backend="trino-1"]')).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Deactivate|Delete|Edit|Add"))).to_have_count(0)
    page = as_user("bob").goto("/rules")
    expect(page.locator("#rules-text")).to_have_attribute("readonly", "")
    expect(page.get_by_role("button", name="Validate and save")).to_have_count(0)
    # The API refuses what the page does not offer.
    answer = page.request.post(f"{ui_gateway.url}/gateway/backend/deactivate/trino-1")
    assert answer.status == 403
    page = as_user("bob").goto("/audit")
    expect(page.locator("#audit tbody")).to_contain_text("may not")
    shoot(as_user("bob").goto("/queries"), screenshots, "queries-as-user")

    # A user with no role gets no page.
    page = as_user("carol").page
    expect(page.locator("main")).to_contain_text("carol has no role that may use the UI")


def test_a_search_sent_before_the_pages_first_list_is_answered_shows_only_the_search(as_user, ui_gateway):
    # Seen once in a loaded run: the page's first list (every query) answered after the search, and
    # its rows replaced the search's one. Here the first list is held until the search is drawn.
    with connect(ui_gateway.url, user="alice") as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT 'searched for'")
        cursor.fetchall()
        query_id = cursor.query_id
    run_query(ui_gateway.url, "SELECT 'not searched for'", user="alice")
    session = as_user("alice")
    held: list[Any] = []

    def hold_the_unfiltered_list(route: Any) -> None:
        if "id=" in route.request.url:
            route.continue_()
        else:
            held.append(route)

    session.page.route(re.compile(r".*/gateway/queries\?.*"), hold_the_unfiltered_list)
    page = session.goto("/queries")
    page.get_by_label("Query id").fill(query_id)
    page.get_by_role("button", name="Search").click()
    rows = page.locator("#queries tbody tr")
    expect(rows).to_have_count(1)
    assert len(held) == 1, [route.request.url for route in held]
    with page.expect_response(lambda answer: answer.request.url == held[0].request.url):
        held[0].continue_()
    # The older answer has come: give the page a moment to (wrongly) draw it, then look.
    page.wait_for_timeout(300)
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("SELECT 'searched for'")


def test_find_a_query_by_id_and_open_its_trino_ui_page(as_user, ui_gateway, screenshots):
    with connect(ui_gateway.url, user="alice", source="finder") as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT 'find me'")
        cursor.fetchall()
        query_id = cursor.query_id

    page = as_user("alice").goto("/queries")
    page.get_by_label("Query id").fill(query_id)
    page.get_by_role("button", name="Search").click()
    rows = page.locator("#queries tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("SELECT 'find me'")
    shoot(page, screenshots, "queries")

    rows.get_by_role("link", name=query_id).click()
    expect(page.locator("#query")).to_contain_text("SELECT 'find me'")
    expect(page.locator("#query")).to_contain_text("finder")
    # Its trace: the id, and a link to the configured tracing UI.
    trace_id = page.locator("#trace-id").inner_text()
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    expect(page.get_by_role("link", name="Open its trace")).to_have_attribute(
        "href", TRACING_UI.format(trace_id=trace_id)
    )
    shoot(page, screenshots, "query")
    page.get_by_role("link", name="Open in the Trino UI").click()
    # The gateway sends the Trino UI's page of the query to the cluster that ran it.
    expect(page.get_by_role("heading", name=f"Query {query_id}")).to_be_visible()
    assert page.url.startswith(ui_gateway.url)

    # Search by SQL text finds it too.
    page = as_user("alice").goto("/queries?text=find%20me")
    expect(page.locator("#queries tbody tr")).to_have_count(1)


def test_an_admin_routes_a_source_to_etl_by_editing_the_rules(as_user, ui_gateway, screenshots):
    page = as_user("alice").goto("/rules")
    editor = page.locator("#rules-text")
    expect(editor).to_have_value(RULES)
    new_rules = (
        RULES
        + """---
name: reports-to-etl
description: the reporting tool's queries go to etl
priority: 2
condition: 'request.getHeader("X-Trino-Source") == "reports"'
actions:
  - 'result.put("routingGroup", "etl")'
"""
    )
    editor.fill(new_rules)
    # Tried before saving: the sample request goes to etl by the new rule.
    page.get_by_label("Headers, one per line").fill("X-Trino-Source: reports")
    page.get_by_role("button", name="Which group?").click()
    expect(page.locator("#try-group")).to_have_text("etl")
    page.get_by_role("button", name="Validate and save").click()
    expect(page.locator('tr[data-rule="reports-to-etl"]')).to_be_visible()
    shoot(page, screenshots, "rules")

    with connect(ui_gateway.url, user="alice", source="reports") as conn:
        cursor = conn.cursor()
        cursor.execute("SELECT 'report'")
        cursor.fetchall()
        query_id = cursor.query_id
    page = as_user("alice").goto(f"/queries/{query_id}")
    details = page.locator("#query")
    expect(details).to_contain_text("reports-to-etl")
    expect(details).to_contain_text("trino-3")
    page = as_user("alice").goto("/rules")
    expect(page.locator('tr[data-rule="reports-to-etl"] td.fired')).not_to_have_text("0")

    # An invalid edit is refused with its line, and the file keeps the rules in use.
    broken = new_rules + "---\nname: broken\ncondition: 'request.getHeader(\"X\") =='\n"
    editor = page.locator("#rules-text")
    editor.fill(broken)
    page.get_by_role("button", name="Validate and save").click()
    error = page.locator("#editor-error")
    expect(error).to_contain_text(re.compile(r"Line \d+"))
    line = int(re.search(r"Line (\d+)", error.inner_text()).group(1))
    assert "broken" in "\n".join(broken.splitlines()[line - 3 : line])
    shoot(page, screenshots, "rules-invalid")
    status, rules = ui_gateway.call("GET", "/gateway/routing-rules")
    assert status == 200 and rules["text"] == new_rules

    # Put the first rules back for the other tests.
    editor.fill(RULES)
    page.get_by_role("button", name="Validate and save").click()
    expect(page.locator('tr[data-rule="reports-to-etl"]')).to_have_count(0)


def test_the_overview_shows_every_group_and_the_queries_just_run(as_user, ui_gateway, screenshots):
    before = _total_in_chart(as_user("alice").goto("/"))
    for i in range(3):
        run_query(ui_gateway.url, f"SELECT {i}", user="alice", http_headers={"X-Trino-Routing-Group": "etl"})
    page = as_user("alice").goto("/")
    expect(page.locator('[data-group="adhoc"]')).to_contain_text("trino-1")
    expect(page.locator('[data-group="etl"]')).to_contain_text("trino-3")
    # No group caches results here: the cache panel says it is off and where to turn it on.
    expect(page.locator("#cache-off")).to_contain_text("The result cache is off")
    expect(page.locator("#cache-off")).to_contain_text("docs/cache.md")
    expect(page.get_by_role("button", name="Purge cache")).to_be_hidden()
    expect(page.locator("#chart canvas")).to_be_visible()
    summary = page.locator('#chart-summary tr[data-series="etl"]')
    expect(summary).to_be_visible()
    assert _total_in_chart(page) >= before + 3
    page.get_by_label("Series per").select_option("backend")
    expect(page.locator('#chart-summary tr[data-series="trino-3"]')).to_be_visible()
    shoot(page, screenshots, "overview")
    theme = "document.documentElement.dataset.theme"
    assert page.evaluate(theme) == "light"  # the browser's (light) preference
    page.get_by_role("button", name="Switch between light and dark").click()
    assert page.evaluate(theme) == "dark"
    page.reload()  # kept in the browser
    assert page.evaluate(theme) == "dark"
    page.locator("#chart canvas").wait_for()
    shoot(page, screenshots, "overview-dark")
    # A browser that prefers dark gets dark without choosing.
    assert as_user("alice", color_scheme="dark").goto("/").evaluate(theme) == "dark"


def test_the_overview_shows_each_clusters_load_or_why_its_health_check_cannot_tell(as_user, ui_gateway, sims):
    # A query running on trino-1 itself (not sent through the gateway): its UI_API check reads it.
    first = httpx.post(
        f"{sims[0].url}/v1/statement",
        content="SELECT 'busy'",
        headers={"X-Trino-User": "elsewhere", "X-Trino-Session": "sim_run_time=30s"},
        timeout=30,
    ).json()
    running = httpx.get(first["nextUri"], timeout=30).json()  # dispatched: RUNNING for 30 s
    try:
        page = as_user("alice").goto("/")
        busy = page.locator('[data-group="adhoc"] tr[data-backend="trino-1"] td')
        # State, Active, Score, Running, Queued, Workers, In flight, Slots
        expect(busy.nth(3)).to_have_text(re.compile(r"^[1-9]\d*$"), timeout=10_000)
        expect(busy.nth(4)).to_have_text(re.compile(r"^\d+$"))
        expect(busy.nth(5)).to_have_text("1")  # the cluster's one worker
        # The score weighs the load the cluster reports: running 1 on 1 worker costs at least 0.25.
        expect(busy.nth(2)).to_have_text(re.compile(r"^0\.([0-7]\d|80)$"))
        expect(page.locator('[data-group="adhoc"] p.no-load')).to_have_count(0)

        quiet = page.locator('[data-group="etl"] tr[data-backend="trino-3"] td')
        for column in (3, 4, 5):
            expect(quiet.nth(column)).to_contain_text("\u2013")
            expect(quiet.nth(column).locator(".no-figure")).to_have_attribute(
                "title", "trino-3's INFO_API check reports no load"
            )
        expect(page.locator('[data-group="etl"] p.no-load')).to_contain_text(
            "trino-3: the INFO_API health check reports no load."
        )
        health = {b["name"]: b for b in ui_gateway.call("GET", "/gateway/health")[1]}
        assert (health["trino-1"]["monitor"], health["trino-3"]["monitor"]) == ("UI_API", "INFO_API")
        assert health["trino-3"]["runningQueries"] is None
    finally:
        httpx.delete(running["nextUri"], timeout=30)


def _limit(gateway: InProcessGateway, backend: str, max_running: int | None) -> None:
    record = gateway.call("GET", f"/gateway/backend/{backend}")[1]
    status, _ = gateway.call("POST", "/gateway/backend/modify/update", {**record, "maxRunning": max_running})
    assert status == 200


def _submit_to_etl(gateway: InProcessGateway, sql: str) -> dict[str, Any]:
    headers = {"X-Trino-User": "alice", "X-Trino-Routing-Group": "etl", "X-Trino-Session": "sim_run_time=1s"}
    answer = httpx.post(f"{gateway.url}/v1/statement", content=sql, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_query_waiting_in_the_gateway_shows_on_the_overview_and_its_page_says_how_long_it_waited(
    as_user, ui_gateway, screenshots
):
    # etl's one cluster runs one query at a time: the blocker holds its slot until its client reads
    # its last page, and the next query waits in the gateway meanwhile.
    _limit(ui_gateway, "trino-3", 1)
    try:
        blocker = _submit_to_etl(ui_gateway, "SELECT 'blocker'")
        assert ui_gateway.services.admission.waiting.get(blocker["id"]) is None  # sent at once
        waiting = _submit_to_etl(ui_gateway, "SELECT 'waited'")
        assert ui_gateway.services.admission.waiting.get(waiting["id"]) is not None

        page = as_user("alice").goto("/")
        expect(page.locator('[data-group="etl"] p.queue')).to_contain_text("1 waiting in the gateway (alice 1)")
        expect(page.locator('[data-group="etl"] tr[data-backend="trino-3"] td').last).to_have_text("1 / 1")
        expect(page.locator('[data-group="adhoc"] p.queue')).to_contain_text("None waiting in the gateway")
        expect(page.locator('[data-group="adhoc"] tr[data-backend="trino-1"] td').last).to_have_text("—")
        shoot(page, screenshots, "overview-queue")

        blocker_rows = follow_in_background(blocker)
        last, rows, _ = follow(waiting)
        assert rows == [["waited"]] and blocker_rows() == [["blocker"]]
    finally:
        _limit(ui_gateway, "trino-3", None)

    page = as_user("alice").goto(f"/queries/{last['id']}")
    expect(page.locator("#gateway-id")).to_have_text(waiting["id"])
    expect(page.locator("#queued")).to_have_text(re.compile(r"^\d+ ms$|^\d+\.\d s$"))
    queued = page.locator("#queued").inner_text()
    shoot(page, screenshots, "query-queued")
    # The list finds it by the id its client saw first, and shows how long it was queued.
    page = as_user("alice").goto(f"/queries?id={waiting['id']}")
    rows = page.locator("#queries tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.locator("th")).to_have_text(last["id"])
    expect(rows.locator("td").nth(5)).to_have_text(queued)


def _total_in_chart(page: Any) -> int:
    page.locator("#chart-summary tbody tr").first.wait_for()
    cells = page.locator("#chart-summary tbody tr[data-series] td:nth-child(2)").all_inner_texts()
    return sum(int(c) for c in cells)


def test_the_audit_page_lists_the_changes_made_in_the_ui(as_user, ui_gateway, screenshots):
    ui_gateway.deactivate("trino-2")
    ui_gateway.activate("trino-2")
    page = as_user("alice").goto("/audit")
    rows = page.locator('#audit tbody tr[data-action="backend.deactivate"]')
    expect(rows.first).to_contain_text("alice")
    expect(rows.first).to_contain_text("trino-2")
    shoot(page, screenshots, "audit")


def test_on_a_phone_the_pages_fit_the_screen(as_user, ui_gateway, screenshots):
    session = as_user("alice", viewport={"width": 390, "height": 844}, is_mobile=True)
    for path in ("/", "/clusters", "/queries", "/rules"):
        page = session.goto(path)
        page.locator("main h1").wait_for()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width}px wide on a 390px screen"
    page = session.goto("/")
    page.locator("[data-group]").first.wait_for()  # the groups, not "Loading…"
    shoot(page, screenshots, "overview-phone")


def test_without_a_session_a_page_sends_the_browser_to_the_login_and_back(as_user, ui_gateway):
    page = as_user(None).goto("/queries?state=FAILED")
    expect(page).to_have_url(re.compile(r"/gateway/login\?next="))
    page.get_by_label("User").fill("alice")
    page.get_by_label("Password").fill(PASSWORDS["alice"])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{ui_gateway.url}/queries?state=FAILED")
    expect(page.get_by_label("State")).to_have_value("FAILED")


THREE_WAY = (
    "SELECT count(*) FROM tpch.tiny.lineitem l JOIN tpch.tiny.orders o ON l.orderkey = o.orderkey "
    "JOIN tpch.tiny.customer c ON o.custkey = c.custkey"
)


def test_an_admin_tries_a_rule_on_the_estimate_and_the_query_page_shows_the_estimate_it_routed_by(
    as_user, ui_gateway, screenshots
):
    page = as_user("alice").goto("/rules")
    by_estimate = (
        RULES
        + """---
name: big-to-etl
description: a query whose largest step outputs over 1,000 rows goes to etl
priority: 3
condition: 'queryEstimate.max.outputRowCount > 1000'
actions:
  - 'result.put("routingGroup", "etl")'
"""
    )
    editor = page.locator("#rules-text")
    editor.fill(by_estimate)
    # Tried on SQL before saving: the planner's estimate is shown beside the group it chose.
    page.get_by_label("SQL").fill(THREE_WAY)
    page.get_by_role("button", name="Which group?").click()
    expect(page.locator("#try-group")).to_have_text("etl")
    estimate = page.locator("#try-estimate")
    expect(estimate).to_contain_text("from the planner")
    expect(estimate.locator('[data-estimate="max.outputRowCount"]')).to_have_text(re.compile(r"^60[,.\u202f]?175$"))
    expect(estimate).to_contain_text("2 joins, 3 table scans")
    shoot(page, screenshots, "rules-estimate")
    page.get_by_role("button", name="Validate and save").click()
    expect(page.locator('tr[data-rule="big-to-etl"]')).to_be_visible()
    try:
        with connect(ui_gateway.url, user="alice", source="notebook") as conn:
            cursor = conn.cursor()
            cursor.execute(THREE_WAY)
            cursor.fetchall()
            query_id = cursor.query_id
        page = as_user("alice").goto(f"/queries/{query_id}")
        details = page.locator("#query")
        expect(details).to_contain_text("big-to-etl")
        expect(details).to_contain_text("trino-3")
        # The statement's estimate was had by the trial: this query's came from the cache.
        expect(page.locator("#estimate")).to_contain_text("from the cache")
        expect(page.locator('#estimate [data-estimate="max.outputRowCount"]')).to_have_text(
            re.compile(r"^60[,.\u202f]?175$")
        )
        shoot(page, screenshots, "query-estimate")
    finally:
        # The first rules back for the other tests.
        status, _ = ui_gateway.call("PUT", "/gateway/routing-rules", {"text": RULES})
        assert status == 200
