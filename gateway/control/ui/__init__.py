"""The web UI: server-rendered page shells (Jinja) whose data comes from the admin API in the browser.

The pages hold no data of their own: each one's script reads and writes through the same endpoints
any API client calls (``/gateway/health``, ``/gateway/backend/...``, ``/gateway/queries``,
``/gateway/routing-rules``, ``/gateway/audit``), with the session cookie and its CSRF token, so the
API's role checks are the UI's. ``pages`` serves the shells and the static assets.
"""

from gateway.control.ui.pages import ui_pages

__all__ = ["ui_pages"]
