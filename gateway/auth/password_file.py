"""Users and password hashes in a file, in the format of Trino's ``password.db``: one ``user:hash``
line each; bcrypt (``$2a$``, ``$2b$``, ``$2y$``) or PBKDF2 (``iterations:salt:hash`` in hex,
HMAC-SHA256). The file is read again when it changes."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import bcrypt

log = logging.getLogger("gateway.auth")


class PasswordFileError(ValueError):
    """The file cannot be used; the message names the file and the line."""


def _parse(path: Path) -> dict[str, str]:
    users: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not user or not hashed:
            raise PasswordFileError(f"{path}:{number}: expected user:hash")
        bcrypt_line = hashed.startswith(("$2a$", "$2b$", "$2y$")) and hashed[4:6].isdigit()
        if not (bcrypt_line or (hashed.count(":") == 2 and hashed.split(":", 1)[0].isdigit())):
            raise PasswordFileError(f"{path}:{number}: the hash of {user!r} is neither bcrypt nor PBKDF2")
        users[user] = hashed
    return users


def _matches(password: str, hashed: str) -> bool:
    secret = password.encode("utf-8")
    if hashed.startswith("$2"):
        try:
            return bcrypt.checkpw(secret, hashed.encode("ascii"))
        except ValueError:
            return False
    iterations, salt, expected = hashed.split(":")
    try:
        derived = hashlib.pbkdf2_hmac("sha256", secret, bytes.fromhex(salt), int(iterations), len(expected) // 2)
    except ValueError:
        return False
    return hmac.compare_digest(derived.hex(), expected.lower())


class PasswordFile:
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._stamp: tuple[float, int] | None = None
        self._users: dict[str, str] = {}
        self._stand_in = ""
        self._load()

    def _load(self) -> None:
        stat = self.path.stat()
        stamp = (stat.st_mtime, stat.st_size)
        if stamp == self._stamp:
            return
        self._users = _parse(self.path)
        self._stand_in = _stand_in(self._users.values())
        self._stamp = stamp

    def check(self, user: str, password: str) -> bool | None:
        """True or False for a user of the file; None when the file has no such user (the caller
        may try another method). Takes as long either way."""
        try:
            self._load()
        except (OSError, PasswordFileError) as error:
            # A broken edit must not lock everyone out: the last good version stays in use.
            log.error("password file %s cannot be read, the last good version stays in use: %s", self.path, error)
        hashed = self._users.get(user)
        if hashed is None:
            # A wrong name costs what a wrong password costs: no timing oracle on who exists.
            _matches(password, self._stand_in)
            return None
        return _matches(password, hashed)


def _stand_in(hashes: Iterable[str]) -> str:
    """A hash of nothing, of the kind and cost most of the file's hashes have, checked for unknown users."""
    kinds = Counter(h[:7] if h.startswith("$2") else h.split(":", 1)[0] for h in hashes)
    kind = kinds.most_common(1)[0][0] if kinds else "$2b$10$"
    if kind.startswith("$2"):
        return bcrypt.hashpw(b"no such user", bcrypt.gensalt(rounds=int(kind[4:6]))).decode("ascii")
    return pbkdf2_hash("no such user", iterations=int(kind))


def hash_password(password: str, rounds: int = 10) -> str:
    """A bcrypt line's hash, as ``htpasswd -B -C 10`` writes for Trino's password.db."""
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=rounds)).decode("ascii")


def pbkdf2_hash(password: str, iterations: int = 1000, salt: bytes | None = None) -> str:
    """A PBKDF2 line's hash (``iterations:salt:hash``, hex), Trino's other format."""
    salt = salt or os.urandom(16)
    derived = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations, 64)
    return f"{iterations}:{salt.hex()}:{derived.hex()}"
