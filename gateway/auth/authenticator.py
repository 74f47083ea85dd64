"""The one place that decides who a caller is: credentials from an ``Authorization`` header (Basic:
the password file, then LDAP; Bearer: an OpenID Connect token) or a login form, and the roles the
configuration maps the caller to."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import time

from gateway.auth.ldap_directory import LdapDirectory, LdapUnavailable
from gateway.auth.limiter import LoginLimiter, TooManyFailures
from gateway.auth.oidc import OidcProvider, ProviderUnavailable, TokenRejected
from gateway.auth.password_file import PasswordFile
from gateway.auth.principal import Principal, Role
from gateway.config import AuthConfig

log = logging.getLogger("gateway.auth")

__all__ = ["AuthenticationFailed", "Authenticator", "TooManyFailures"]


class AuthenticationFailed(Exception):
    """The credentials are wrong, expired or of an unknown kind. The message is for the log: clients
    are told only that they are not authenticated."""


class Authenticator:
    # Verified Authorization headers are remembered this long (a poll must not cost a bcrypt
    # check or an LDAP bind); a changed password or a removed user counts after at most this.
    REMEMBER_SECONDS = 60.0

    def __init__(self, settings: AuthConfig) -> None:
        self.settings = settings
        self.passwords = PasswordFile(settings.password_file) if settings.password_file else None
        self.ldap = LdapDirectory(settings.ldap) if settings.ldap else None
        self.oidc = OidcProvider(settings.oidc) if settings.oidc else None
        limit = settings.login_limit
        self.limiter = LoginLimiter(limit.failures, limit.address_failures, limit.window)
        self._verified: dict[str, tuple[Principal, float]] = {}
        self._refused: dict[str, float] = {}

    @property
    def challenges(self) -> list[str]:
        """The WWW-Authenticate values a 401 names: what the caller may try."""
        out = []
        if self.passwords is not None or self.ldap is not None:
            out.append('Basic realm="trino-gateway"')
        if self.oidc is not None:
            out.append('Bearer realm="trino-gateway"')
        return out

    def checks(self, authorization: str | None) -> bool:
        """Whether a configured method can check credentials of this kind."""
        scheme = (authorization or "").strip().partition(" ")[0].lower()
        if scheme == "basic":
            return self.passwords is not None or self.ldap is not None
        return scheme == "bearer" and self.oidc is not None

    async def verify_quietly(self, authorization: str, address: str) -> Principal | None:
        """Who the credentials name, for routing a query the backend will authenticate itself: None
        when they are refused. Failures are not counted against logins (the credentials may be the
        cluster's, unknown here) and a refusal is remembered a while (it must not cost a password
        check or a directory bind per query)."""
        key = _key(authorization)
        refused_until = self._refused.get(key)
        if refused_until is not None and refused_until > time.monotonic():
            return None
        try:
            return await self.from_header(authorization, address, count_failures=False)
        except AuthenticationFailed:
            if len(self._refused) > 10_000:
                self._refused.clear()
            self._refused[key] = time.monotonic() + self.REMEMBER_SECONDS
            return None

    def roles_of(self, name: str, groups: frozenset[str] = frozenset()) -> frozenset[Role]:
        roles = set()
        for role, members in self.settings.roles.items():
            if "*" in members or name in members or any(f"group:{group}" in members for group in groups):
                roles.add(Role(role))
        return frozenset(roles)

    async def from_header(
        self, authorization: str | None, address: str, count_failures: bool = True
    ) -> Principal | None:
        """The caller named by an ``Authorization`` header; None when there is none. Raises
        AuthenticationFailed, or TooManyFailures when this user or address failed too often."""
        if not authorization:
            return None
        key = _key(authorization)
        remembered = self._verified.get(key)
        if remembered is not None and remembered[1] > time.monotonic():
            return remembered[0]
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic" and (self.passwords is not None or self.ldap is not None):
            user, password = _basic(credentials)
            principal = await self.password(user, password, address, count_failures)
            lifetime = self.REMEMBER_SECONDS
        elif scheme == "bearer" and self.oidc is not None:
            principal, expires = await self._bearer(credentials.strip())
            lifetime = min(self.REMEMBER_SECONDS, max(0.0, expires - time.time()))
        else:
            raise AuthenticationFailed(f"{scheme or 'empty'} credentials are not accepted here")
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[key] = (principal, time.monotonic() + lifetime)
        return principal

    async def password(self, user: str, password: str, address: str, count_failures: bool = True) -> Principal:
        """A user name and password (Basic credentials, the login form): the password file, then LDAP."""
        if count_failures:
            self.limiter.check(user, address)
        principal = None
        if self.passwords is not None:
            verdict = await asyncio.to_thread(self.passwords.check, user, password)
            if verdict:
                principal = Principal(user, method="password", roles=self.roles_of(user))
            elif verdict is False:
                # The file knows the user: LDAP is not asked (one password per user).
                return self._refuse(user, address, "wrong password (password file)", count_failures)
        if principal is None and self.ldap is not None:
            try:
                groups = await self.ldap.check(user, password)
            except LdapUnavailable as error:
                log.error("LDAP cannot check user %r: %s", user, error)
                raise AuthenticationFailed(f"the directory cannot be asked: {error}") from None
            if groups is not None:
                principal = Principal(user, groups, method="ldap", roles=self.roles_of(user, groups))
        if principal is None:
            return self._refuse(user, address, "unknown user or wrong password", count_failures)
        return principal

    def _refuse(self, user: str, address: str, why: str, count: bool = True) -> Principal:
        if count:
            self.limiter.failed(user, address)
            log.warning("failed login of %r from %s: %s", user, address, why)
        raise AuthenticationFailed(why)

    async def _bearer(self, token: str) -> tuple[Principal, float]:
        assert self.oidc is not None
        try:
            identity = await self.oidc.verify(token)
        except (TokenRejected, ProviderUnavailable) as error:
            log.warning("bearer token refused: %s", error)
            raise AuthenticationFailed(str(error)) from None
        expires = float(identity.claims.get("exp", time.time()))
        roles = self.roles_of(identity.name, identity.groups)
        return Principal(identity.name, identity.groups, method="oidc", roles=roles), expires


def _key(authorization: str) -> str:
    # Credentials are remembered by their hash only, never in the clear.
    return hashlib.sha256(authorization.encode("utf-8", "surrogateescape")).hexdigest()


def _basic(credentials: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthenticationFailed("Basic credentials that are not base64 of user:password") from None
    user, sep, password = decoded.partition(":")
    if not sep or not user:
        raise AuthenticationFailed("Basic credentials without a user")
    return user, password
