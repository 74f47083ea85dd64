"""Who sends a Trino request, when the gateway is asked to know.

With ``auth`` configured, a new query's credentials are checked by the gateway's methods, and the
verified user is what routing rules see as ``trinoRequestUser`` (``gateway.routing.rules.VERIFIED_USER``).
By default that is all: the request, ``Authorization`` header included, goes on to the backend,
which authenticates its users as ever. With ``auth.trino_path`` the gateway also enforces it: a
request without acceptable credentials is answered 401 with the challenges Trino's clients
understand, before any backend sees it.

Enforced on what Trino itself authenticates: new queries and the query, node and UI-API resources.
The ``nextUri`` chain (whose slugs are the capability, public in Trino too), ``/v1/info``,
``/v1/status``, spooled segments and Trino's own ``/oauth2`` and UI login stay open.
"""

from __future__ import annotations

from gateway.auth.authenticator import AuthenticationFailed, Authenticator, TooManyFailures
from gateway.config import AuthConfig
from gateway.dataplane.classify import Classified, Route
from gateway.dataplane.exchange import Exchange
from gateway.routing.rules import VERIFIED_USER

_ENFORCED_PREFIXES = ("/v1/query", "/v1/node", "/ui/api")


class ClientAuth:
    def __init__(self, authenticator: Authenticator, settings: AuthConfig, rules_need_user: bool) -> None:
        self.authenticator = authenticator
        self.enforce = settings.trino_path
        self.verify = settings.trino_path or rules_need_user
        challenges = []
        if authenticator.passwords is not None or authenticator.ldap is not None:
            challenges.append((b"www-authenticate", b'Basic realm="Trino"'))
        if authenticator.oidc is not None:
            challenges.append((b"www-authenticate", b'Bearer realm="Trino"'))
        self.challenges = challenges

    def guards(self, x: Exchange) -> bool:
        """Whether this request is one the gateway authenticates."""
        if not self.enforce:
            return False
        route = x.classified.route
        if route is Route.SUBMIT:
            return True
        return route in (Route.OF_QUERY, Route.OTHER) and x.scope["path"].startswith(_ENFORCED_PREFIXES)

    async def admit(self, x: Exchange) -> bool:
        """Checks the request's credentials when the gateway is to; False when it answered the
        client itself (refused). A verified user is left in the scope for the routing rules."""
        classified: Classified = x.classified
        if not (self.verify and classified.route is Route.SUBMIT) and not self.guards(x):
            return True
        authorization = x.header(b"authorization")
        address = _address(x)
        if not self.enforce:
            if authorization and self.authenticator.checks(authorization):
                principal = await self.authenticator.verify_quietly(authorization, address)
                x.scope[VERIFIED_USER] = "" if principal is None else principal.name
            return True
        try:
            principal = await self.authenticator.from_header(authorization, address)
        except TooManyFailures as error:
            headers = [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"retry-after", b"%d" % (error.retry_after + 1)),
            ]
            await _refuse(x, 429, headers, f"trino-gateway: {error}")
            return False
        except AuthenticationFailed:
            await self._challenge(x, "Invalid credentials")
            return False
        if principal is None:
            await self._challenge(x, "Unauthorized")
            return False
        x.scope[VERIFIED_USER] = principal.name
        return True

    async def _challenge(self, x: Exchange, message: str) -> None:
        # As Trino answers: 401, plain text, one WWW-Authenticate line per method the client may use.
        headers = [(b"content-type", b"text/plain; charset=utf-8"), *self.challenges]
        await _refuse(x, 401, headers, message)


async def _refuse(x: Exchange, status: int, headers: list[tuple[bytes, bytes]], message: str) -> None:
    # The request's body is read first: a connection with an unread body cannot carry the client's
    # next request (clients retry at once with credentials), and over TLS its closing would wait on
    # the client.
    await x.body()
    x.observed.refused_by_gateway(message)
    await x.respond(status, headers, message.encode())


def _address(x: Exchange) -> str:
    client = x.scope.get("client")
    return client[0] if client else "unknown"
