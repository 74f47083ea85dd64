"""Who may call what on the gateway's own API: every request is authenticated (a UI session
cookie, or an Authorization header) before its handler runs, and held to the access its handler
declares:

    @public   anyone (liveness, the login page, the OpenAPI document)
    @reader   any role: ADMIN, USER, API (a USER reads only its own query history)
    @changer  ADMIN or API (the default of a handler that declares nothing)

With no ``auth`` configured, every caller is the OPEN principal (make demo; logged loudly at start).
A state-changing request authenticated by a session cookie must carry the session's CSRF token
(header ``X-CSRF-Token`` or form field ``csrf_token``): a cookie alone is what a forged cross-site
form would send.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from quart import Quart, Response, g, request, session

from gateway.auth.authenticator import AuthenticationFailed, TooManyFailures
from gateway.auth.principal import OPEN, Principal
from gateway.errors import api_error

if TYPE_CHECKING:
    from gateway.control.services import Services

log = logging.getLogger("gateway.auth")

F = TypeVar("F", bound=Callable[..., Any])
_ACCESS = "trino_gateway_access"
PUBLIC, READ, CHANGE = "public", "read", "change"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


def public(view: F) -> F:
    setattr(view, _ACCESS, PUBLIC)
    return view


def reader(view: F) -> F:
    setattr(view, _ACCESS, READ)
    return view


def changer(view: F) -> F:
    setattr(view, _ACCESS, CHANGE)
    return view


def access_of(view: Callable[..., Any] | None) -> str:
    return getattr(view, _ACCESS, CHANGE) if view is not None else PUBLIC


def principal() -> Principal:
    """The caller of the request being handled."""
    return g.principal


def address() -> str:
    return request.remote_addr or "unknown"


def csrf_token() -> str:
    """The session's CSRF token (made on first use)."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def session_principal(services: Services) -> Principal | None:
    """The principal of a UI session cookie, its roles as the configuration maps them now."""
    user = session.get("user")
    if not isinstance(user, str) or services.authenticator is None:
        return None
    groups = frozenset(session.get("groups") or ())
    roles = services.authenticator.roles_of(user, groups)
    return Principal(user, groups, method="session", roles=roles)


def install(app: Quart, services: Services) -> None:
    authenticator = services.authenticator
    settings = services.config.auth

    def unauthenticated(message: str) -> Response:
        response = api_error(401, message)
        assert authenticator is not None
        for challenge in authenticator.challenges:
            response.headers.add("WWW-Authenticate", challenge)
        return response

    @app.before_request
    async def authenticate() -> Response | None:
        access = access_of(app.view_functions.get(request.endpoint or ""))
        if authenticator is None:
            g.principal = OPEN
            return None
        assert settings is not None
        if access == PUBLIC or request.path in settings.public_paths:
            g.principal = None
            return None
        by_session = session_principal(services)
        caller = by_session
        if caller is None:
            try:
                caller = await authenticator.from_header(request.headers.get("Authorization"), address())
            except TooManyFailures as error:
                response = api_error(429, str(error))
                response.headers["Retry-After"] = str(int(error.retry_after) + 1)
                return response
            except AuthenticationFailed:
                return unauthenticated("the credentials were not accepted")
        if caller is None:
            return unauthenticated("authentication required")
        g.principal = caller
        if not caller.roles or (access == CHANGE and not caller.may_change):
            if access == CHANGE:
                await services.audit.record(caller, address(), action(), _target(), outcome="refused")
            return api_error(403, f"{caller.name} may not {request.method} {request.path}")
        if by_session is not None and request.method not in SAFE_METHODS and not await _csrf_ok():
            return api_error(403, "missing or wrong CSRF token for this session")
        return None


async def _csrf_ok() -> bool:
    expected = session.get("csrf")
    if not expected:
        return False
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form
        sent = form.get(CSRF_FIELD)
    return isinstance(sent, str) and hmac.compare_digest(sent, expected)


def action() -> str:
    """What the request does, as the audit trail names it: its handler (``backend.deactivate``)."""
    return request.endpoint or f"{request.method} {request.path}"


def _target() -> str | None:
    args = request.view_args or {}
    return args.get("name")
