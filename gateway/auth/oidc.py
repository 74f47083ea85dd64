"""OpenID Connect: bearer JWTs verified against the issuer's published keys (signature, iss, aud,
exp/nbf/iat with clock skew; keys fetched again when a token names one not seen yet, which is how a
rotation reaches the gateway), and the authorization-code login of the UI.

PyJWT does the JOSE work (PyJWKClient, decode); authlib's OAuth 2.0 functions write the
authorization request, the token request and PKCE, and read the provider's redirect (its ``state``
checked); httpx carries the calls.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.rfc6749.parameters import (
    parse_authorization_code_response,
    prepare_grant_uri,
    prepare_token_request,
)
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from gateway.config import OidcConfig

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"]


class TokenRejected(Exception):
    """The token is not one the gateway accepts; the message says why (for logs, not for clients)."""


class ProviderUnavailable(Exception):
    """The provider's configuration or keys could not be read."""


@dataclass(frozen=True)
class Identity:
    name: str
    groups: frozenset[str]
    claims: dict[str, Any]


@dataclass(frozen=True)
class LoginStart:
    url: str
    state: str
    nonce: str
    verifier: str


class OidcProvider:
    def __init__(self, settings: OidcConfig) -> None:
        self.settings = settings
        self.context = ssl.create_default_context(cafile=settings.ca_file)
        self._metadata: dict[str, Any] | None = None
        self._keys: jwt.PyJWKClient | None = None
        self._lock = asyncio.Lock()
        self._last_refresh = 0.0

    async def metadata(self) -> dict[str, Any]:
        """The provider's ``/.well-known/openid-configuration`` (read once)."""
        if self._metadata is None:
            async with self._lock:
                if self._metadata is None:
                    url = f"{self.settings.issuer}/.well-known/openid-configuration"
                    try:
                        async with httpx.AsyncClient(verify=self.context, timeout=10, trust_env=False) as client:
                            answer = await client.get(url)
                        answer.raise_for_status()
                        self._metadata = answer.json()
                    except (httpx.HTTPError, ValueError) as error:
                        raise ProviderUnavailable(f"cannot read {url}: {error}") from None
                    self._keys = jwt.PyJWKClient(
                        self._metadata["jwks_uri"],
                        cache_keys=True,
                        lifespan=300,
                        timeout=10,
                        ssl_context=self.context,
                        # A rotated key is fetched at its first token, not more often than this (a
                        # flood of tokens naming made-up keys must not become a flood of requests).
                        cooldown_duration=self.settings.keys_cooldown,
                    )
        return self._metadata

    async def verify(self, token: str, audience: str | list[str] | None = None, nonce: str | None = None) -> Identity:
        """The identity in ``token`` when it is valid, else TokenRejected."""
        await self.metadata()
        assert self._keys is not None
        return await asyncio.to_thread(self._verify, token, audience or self.settings.audience, nonce)

    def _verify(self, token: str, audience: str | list[str], nonce: str | None) -> Identity:
        assert self._keys is not None
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            if kid is not None:
                claims = self._decode(token, self._keys.get_signing_key(kid), audience)
            else:
                claims = self._decode_without_kid(token, audience)
        except jwt.PyJWKClientConnectionError as error:
            raise ProviderUnavailable(str(error)) from None
        except jwt.PyJWTError as error:
            raise TokenRejected(f"{type(error).__name__}: {error}") from None
        if nonce is not None and claims.get("nonce") != nonce:
            raise TokenRejected("the ID token's nonce is not the one of this login")
        name = claims.get(self.settings.principal_claim)
        if not isinstance(name, str) or not name:
            raise TokenRejected(f"the token has no {self.settings.principal_claim!r} claim")
        groups_claim = self.settings.groups_claim
        raw_groups = claims.get(groups_claim, []) if groups_claim else []
        groups = frozenset(g for g in raw_groups if isinstance(g, str)) if isinstance(raw_groups, list) else frozenset()
        return Identity(name, groups, claims)

    def _decode(self, token: str, key: jwt.PyJWK, audience: str | list[str]) -> dict[str, Any]:
        return jwt.decode(
            token,
            key,
            algorithms=ALGORITHMS,
            audience=audience,
            issuer=self.settings.issuer,
            leeway=self.settings.clock_skew,
            options={"require": ["exp", "iss", "aud"]},
        )

    def _decode_without_kid(self, token: str, audience: str | list[str]) -> dict[str, Any]:
        """A token that names no key (some providers leave ``kid`` out): each signing key of the set
        is tried; when none verifies, the set is read again (a rotation), not more often than the
        client's cooldown allows."""
        assert self._keys is not None
        for refresh in (False, True):
            if refresh:
                if time.monotonic() - self._last_refresh < self.settings.keys_cooldown:
                    break
                self._last_refresh = time.monotonic()
            for key in self._keys.get_signing_keys(refresh=refresh):
                try:
                    return self._decode(token, key, audience)
                except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError):
                    continue
        raise jwt.InvalidSignatureError("no key of the provider verifies the signature")

    # -- the browser login (authorization code with PKCE) -------------------------------------
    async def login_start(self, redirect_uri: str) -> LoginStart:
        metadata = await self.metadata()
        state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
        url = prepare_grant_uri(
            metadata["authorization_endpoint"],
            self.settings.client_id,
            "code",
            redirect_uri=redirect_uri,
            scope=" ".join(self.settings.scopes),
            state=state,
            nonce=nonce,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        return LoginStart(url, state, nonce, verifier)

    async def login_finish(self, callback_url: str, redirect_uri: str, start: LoginStart) -> Identity:
        """The browser's return from the provider (``callback_url``, its state checked against the
        login's), the code exchanged for tokens; the ID token's identity."""
        metadata = await self.metadata()
        try:
            code = parse_authorization_code_response(callback_url, state=start.state)["code"]
        except OAuth2Error as error:
            raise TokenRejected(f"the provider's answer is not this login's: {error}") from None
        body = prepare_token_request(
            "authorization_code", code=code, redirect_uri=redirect_uri, code_verifier=start.verifier
        )
        auth = (self.settings.client_id or "", self.settings.client_secret or "")
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        try:
            async with httpx.AsyncClient(verify=self.context, timeout=10, trust_env=False) as client:
                answer = await client.post(metadata["token_endpoint"], content=body, auth=auth, headers=headers)
        except httpx.HTTPError as error:
            raise ProviderUnavailable(f"cannot reach the token endpoint: {error}") from None
        if answer.status_code != 200:
            raise TokenRejected(f"the token endpoint answered HTTP {answer.status_code}: {answer.text[:200]}")
        token = answer.json().get("id_token")
        if not isinstance(token, str):
            raise TokenRejected("the token endpoint sent no ID token")
        return await self.verify(token, audience=self.settings.client_id, nonce=start.nonce)
