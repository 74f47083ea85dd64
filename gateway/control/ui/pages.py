"""The UI's pages and assets. A page needs a caller who may use the UI (ADMIN or USER; anyone when
auth is off): without a session the browser is sent to the login form and back. What the page shows
and which controls it offers follow the caller's roles; the API enforces them again on every call."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from quart import Blueprint, Response, redirect, render_template, request, send_from_directory

from gateway.auth.principal import OPEN, Principal
from gateway.control.api.access import csrf_token, public, session_principal

if TYPE_CHECKING:
    from gateway.control.services import Services

STATIC = Path(__file__).parent / "static"

# Page path, template, title, and whether only callers who may change see it in the menu.
PAGES: list[tuple[str, str, str, bool]] = [
    ("/", "overview.html", "Overview", False),
    ("/clusters", "clusters.html", "Clusters", False),
    ("/queries", "queries.html", "Query history", False),
    ("/rules", "rules.html", "Routing rules", False),
    ("/audit", "audit.html", "Audit", True),
]


def ui_pages(services: Services) -> Blueprint:
    ui = Blueprint("ui", __name__, template_folder="templates")

    def viewer() -> Principal | None:
        return OPEN if services.authenticator is None else session_principal(services)

    async def render(template: str, title: str, **context: Any) -> Response:
        caller = viewer()
        if caller is None:
            target = request.full_path.rstrip("?")
            return redirect(f"/gateway/login?next={quote(target, safe='/')}")
        if not caller.may_use_the_ui:
            body = await render_template("forbidden.html", title="No access", caller=caller, **_shell(caller))
            return Response(body, status=403, content_type="text/html; charset=utf-8")
        body = await render_template(template, title=title, caller=caller, **_shell(caller), **context)
        response = Response(body, content_type="text/html; charset=utf-8")
        # The pages are shells; what they show is read fresh by their scripts.
        response.headers["Cache-Control"] = "no-store"
        # Scripts and styles of this gateway only, and no framing by other sites (clickjacking).
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    def _shell(caller: Principal) -> dict[str, Any]:
        return {
            "auth_on": services.authenticator is not None,
            "may_change": caller.may_change,
            "csrf": csrf_token() if services.authenticator is not None else "",
            "menu": [(path, title) for path, _, title, admin in PAGES if caller.may_change or not admin],
            "current": request.path,
        }

    for path, template, title, _ in PAGES:
        ui.add_url_rule(path, template.removesuffix(".html"), public(_page(render, template, title)))

    @ui.get("/queries/<query_id>")
    @public
    async def query_detail(query_id: str) -> Response:
        return await render("query.html", "Query", query_id=query_id)

    @ui.get("/assets/<path:name>")
    @public
    async def asset(name: str) -> Response:
        response = await send_from_directory(STATIC, name)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    return ui


def _page(render: Any, template: str, title: str) -> Any:
    async def page() -> Response:
        return await render(template, title)

    page.__name__ = template.removesuffix(".html")
    return page
