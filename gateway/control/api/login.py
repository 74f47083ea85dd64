"""Logging in to the UI: a form for the password file and LDAP, and OpenID Connect's browser login
(authorization code with PKCE). A login sets a signed session cookie (HttpOnly, SameSite=Lax, Secure
over HTTPS) holding the user and its groups, never a password or a token; roles are mapped again at
every request, so a change of the role configuration counts at once. API principals do not log in
here: they call the API with credentials."""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from quart import Blueprint, Response, redirect, request, session

from gateway.auth.authenticator import AuthenticationFailed, TooManyFailures
from gateway.auth.oidc import LoginStart, ProviderUnavailable, TokenRejected
from gateway.auth.principal import Principal
from gateway.control.api import openapi
from gateway.control.api.access import address, csrf_token, public, session_principal
from gateway.control.api.models import CsrfHeader, LoginForm, NextPage, OidcCallback, Session, json_response
from gateway.control.api.openapi import FORM, Answer, answers
from gateway.dataplane.exchange import gateway_base
from gateway.errors import api_error

if TYPE_CHECKING:
    from gateway.control.services import Services

log = logging.getLogger("gateway.auth")


def _next_page(value: str | None) -> str:
    """Where to go after the login: a path of this gateway only (no open redirect elsewhere)."""
    if not value or not value.startswith("/") or value.startswith("//") or urlsplit(value).netloc:
        return "/"
    return value


def _form(message: str = "", next_page: str = "/", oidc: bool = False, passwords: bool = True) -> str:
    notice = f'<p class="error">{html.escape(message)}</p>' if message else ""
    fields = (
        f"""<form method="post" action="/gateway/login" class="stack">
  <input type="hidden" name="csrf_token" value="{html.escape(csrf_token())}">
  <input type="hidden" name="next" value="{html.escape(next_page)}">
  <label>User <input name="username" autocomplete="username" required></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <button type="submit">Log in</button>
</form>"""
        if passwords
        else ""
    )
    single_sign_on = (
        f'<p><a href="/gateway/login/oidc?next={html.escape(next_page)}">Log in with single sign-on</a></p>'
        if oidc
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>trino-gateway: log in</title>
<link rel="stylesheet" href="/assets/app.css"><script src="/assets/theme.js"></script></head>
<body><main class="login"><h1>trino-gateway</h1>{notice}{fields}{single_sign_on}</main></body></html>"""


def login_api(services: Services) -> Blueprint:
    api = Blueprint("login", __name__)
    authenticator = services.authenticator

    def begin_session(caller: Principal) -> Response | None:
        if not caller.may_use_the_ui:
            return None
        next_page = _next_page(request.args.get("next") or session.get("next"))
        session.clear()
        session.permanent = True
        session["user"] = caller.name
        session["groups"] = sorted(caller.groups)
        csrf_token()
        return redirect(next_page)

    def page(message: str = "", status: int = 200) -> Response:
        assert authenticator is not None
        body = _form(
            message,
            _next_page(request.args.get("next")),
            oidc=authenticator.oidc is not None
            and authenticator.settings.oidc is not None
            and authenticator.settings.oidc.client_id is not None,
            passwords=authenticator.passwords is not None or authenticator.ldap is not None,
        )
        return Response(body, status=status, content_type="text/html; charset=utf-8")

    @api.get("/gateway/login")
    @public
    @answers(
        {200: openapi.page("the login form"), 302: openapi.redirected("no auth is configured: to /")}, query=NextPage
    )
    async def login_form() -> Response:
        """The UI's login page."""
        if authenticator is None:
            return redirect("/")
        return page()

    @api.post("/gateway/login")
    @public
    @answers(
        {
            302: openapi.redirected("logged in (or no auth is configured)"),
            401: openapi.page("unknown user or wrong password"),
            403: openapi.page("the form's CSRF token is missing or stale, or the user has no role for the UI"),
            429: openapi.page("too many failed logins of this user or from this address"),
        },
        body={FORM: LoginForm},
    )
    async def login() -> Response:
        """Log in with a user and password: sets the session cookie."""
        if authenticator is None:
            return redirect("/")
        form = await request.form
        expected = session.get("csrf")
        if not expected or form.get("csrf_token") != expected:
            return page("Your login form expired: try again.", 403)
        user, password = form.get("username", ""), form.get("password", "")
        try:
            caller = await authenticator.password(user, password, address())
        except TooManyFailures as error:
            return page(str(error).capitalize() + ".", 429)
        except AuthenticationFailed:
            return page("Unknown user or wrong password.", 401)
        started = begin_session(caller)
        if started is None:
            return page(f"{user} has no role that may use the UI.", 403)
        target = _next_page(form.get("next"))
        return redirect(target)

    @api.get("/gateway/login/oidc")
    @public
    @answers(
        {
            302: openapi.redirected("to the identity provider"),
            404: "single sign-on is not configured",
            503: "the identity provider cannot be reached",
        },
        query=NextPage,
    )
    async def login_oidc() -> Response:
        """Start a single sign-on (OpenID Connect, authorization code with PKCE)."""
        if authenticator is None or authenticator.oidc is None:
            return api_error(404, "single sign-on is not configured")
        try:
            start = await authenticator.oidc.login_start(_callback_url())
        except ProviderUnavailable as error:
            log.error("single sign-on cannot start: %s", error)
            return api_error(503, "the identity provider cannot be reached")
        session["oidc"] = {"state": start.state, "nonce": start.nonce, "verifier": start.verifier}
        session["next"] = _next_page(request.args.get("next"))
        return redirect(start.url)

    @api.get("/gateway/login/oidc/callback")
    @public
    @answers(
        {
            302: openapi.redirected("logged in: to the page the login started from"),
            400: openapi.page("no single sign-on started here, or it expired"),
            401: openapi.page("the identity provider's answer was not accepted"),
            403: openapi.page("the user has no role for the UI"),
        },
        query=OidcCallback,
    )
    async def login_oidc_callback() -> Response:
        """Where the identity provider sends the browser back."""
        pending = session.pop("oidc", None)
        if authenticator is None or authenticator.oidc is None or not isinstance(pending, dict):
            return page("This single sign-on did not start here, or it expired: try again.", 400)
        start = LoginStart("", pending["state"], pending["nonce"], pending["verifier"])
        try:
            identity = await authenticator.oidc.login_finish(
                _callback_url() + "?" + request.query_string.decode("latin-1"), _callback_url(), start
            )
        except (TokenRejected, ProviderUnavailable) as error:
            log.warning("single sign-on refused: %s", error)
            return page("The identity provider's answer was not accepted.", 401)
        caller = Principal(
            identity.name, identity.groups, method="oidc", roles=authenticator.roles_of(identity.name, identity.groups)
        )
        started = begin_session(caller)
        if started is None:
            return page(f"{identity.name} has no role that may use the UI.", 403)
        return started

    @api.post("/gateway/logout")
    @public
    @answers(
        {302: openapi.redirected("to the login page"), 403: "a session's logout without its CSRF token"},
        header=CsrfHeader,
    )
    async def logout() -> Response:
        """End the session."""
        form = await request.form
        sent = request.headers.get("X-CSRF-Token") or form.get("csrf_token")
        if session.get("user") and sent != session.get("csrf"):
            return api_error(403, "missing or wrong CSRF token for this session")
        session.clear()
        return redirect("/gateway/login")

    @api.get("/gateway/session")
    @public
    @answers({200: Answer("the session", Session), 401: "not logged in"})
    async def who() -> Response:
        """The UI's session: the user, its roles and its CSRF token."""
        caller = session_principal(services)
        if caller is None:
            return api_error(401, "not logged in")
        return json_response(Session(user=caller.name, roles=sorted(caller.roles), csrf_token=csrf_token()))

    return api


def _callback_url() -> str:
    return f"{gateway_base(request.scope)}/gateway/login/oidc/callback"
