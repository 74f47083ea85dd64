"""The request as rules see it: ``request`` (servlet-like) and ``trinoRequestUser``.

Which user a rule sees (``extract_user``): the user the gateway verified, when it checked the
request's credentials (``auth`` configured with a method for them: the proxy puts the verdict in
the scope under ``VERIFIED_USER``); otherwise trinodb/trino-gateway's order: ``X-Trino-User``, the
user of Basic credentials (the cluster checks the password), and, only when the operator says so
with ``trust_unverified_jwt``, a claim of a bearer JWT nobody verified. Anyone can write such a
token, naming any user: trusting it lets a user pick the routing group of another.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import jwt

from gateway.routing.rules.values import Optional, RuleObject

# Scope key: the user the gateway verified from the request's credentials; "" when it checked them
# and refused (the rules then see no user); absent when it did not check.
VERIFIED_USER = "trino_gateway.verified_user"


@dataclass(frozen=True)
class UserSource:
    """Where ``trinoRequestUser`` comes from when the gateway verified nothing."""

    token_user_field: str = "email"
    trust_unverified_jwt: bool = False


class RuleRequest(RuleObject):
    """``request`` in a rule: the methods of a servlet request that routing rules use."""

    java_name = "HttpServletRequest"
    rule_methods = frozenset(
        {
            "getHeader",
            "getHeaders",
            "getHeaderNames",
            "getMethod",
            "getRequestURI",
            "getQueryString",
            "getRemoteAddr",
            "getRemoteHost",
            "getRemoteUser",
            "getContentType",
            "getScheme",
            "getServerName",
            "getServerPort",
            "getParameter",
        }
    )

    def __init__(
        self,
        headers: list[tuple[str, str]],
        method: str = "POST",
        path: str = "/v1/statement",
        query_string: str = "",
        remote_addr: str = "",
        scheme: str = "http",
        server: tuple[str, int] | None = None,
        verified_user: str | None = None,
    ) -> None:
        self.headers = headers
        self._by_name: dict[str, list[str]] = {}
        for name, value in headers:
            self._by_name.setdefault(name.lower(), []).append(value)
        self.method = method
        self.path = path
        self.query_string = query_string
        self.remote_addr = remote_addr
        self.scheme = scheme
        self.server = server or ("localhost", 8080)
        self.verified_user = verified_user

    @classmethod
    def from_scope(cls, scope: dict[str, Any]) -> RuleRequest:
        client = scope.get("client")
        server = scope.get("server")
        return cls(
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
            method=scope["method"],
            path=scope["path"],
            query_string=scope.get("query_string", b"").decode("latin-1"),
            remote_addr=client[0] if client else "",
            scheme=scope.get("scheme", "http"),
            server=(server[0], server[1]) if server else None,
            verified_user=scope.get(VERIFIED_USER),
        )

    def header(self, name: str) -> str | None:
        values = self._by_name.get(name.lower())
        return values[0] if values else None

    # -- the servlet methods ------------------------------------------------------------------
    def getHeader(self, name: str) -> str | None:
        return self.header(name)

    def getHeaders(self, name: str) -> list[str]:
        return list(self._by_name.get(name.lower(), []))

    def getHeaderNames(self) -> list[str]:
        return list(dict.fromkeys(name for name, _ in self.headers))

    def getMethod(self) -> str:
        return self.method

    def getRequestURI(self) -> str:
        return self.path

    def getQueryString(self) -> str | None:
        return self.query_string or None

    def getParameter(self, name: str) -> str | None:
        values = parse_qs(self.query_string).get(name)
        return values[0] if values else None

    def getRemoteAddr(self) -> str:
        return self.remote_addr

    def getRemoteHost(self) -> str:
        return self.remote_addr

    def getRemoteUser(self) -> str | None:
        # As a servlet container: the authenticated user, when the gateway authenticated one.
        return self.verified_user or None

    def getContentType(self) -> str | None:
        return self.header("content-type")

    def getScheme(self) -> str:
        return self.scheme

    def getServerName(self) -> str:
        return self.server[0]

    def getServerPort(self) -> int:
        return self.server[1]


def extract_user(request: RuleRequest, source: UserSource = UserSource()) -> str | None:
    """The user of a request as rules see it (the module's docstring says in which order)."""
    if request.verified_user is not None:
        return request.verified_user or None
    user = request.header("x-trino-user")
    if user:
        return user
    authorization = request.header("authorization") or ""
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    if not source.trust_unverified_jwt:
        return None
    if scheme.lower() == "bearer":
        return _jwt_claim(credentials.strip(), source.token_user_field)
    for cookie_name in ("Trino-UI-Token", "__Secure-Trino-ID-Token"):
        token = _cookie(request.header("cookie") or "", cookie_name)
        if token:
            return _jwt_claim(token, source.token_user_field)
    return None


def _jwt_claim(token: str, field: str) -> str | None:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    value = claims.get(field)
    return value if isinstance(value, str) else None


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class TrinoRequestUser(RuleObject):
    """``trinoRequestUser`` in a rule."""

    java_name = "TrinoRequestUser"
    rule_methods = frozenset({"getUser", "getUserInfo", "userExistsAndEquals"})

    def __init__(self, user: str | None) -> None:
        self.user = user

    def getUser(self) -> Optional:
        return Optional(self.user)

    def getUserInfo(self) -> Optional:
        return Optional()  # no OAuth user-info exchange: the gateway makes no calls for rules

    def userExistsAndEquals(self, name: str) -> bool:
        return self.user is not None and self.user == name
