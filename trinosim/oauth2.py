"""OAuth2 "external authentication", as a Trino coordinator does it with
``http-server.authentication.type=oauth2`` against an OpenID Connect provider.

What a client sees (Trino's ``OAuth2Authenticator``, ``OAuth2TokenExchangeResource``,
``OAuth2CallbackResource``, ``OAuth2Service`` and ``NimbusOAuth2Client``):

1. ``POST /v1/statement`` over HTTPS without an acceptable ``Authorization: Bearer`` token is
   answered ``401`` with ``WWW-Authenticate: Bearer x_redirect_server="{base}/oauth2/token/initiate/
   {authIdHash}", x_token_server="{base}/oauth2/token/{authId}"``: a fresh UUID ``authId`` per
   challenge, and the SHA-256 (hex) of its text as ``authIdHash``.
2. The client shows ``x_redirect_server`` to a browser. That URI answers ``303`` to the provider's
   authorization endpoint (``response_type=code``, ``client_id``, ``redirect_uri={base}/oauth2/
   callback``, ``scope=openid``, a ``state`` that is an HS256 JWT carrying ``handler_state=authIdHash``,
   and ``nonce`` = SHA-256 hex of a random nonce kept in the ``__Secure-Trino-Nonce`` cookie).
3. The provider sends the browser to ``/oauth2/callback?code=...&state=...``: the code is redeemed
   at the token endpoint (client_secret_basic), the ID token is checked (signature against the
   provider's JWKS, issuer, audience = client id, expiry, nonce, ``at_hash``), the access token's
   claims are read (at the userinfo endpoint, or as a JWT checked against the JWKS), and the
   access token is handed to whoever polls for ``authIdHash``.
4. Meanwhile the client polls ``GET x_token_server``: held up to 10 s, then ``{"nextUri": <the same
   URI>}``; once the browser is done ``{"token": <access token>}``, or ``{"error": <message>}``.
5. The client repeats its request with ``Authorization: Bearer <access token>``; the token's claim
   ``principal_field`` (``sub``) is the authenticated user, the query's user when no
   ``X-Trino-User`` is sent.

Like Trino, only ``POST /v1/statement`` needs a user: the ``nextUri`` chain is public (its slugs are
the capability), and so are ``/v1/info`` and trinosim's ``/_sim`` endpoints.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import jwt
import orjson
from aiohttp import web
from multidict import CIMultiDict

from trinosim import protocol
from trinosim.config import SimConfig
from trinosim.faults import Handler
from trinosim.state import STATE, SimState

log = logging.getLogger("trinosim.oauth2")

CALLBACK_PATH = "/oauth2/callback"
TOKEN_PATH = "/oauth2/token/"
NONCE_COOKIE = "__Secure-Trino-Nonce"
# The state JWT's audience and claim, as Trino writes them (OAuth2Service).
STATE_AUDIENCE = "trino_oauth_ui"
HANDLER_STATE_CLAIM = "handler_state"
# How long a poll of x_token_server is held before {"nextUri": ...} (OAuth2TokenExchange.MAX_POLL_TIME).
MAX_POLL_TIME = 10.0
# http-server.authentication.oauth2.max-clock-skew's default.
MAX_CLOCK_SKEW = 60
# Nimbus' JWSAlgorithm.Family.RSA and .EC: what Trino accepts on tokens from the provider.
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
# A JWKS is fetched again for an unknown key id, but not more often than this.
JWKS_REFETCH_INTERVAL = 10.0
_HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
TIMED_OUT = "Authentication has timed out"

_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Trino</title></head>
<body><h1>{title}</h1><p>{message}</p></body></html>
"""
SUCCESS_HTML = _PAGE.format(
    title="Authentication successful", message="You have been authenticated. You can close this window."
)
_PROVIDER_ERRORS = {
    "access_denied": "OAuth2 server denied the login",
    "unauthorized_client": "OAuth2 server does not allow request from this Trino server",
    "server_error": "OAuth2 server had a failure",
    "temporarily_unavailable": "OAuth2 server is temporarily unavailable",
}


class ChallengeFailedError(Exception):
    """The provider's answer to a challenge could not be verified (Trino's ChallengeFailedException)."""


def hash_auth_id(auth_id: uuid.UUID) -> str:
    """What the initiate URI and the state carry instead of the auth id itself, so that seeing the
    browser's URL does not let anyone poll for the token (OAuth2TokenExchange.hashAuthId)."""
    return hashlib.sha256(str(auth_id).encode()).hexdigest()


def hash_nonce(nonce: str) -> str:
    """The nonce sent to the provider is the hash of the one in the browser's cookie."""
    return hashlib.sha256(nonce.encode()).hexdigest()


def _failure_html(message: str) -> str:
    return _PAGE.format(title="Authentication failed", message=message)


@dataclass(frozen=True)
class ProviderMetadata:
    """The endpoints OpenID Connect discovery found (Trino's OidcDiscovery)."""

    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    access_token_issuer: str


class Provider:
    """The OpenID provider as the coordinator talks to it: discovery, JWKS, token and userinfo endpoints."""

    def __init__(self, config: SimConfig) -> None:
        assert config.oauth2_issuer is not None
        self.issuer = config.oauth2_issuer
        self.client_id = config.oauth2_client_id
        self.client_secret = config.oauth2_client_secret
        self.principal_field = config.oauth2_principal_field
        self.use_userinfo = config.oauth2_userinfo
        self._session: aiohttp.ClientSession | None = None
        self._metadata: ProviderMetadata | None = None
        self._metadata_lock = asyncio.Lock()
        self._keys: list[jwt.PyJWK] = []
        self._keys_fetched = 0.0
        self._keys_lock = asyncio.Lock()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=_HTTP_TIMEOUT)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the OAuth2 provider client is not started")
        return self._session

    async def _get_json(self, url: str, **options: Any) -> tuple[int, Any]:
        async with self.session.get(url, **options) as response:
            body = await response.read()
            try:
                return response.status, orjson.loads(body)
            except orjson.JSONDecodeError:
                return response.status, None

    # -- discovery and keys ------------------------------------------------------------------
    async def metadata(self) -> ProviderMetadata:
        """Discovered on first use and kept; a failed discovery is tried again on the next use."""
        if self._metadata is not None:
            return self._metadata
        async with self._metadata_lock:
            if self._metadata is None:
                self._metadata = await self._discover()
            return self._metadata

    async def _discover(self) -> ProviderMetadata:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        status, document = await self._get_json(url)
        if status != 200 or not isinstance(document, dict):
            raise ChallengeFailedError(f"Invalid response from OpenID Metadata endpoint: {status}")
        # Trino refuses a provider whose document names another issuer than the one configured.
        if document.get("issuer") != self.issuer:
            raise ChallengeFailedError(
                'Invalid response from OpenID Metadata endpoint. The value of the "issuer" claim in Metadata '
                "document different than the Issuer URL used for the Configuration Request."
            )
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(name), str):
                raise ChallengeFailedError(f'Invalid response from OpenID Metadata endpoint. Missing required "{name}"')
        userinfo = document.get("userinfo_endpoint") if self.use_userinfo else None
        return ProviderMetadata(
            authorization_endpoint=document["authorization_endpoint"],
            token_endpoint=document["token_endpoint"],
            jwks_uri=document["jwks_uri"],
            userinfo_endpoint=userinfo if isinstance(userinfo, str) else None,
            # AD FS names a separate issuer for access tokens; Trino honours it, so does trinosim.
            access_token_issuer=document.get("access_token_issuer") or self.issuer,
        )

    async def _signing_keys(self, key_id: str | None) -> list[jwt.PyJWK]:
        """The provider's keys that may have signed a token with ``key_id``; the JWKS is fetched
        again when the id is unknown, since providers rotate keys."""
        async with self._keys_lock:
            if not self._matching(key_id) and time.monotonic() - self._keys_fetched > JWKS_REFETCH_INTERVAL:
                status, document = await self._get_json((await self.metadata()).jwks_uri)
                self._keys_fetched = time.monotonic()
                if status == 200 and isinstance(document, dict):
                    with contextlib.suppress(jwt.PyJWKSetError):
                        self._keys = list(jwt.PyJWKSet.from_dict(document).keys)
            return self._matching(key_id)

    def _matching(self, key_id: str | None) -> list[jwt.PyJWK]:
        return [key for key in self._keys if key_id is None or key.key_id == key_id]

    async def verify_jwt(self, token: str, issuer: str, required: tuple[str, ...]) -> dict[str, Any]:
        """The claims of ``token`` once its signature (by a key of the provider's JWKS, RSA or EC),
        issuer, expiry, not-before and issue time hold, allowing Trino's clock skew. The audience is
        left to the caller: ID tokens and access tokens accept different ones."""
        header = jwt.get_unverified_header(token)
        if header.get("alg") not in SIGNING_ALGORITHMS:
            raise jwt.InvalidAlgorithmError(f"algorithm {header.get('alg')!r} is not accepted")
        keys = await self._signing_keys(header.get("kid"))
        if not keys:
            raise jwt.InvalidKeyError("no key of the provider's JWKS matches the token")
        error: jwt.PyJWTError = jwt.InvalidSignatureError("Signature verification failed")
        for key in keys:
            try:
                return jwt.decode(
                    token,
                    key=key.key,
                    algorithms=[header["alg"]],
                    issuer=issuer,
                    leeway=MAX_CLOCK_SKEW,
                    options={"verify_aud": False, "require": list(required)},
                )
            except jwt.InvalidSignatureError as exc:
                error = exc
            except (jwt.InvalidKeyError, TypeError, ValueError) as exc:  # a key of another type than the token's
                error = jwt.InvalidKeyError(str(exc))
        raise error

    # -- tokens ------------------------------------------------------------------------------
    async def access_token_claims(self, access_token: str) -> dict[str, Any] | None:
        """The claims behind an access token, or None if the provider does not vouch for it.

        Trino reads them at the userinfo endpoint when discovery found one (the default
        ``oauth2.oidc.use-userinfo-endpoint=true``): that is what makes opaque access tokens work.
        Otherwise the access token must be a JWT from the provider: signed by a key of its JWKS,
        from the (access token) issuer, for the client id or for no audience, with the principal
        claim."""
        metadata = await self.metadata()
        if metadata.userinfo_endpoint is not None:
            status, claims = await self._get_json(
                metadata.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"}
            )
            if status != 200 or not isinstance(claims, dict) or not isinstance(claims.get("sub"), str):
                log.info("the userinfo endpoint refused an access token: %s", status)
                return None
            return claims
        try:
            claims = await self.verify_jwt(access_token, metadata.access_token_issuer, ("iss", self.principal_field))
        except jwt.PyJWTError as error:
            log.info("access token refused: %s", error)
            return None
        audiences = _audiences(claims)
        if audiences and self.client_id not in audiences:
            log.info("access token refused: audience %s is not %s", audiences, self.client_id)
            return None
        return claims

    async def principal(self, access_token: str) -> str | None:
        """The authenticated user a bearer token stands for, or None to challenge again."""
        try:
            claims = await self.access_token_claims(access_token)
        except (aiohttp.ClientError, TimeoutError, ChallengeFailedError) as error:
            log.warning("could not check a bearer token with the provider: %s", error)
            return None
        principal = claims.get(self.principal_field) if claims else None
        return principal if isinstance(principal, str) and principal else None

    async def authorization_url(self, state: str, callback_uri: str, nonce: str) -> str:
        """Where the browser logs in (Nimbus' AuthenticationRequest for the OIDC code flow)."""
        endpoint = (await self.metadata()).authorization_endpoint
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": callback_uri,
                "scope": "openid",
                "state": state,
                "nonce": hash_nonce(nonce),
            }
        )
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    async def redeem(self, code: str, callback_uri: str, nonce: str | None) -> str:
        """Exchange an authorization code for tokens and verify them as Trino does; the access token."""
        metadata = await self.metadata()
        # client_secret_basic: both halves form-encoded first (RFC 6749, section 2.3.1).
        basic = base64.b64encode(f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}".encode())
        async with self.session.post(
            metadata.token_endpoint,
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": callback_uri},
            headers={"Authorization": f"Basic {basic.decode()}", "Accept": "application/json"},
        ) as response:
            raw = await response.read()
        try:
            tokens = orjson.loads(raw)
        except orjson.JSONDecodeError:
            tokens = None
        if response.status != 200 or not isinstance(tokens, dict) or "error" in tokens:
            raise ChallengeFailedError(f"Error while fetching access token: {raw[:500].decode(errors='replace')}")
        access_token = tokens.get("access_token")
        id_token = tokens.get("id_token")
        if not isinstance(access_token, str) or not isinstance(id_token, str):
            raise ChallengeFailedError("the token response has no access token or no ID token")
        if nonce is None:
            # The nonce cookie was not sent back: the browser that logged in is not the one that started.
            raise ChallengeFailedError("Missing nonce")
        await self._verify_id_token(id_token, access_token, nonce)
        claims = await self.access_token_claims(access_token)
        if claims is None:
            raise ChallengeFailedError("invalid access token")
        # Trino needs to know when the token expires: from expires_in or the token's own exp.
        if not isinstance(tokens.get("expires_in"), int) and not isinstance(claims.get("exp"), int | float):
            raise ChallengeFailedError("no valid expiration date")
        return access_token

    async def _verify_id_token(self, id_token: str, access_token: str, nonce: str) -> None:
        """Nimbus' IDTokenValidator: signature, issuer, audience, expiry, nonce; then the access
        token's hash if the ID token carries one."""
        try:
            claims = await self.verify_jwt(id_token, self.issuer, ("iss", "sub", "aud", "exp", "iat"))
        except jwt.PyJWTError as error:
            raise ChallengeFailedError(f"Cannot validate nonce parameter: {error}") from error
        audiences = _audiences(claims)
        if self.client_id not in audiences:
            raise ChallengeFailedError(f"Cannot validate nonce parameter: unexpected audience {audiences}")
        if "azp" in claims and claims["azp"] != self.client_id:
            raise ChallengeFailedError("Cannot validate nonce parameter: unexpected authorized party")
        if claims.get("nonce") != hash_nonce(nonce):
            raise ChallengeFailedError("Cannot validate nonce parameter: the nonce does not match")
        at_hash = claims.get("at_hash")
        if at_hash is not None and at_hash != _token_hash(access_token, jwt.get_unverified_header(id_token)["alg"]):
            raise ChallengeFailedError("Cannot validate nonce parameter: at_hash does not match the access token")


def _audiences(claims: dict[str, Any]) -> list[str]:
    """A JWT's ``aud``: one string or a list of them (RFC 7519, section 4.1.3); [] when absent."""
    audience = claims.get("aud")
    if isinstance(audience, str):
        return [audience]
    return [value for value in audience if isinstance(value, str)] if isinstance(audience, list) else []


def _token_hash(token: str, algorithm: str) -> str:
    """OpenID Connect's ``at_hash``: the left half of the token's hash, with the hash the
    signature uses (SHA-256 for RS256, and so on), base64url without padding."""
    digest = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}[algorithm[-3:]](
        token.encode()
    ).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


@dataclass
class _Challenge:
    """One auth id's token, as clients polling ``x_token_server`` wait for it."""

    result: asyncio.Future[dict[str, str]]
    forget_at: float
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    def settle(self, body: dict[str, str]) -> None:
        # Like Trino's SettableFuture: the first answer stays; later ones are ignored.
        if not self.result.done():
            self.result.set_result(body)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class TokenExchange:
    """Tokens on their way from the callback to the polling client, by ``authIdHash``
    (Trino's OAuth2TokenExchange): an entry appears on first use, fails with "Authentication has
    timed out" after the challenge timeout, and is forgotten some time after that."""

    def __init__(self, challenge_timeout: float) -> None:
        self.challenge_timeout = challenge_timeout
        self.entries: dict[str, _Challenge] = {}

    def entry(self, auth_id_hash: str) -> _Challenge:
        now = time.monotonic()
        for key in [key for key, entry in self.entries.items() if entry.forget_at < now]:
            self.entries.pop(key).settle({"error": TIMED_OUT})
        found = self.entries.get(auth_id_hash)
        if found is None:
            loop = asyncio.get_running_loop()
            # Trino keeps an entry ten poll times past its timeout, so late polls still see the error.
            found = _Challenge(loop.create_future(), now + self.challenge_timeout + MAX_POLL_TIME * 10)
            found.timer = loop.call_later(self.challenge_timeout, found.settle, {"error": TIMED_OUT})
            self.entries[auth_id_hash] = found
        return found

    def set_token(self, auth_id_hash: str, token: str) -> None:
        self.entry(auth_id_hash).settle({"token": token})

    def set_error(self, auth_id_hash: str, message: str) -> None:
        self.entry(auth_id_hash).settle({"error": message})

    def close(self) -> None:
        for entry in self.entries.values():
            if entry.timer is not None:
                entry.timer.cancel()
        self.entries.clear()


class OAuth2:
    """One server's OAuth2 authentication: its provider, its pending challenges, its state key."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.provider = Provider(config)
        self.exchange = TokenExchange(config.oauth2_challenge_timeout)
        # Trino signs the state with http-server.authentication.oauth2.state-key, or a random key.
        self.state_key = secrets.token_bytes(32)

    def base(self, request: web.Request) -> str:
        """``scheme://host[:port][prefix]`` as the client addressed this server, for the URIs it is sent to."""
        return protocol.base_uri(request, self.config.forwarded == "honour")

    def secure(self, request: web.Request) -> bool:
        """Trino offers its authenticators only on HTTPS (a forwarded ``X-Forwarded-Proto: https``
        counts where forwarded headers are processed); plain HTTP keeps the insecure
        authenticator, as with ``http-server.authentication.allow-insecure-over-http=true``."""
        if request.scheme == "https":
            return True
        proto = request.headers.get("X-Forwarded-Proto", "") if self.config.forwarded == "honour" else ""
        return proto.split(",")[0].strip().lower() == "https"

    def challenge(self, request: web.Request, message: str) -> web.Response:
        """401 naming a fresh auth id: where to log in, and where to poll for the token."""
        auth_id = uuid.uuid4()
        base = self.base(request)
        header = (
            f'Bearer x_redirect_server="{base}{TOKEN_PATH}initiate/{hash_auth_id(auth_id)}", '
            f'x_token_server="{base}{TOKEN_PATH}{auth_id}"'
        )
        return web.Response(status=401, text=message, content_type="text/plain", headers={"WWW-Authenticate": header})

    def new_state(self, auth_id_hash: str, expires: float) -> str:
        """The ``state`` the provider hands back to the callback: which auth id the login is for,
        signed so that nobody can send a browser back with another."""
        claims = {"aud": STATE_AUDIENCE, HANDLER_STATE_CLAIM: auth_id_hash, "exp": int(expires)}
        return jwt.encode(claims, self.state_key, algorithm="HS256")

    def parse_state(self, state: str | None) -> dict[str, Any]:
        """The claims of a ``state`` this server signed and that has not expired."""
        if not state:
            raise ChallengeFailedError("State validation failed: no state")
        try:
            return jwt.decode(state, self.state_key, algorithms=["HS256"], audience=STATE_AUDIENCE)
        except jwt.PyJWTError as error:
            raise ChallengeFailedError(f"State validation failed: {error}") from error


OAUTH2: web.AppKey[OAuth2] = web.AppKey("oauth2", OAuth2)


def _bearer_token(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, as AbstractBearerAuthenticator reads it."""
    values = request.headers.getall("Authorization", [])
    if len(values) != 1:
        return None
    scheme, _, token = values[0].partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Trino's AuthenticationFilter for the one resource that needs an authenticated user."""
    if request.method != "POST" or request.path != "/v1/statement":
        return await handler(request)
    oauth: OAuth2 = request.app[OAUTH2]
    if not oauth.secure(request):
        return await handler(request)
    token = _bearer_token(request)
    if token is None:
        return oauth.challenge(request, "Unauthorized")
    principal = await oauth.provider.principal(token)
    if principal is None:
        return oauth.challenge(request, "Invalid credentials")
    if not request.headers.get("X-Trino-User", "").strip():
        # The session's user is the authenticated user unless the client names one.
        headers = CIMultiDict(request.headers)
        headers["X-Trino-User"] = principal
        request = request.clone(headers=headers)
    return await handler(request)


def _auth_id(request: web.Request) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.match_info["auth_id"])
    except ValueError:
        return None


async def initiate(request: web.Request) -> web.Response:
    """``GET /oauth2/token/initiate/{authIdHash}``: send the browser to the provider's login."""
    oauth: OAuth2 = request.app[OAUTH2]
    expires = time.time() + oauth.config.oauth2_challenge_timeout
    state = oauth.new_state(request.match_info["auth_id_hash"], expires)
    nonce = secrets.token_urlsafe(32)
    try:
        location = await oauth.provider.authorization_url(state, oauth.base(request) + CALLBACK_PATH, nonce)
    except (aiohttp.ClientError, TimeoutError, ChallengeFailedError) as error:
        log.warning("OpenID provider discovery failed: %s", error)
        return web.Response(status=500, text=f"OAuth2 provider is not available: {error}", content_type="text/plain")
    response = web.Response(status=303, headers={"Location": location})
    response.set_cookie(
        NONCE_COOKIE,
        nonce,
        path=CALLBACK_PATH,
        expires=email.utils.formatdate(expires, usegmt=True),
        secure=True,
        httponly=True,
    )
    return response


def _html(status: int, text: str) -> web.Response:
    response = web.Response(status=status, text=text, content_type="text/html")
    response.set_cookie(NONCE_COOKIE, "delete", path=CALLBACK_PATH, max_age=0, secure=True, httponly=True)
    return response


async def callback(request: web.Request) -> web.Response:
    """``GET /oauth2/callback``: the provider's answer; the token goes to the client polling for it."""
    oauth: OAuth2 = request.app[OAUTH2]
    query = request.query
    try:
        state = oauth.parse_state(query.get("state"))
    except ChallengeFailedError as error:
        log.warning("OAuth2 callback: %s", error)
        return _html(400, _failure_html("Authentication response could not be verified"))
    handler_state = state.get(HANDLER_STATE_CLAIM)
    if not isinstance(handler_state, str):
        # A web UI login (no auth id) is not something trinosim starts.
        return _html(400, _failure_html("Authentication response could not be verified"))
    if "error" in query:
        error = query["error"]
        oauth.exchange.set_error(
            handler_state,
            f"Authentication response could not be verified: error={error}, "
            f"errorDescription={query.get('error_description')}, errorUri={query.get('error_uri')}",
        )
        return _html(200, _failure_html(_PROVIDER_ERRORS.get(error, f"OAuth2 unknown error code: {error}")))
    code = query.get("code")
    try:
        if not code:
            raise ChallengeFailedError("code is null")
        nonce = request.cookies.get(NONCE_COOKIE)
        token = await oauth.provider.redeem(code, oauth.base(request) + CALLBACK_PATH, nonce)
    except (ChallengeFailedError, aiohttp.ClientError, TimeoutError) as error:
        log.warning("OAuth2 callback: authentication response could not be verified: %s", error)
        oauth.exchange.set_error(handler_state, f"Authentication response could not be verified: state={handler_state}")
        return _html(400, _failure_html("Authentication response could not be verified"))
    oauth.exchange.set_token(handler_state, token)
    return _html(200, SUCCESS_HTML)


async def poll_token(request: web.Request) -> web.Response:
    """``GET /oauth2/token/{authId}``: the token, an error, or after a while the same URI again."""
    oauth: OAuth2 = request.app[OAUTH2]
    auth_id = _auth_id(request)
    if auth_id is None:
        return web.Response(status=404, text="Not Found", content_type="text/plain")
    result = oauth.exchange.entry(hash_auth_id(auth_id)).result
    try:
        # shield: a client that hangs up must not cancel the entry others may poll.
        async with asyncio.timeout(MAX_POLL_TIME):
            body = await asyncio.shield(result)
    except TimeoutError:
        body = {"nextUri": oauth.base(request) + request.path}
    return web.json_response(body, dumps=lambda value: orjson.dumps(value).decode())


async def delete_token(request: web.Request) -> web.Response:
    """``DELETE /oauth2/token/{authId}``: the client is done with this auth id."""
    oauth: OAuth2 = request.app[OAUTH2]
    auth_id = _auth_id(request)
    if auth_id is None:
        return web.Response(status=404, text="Not Found", content_type="text/plain")
    oauth.exchange.set_error(hash_auth_id(auth_id), "Authentication has been finished by the client")
    return web.Response(status=200)


def setup(app: web.Application) -> None:
    """Turn OAuth2 authentication on for ``app`` (a server whose config names an issuer)."""
    state: SimState = app[STATE]
    oauth = OAuth2(state.config)
    app[OAUTH2] = oauth
    app.middlewares.append(authenticate)
    app.router.add_get(TOKEN_PATH + "initiate/{auth_id_hash}", initiate)
    app.router.add_get(TOKEN_PATH + "{auth_id}", poll_token)
    app.router.add_delete(TOKEN_PATH + "{auth_id}", delete_token)
    app.router.add_get(CALLBACK_PATH, callback)

    async def provider_client(app: web.Application) -> AsyncIterator[None]:
        await oauth.provider.start()
        yield
        oauth.exchange.close()
        await oauth.provider.close()

    app.cleanup_ctx.append(provider_client)
