"""A real OpenID Connect provider for tests: PyPI's ``oidc-provider-mock`` run as a process of its own
on a free loopback port. It signs ID tokens with an RSA key it makes at start, so a restart on the
same port is a key rotation. Tokens are got the way a browser would: the authorization form posted
as a subject, the code from the redirect exchanged at the token endpoint."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from trinosim.gateway_process import free_port

CLIENT_ID = "trino-gateway"
CLIENT_SECRET = "gateway-secret"


class OidcProviderProcess:
    def __init__(self, log_dir: Path, token_max_age: int = 3600) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"oidc-provider-{self.port}.log"
        self.token_max_age = token_max_age
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> OidcProviderProcess:
        command = [sys.executable, "-m", "oidc_provider_mock", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--token-max-age", str(self.token_max_age)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the OIDC provider exited: {self.log_path.read_text()[-2000:]}")
            try:
                if requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=2).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"the OIDC provider did not answer within {timeout}s")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self, token_max_age: int | None = None) -> None:
        """A new process on the same port: a new signing key (a rotation), users forgotten."""
        self.stop()
        if token_max_age is not None:
            self.token_max_age = token_max_age
        self.start()

    def __enter__(self) -> OidcProviderProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def set_user(self, sub: str, **claims: Any) -> None:
        requests.put(f"{self.issuer}/users/{sub}", json=claims, timeout=10).raise_for_status()

    def id_token(self, sub: str, client_id: str = CLIENT_ID, **claims: Any) -> str:
        """An ID token for ``sub`` (audience ``client_id``), by the authorization-code flow."""
        if claims:
            self.set_user(sub, **claims)
        redirect_uri = "http://127.0.0.1/callback"
        state = secrets.token_urlsafe(8)
        authorized = requests.post(
            f"{self.issuer}/oauth2/authorize",
            params={
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "response_type": "code",
                "scope": "openid email profile",
                "state": state,
                "nonce": secrets.token_urlsafe(8),
            },
            data={"sub": sub},
            allow_redirects=False,
            timeout=10,
        )
        assert authorized.status_code == 302, authorized.text
        query = parse_qs(urlsplit(authorized.headers["Location"]).query)
        assert query["state"] == [state]
        answer = requests.post(
            f"{self.issuer}/oauth2/token",
            data={"grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": redirect_uri},
            auth=(client_id, CLIENT_SECRET),
            timeout=10,
        )
        answer.raise_for_status()
        return answer.json()["id_token"]
