"""Trino's OAuth2 external authentication through the gateway.

A backend that authenticates with OAuth2 answers a new query with 401 and
``WWW-Authenticate: Bearer x_redirect_server="…/oauth2/token/initiate/{hash}", x_token_server="…/oauth2/token/{id}"``.
The login exists only on that backend, so:

- both URIs are put on the gateway and marked with the backend (``gateway.dataplane.rewrite.rewrite_challenge``):
  the client's token polls and the browser's first step reach it;
- the browser's first step also gets a cookie naming the backend: the identity provider sends the
  browser back to ``/oauth2/callback`` (the backend builds that address from the forwarded
  headers), with nothing else that says where the login began.

Every backend of a gateway must trust the same provider with the same client id: the token a
client gets from one backend is sent with its next query, wherever that is routed.
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie

from gateway.dataplane.headers import RawHeaders
from gateway.dataplane.rewrite import rewrite_challenge

INITIATE_PREFIX = "/oauth2/token/initiate/"
CALLBACK_PATH = "/oauth2/callback"
COOKIE = "trino_gateway_oauth2_backend"
# As long as Trino waits for a login (http-server.authentication.oauth2.challenge-timeout, 15m).
COOKIE_SECONDS = 900


def challenge_on_gateway(headers: RawHeaders, gateway_base: str, backend_name: str) -> RawHeaders:
    return [
        (key, rewrite_challenge(value, gateway_base, backend_name) if key.lower() == b"www-authenticate" else value)
        for key, value in headers
    ]


def login_cookie(backend_name: str, gateway_base: str) -> tuple[bytes, bytes]:
    cookie = SimpleCookie()
    cookie[COOKIE] = backend_name
    morsel = cookie[COOKIE]
    morsel["path"] = CALLBACK_PATH
    morsel["max-age"] = COOKIE_SECONDS
    morsel["httponly"] = True
    # Lax: sent on the provider's top-level redirect back to the callback.
    morsel["samesite"] = "Lax"
    if gateway_base.startswith("https://"):
        morsel["secure"] = True
    return b"set-cookie", morsel.OutputString().encode("latin-1")


def login_backend(cookie_header: str | None) -> str | None:
    """The backend named by the login cookie of a callback request, if any."""
    if not cookie_header:
        return None
    cookie = SimpleCookie()
    try:
        cookie.load(cookie_header)
    except CookieError:
        return None  # a malformed Cookie header: routed as if there were none
    morsel = cookie.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None
