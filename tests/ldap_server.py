"""A throwaway OpenLDAP server for tests, started from Debian's ``slapd`` and stopped by PID.

Tests of LDAP authentication get a real directory without Docker or the system service: a ``slapd.conf`` and
an mdb database in a temporary directory, ``slapd`` on a free port of 127.0.0.1 only, then ``ou=people`` (one
``inetOrgPerson`` per user) and ``ou=groups`` (one ``groupOfNames`` per group) loaded with ``ldapadd``.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
SCHEMA_DIR = Path("/etc/ldap/schema")
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
# Debian builds the backends as modules; slapd.conf must load back_mdb before ``database mdb``.
MODULE_DIR = Path("/usr/lib/ldap")
MISSING = (
    "OpenLDAP's slapd and ldap-utils (ldapadd, ldapwhoami) are missing: `make system-deps` installs the Debian "
    "packages `slapd` and `ldap-utils` (apt-get install -y slapd ldap-utils)"
)
# ``-d 0`` keeps slapd in the foreground but also silences its errors (a taken port, a bad directive), and so
# does ``stats`` alone: ``none`` logs the errors, ``stats`` one line per connection and operation.
DEBUG_LEVEL = "none,stats"


def find_slapd() -> Path:
    """Debian installs slapd in /usr/sbin, which is not on every PATH (e.g. a non-root shell)."""
    found = shutil.which("slapd") or shutil.which("slapd", path="/usr/sbin:/usr/local/sbin")
    if not found or not shutil.which("ldapadd") or not shutil.which("ldapwhoami"):
        raise RuntimeError(MISSING)
    return Path(found)


def free_port() -> int:
    """A port nobody listens on right now; the kernel picks it, so parallel test runs do not collide."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def ssha(password: str) -> str:
    """An RFC 2307 ``{SSHA}`` hash, as slappasswd makes, so the directory holds no clear-text passwords."""
    salt = secrets.token_bytes(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def escape_rdn_value(value: str) -> str:
    """Escape a value for use in a DN (RFC 4514), so a uid like ``a,b`` does not split the DN."""
    last = len(value) - 1
    return "".join(
        "\\" + char if char in '\\,+"<>;=' or (index == 0 and char in " #") or (index == last and char == " ") else char
        for index, char in enumerate(value)
    )


def _ldif_line(attribute: str, value: str) -> str:
    """One LDIF line; values LDIF cannot hold verbatim (non-ASCII, newlines, leading space/colon/<) go base64."""
    if (
        not value.isascii()
        or "\n" in value
        or "\r" in value
        or value.startswith((" ", ":", "<"))
        or value.endswith(" ")
    ):
        return f"{attribute}:: {base64.b64encode(value.encode()).decode()}"
    return f"{attribute}: {value}"


def _client_env() -> dict[str, str]:
    """LDAPNOINIT keeps ldapadd from reading /etc/ldap/ldap.conf, ~/.ldaprc and LDAP* variables."""
    return {**os.environ, "LDAPNOINIT": "1"}


class LdapServer:
    """``slapd`` on a free loopback port with a fresh mdb directory of the given users and groups.

    ``users`` maps uid to password, ``groups`` maps cn to member uids. A user binds as ``user_dn(uid)``; the
    directory's manager binds as ``admin_dn`` with ``admin_password``.
    """

    def __init__(
        self,
        users: dict[str, str] | None = None,
        groups: dict[str, list[str]] | None = None,
        base_dn: str = "dc=example,dc=org",
        start_timeout: float = 20.0,
    ) -> None:
        self.users = dict(users or {})
        self.groups = {name: list(members) for name, members in (groups or {}).items()}
        self.base_dn = base_dn
        self.start_timeout = start_timeout
        self.admin_password = secrets.token_hex(12)
        self.port = 0
        self.dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``ldap://127.0.0.1:PORT``."""
        return f"ldap://{HOST}:{self.port}"

    @property
    def people_dn(self) -> str:
        return f"ou=people,{self.base_dn}"

    @property
    def groups_dn(self) -> str:
        return f"ou=groups,{self.base_dn}"

    @property
    def admin_dn(self) -> str:
        """The rootdn: it bypasses access control, so it can write everything."""
        return f"cn=admin,{self.base_dn}"

    def user_dn(self, uid: str) -> str:
        return f"uid={escape_rdn_value(uid)},{self.people_dn}"

    def group_dn(self, cn: str) -> str:
        return f"cn={escape_rdn_value(cn)},{self.groups_dn}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def log_path(self) -> Path:
        assert self.dir is not None, "server not started"
        return self.dir / "slapd.log"

    def start(self) -> LdapServer:
        """Write the configuration, start slapd, wait until the admin can bind, and load the entries."""
        if self.process is not None:
            return self
        slapd = find_slapd()
        self.dir = Path(tempfile.mkdtemp(prefix="ldaptest-"))
        try:
            (self.dir / "data").mkdir()
            (self.dir / "slapd.conf").write_text(self._config())
            self._check_config(slapd)
            # The port is free when picked but may be taken before slapd binds it: retry on a new one.
            for attempt in range(3):
                self.port = free_port()
                if self._launch(slapd):
                    break
                if attempt == 2:
                    raise RuntimeError(f"slapd did not start:\n{self._log_tail()}")
            self._load()
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def _config(self) -> str:
        """A slapd.conf (not cn=config: nothing here is changed at run time, and one file is easy to read)."""
        assert self.dir is not None
        lines = [f"include {SCHEMA_DIR / name}.schema" for name in SCHEMAS]
        lines += [
            f"pidfile {self.dir / 'slapd.pid'}",
            f"argsfile {self.dir / 'slapd.args'}",
            f"modulepath {MODULE_DIR}",
            "moduleload back_mdb",
            "database mdb",
            f'suffix "{self.base_dn}"',
            f'rootdn "{self.admin_dn}"',
            f"rootpw {ssha(self.admin_password)}",
            f"directory {self.dir / 'data'}",
            # 64 MiB of address space, not disk: mdb's 10 MiB default is tight for tests that add many users.
            "maxsize 67108864",
            "index objectClass eq",
            "index uid,member eq",
            # Like a real directory: hashes are readable by nobody, users can bind and read the rest.
            "access to attrs=userPassword by anonymous auth by self write by * none",
            "access to * by * read",
        ]
        return "\n".join(lines) + "\n"

    def _check_config(self, slapd: Path) -> None:
        """slaptest (``slapd -Ttest``) names a bad directive or DN at once, rather than after three launches."""
        assert self.dir is not None
        result = subprocess.run(
            [str(slapd), "-Ttest", "-u", "-f", str(self.dir / "slapd.conf")], capture_output=True, text=True, timeout=30
        )
        if result.returncode != 0:
            raise RuntimeError(f"slapd rejects its configuration:\n{result.stderr.strip()}")

    def _launch(self, slapd: Path) -> bool:
        """Start slapd on ``self.port``; False when it exited early, e.g. because the port was taken meanwhile."""
        assert self.dir is not None
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                # -d keeps slapd in the foreground (it would fork and detach otherwise), so its PID is ours.
                [str(slapd), "-d", DEBUG_LEVEL, "-h", f"{self.url}/", "-f", str(self.dir / "slapd.conf")],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own process group: Ctrl-C in pytest does not hit it before stop() does.
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            if self._answers():
                return True
            time.sleep(0.05)
        raise TimeoutError(f"slapd did not answer within {self.start_timeout} s:\n{self._log_tail()}")

    def _answers(self) -> bool:
        """The port is open and the admin can bind, so the database is open too.

        Whoever took the port before slapd could bind it may accept and never answer; nettimeout only bounds the
        connect, hence the short timeout: the next poll() then sees slapd exit and start() picks another port.
        """
        try:
            with socket.create_connection((HOST, self.port), timeout=1):
                pass
        except OSError:
            return False
        try:
            result = subprocess.run(self._as_admin("ldapwhoami"), env=_client_env(), capture_output=True, timeout=3)
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    def _as_admin(self, tool: str) -> list[str]:
        """An ldap-utils command line that simple-binds as the admin, giving up on connecting after 5 s."""
        return [tool, "-x", "-o", "nettimeout=5", "-H", self.url, "-D", self.admin_dn, "-w", self.admin_password]

    def _ldif(self) -> str:
        """The base entry, both organizational units, the users and the groups."""
        top = self.base_dn.split(",", 1)[0]
        attribute, _, value = top.partition("=")
        entries: list[list[str]] = []
        # An organization for o=..., else a dcObject that needs an o of its own; the two cover usual suffixes.
        if attribute.lower() == "o":
            entries.append([f"dn: {self.base_dn}", "objectClass: organization", _ldif_line("o", value)])
        else:
            entries.append(
                [
                    f"dn: {self.base_dn}",
                    "objectClass: dcObject",
                    "objectClass: organization",
                    _ldif_line(attribute, value),
                    _ldif_line("o", value),
                ]
            )
        for dn, ou in ((self.people_dn, "people"), (self.groups_dn, "groups")):
            entries.append([f"dn: {dn}", "objectClass: organizationalUnit", f"ou: {ou}"])
        for uid, password in self.users.items():
            entries.append(
                [
                    _ldif_line("dn", self.user_dn(uid)),
                    "objectClass: inetOrgPerson",
                    _ldif_line("uid", uid),
                    _ldif_line("cn", uid),
                    _ldif_line("sn", uid),
                    _ldif_line("userPassword", ssha(password)),
                ]
            )
        for cn, members in self.groups.items():
            # groupOfNames must have a member; an empty group gets the empty DN, which matches no user.
            member_dns = [self.user_dn(uid) for uid in members] or [""]
            entries.append(
                [
                    _ldif_line("dn", self.group_dn(cn)),
                    "objectClass: groupOfNames",
                    _ldif_line("cn", cn),
                    *(_ldif_line("member", dn) for dn in member_dns),
                ]
            )
        return "\n\n".join("\n".join(entry) for entry in entries) + "\n"

    def _load(self) -> None:
        """Add the entries as the admin; the LDIF stays in the temporary directory for debugging."""
        assert self.dir is not None
        ldif = self.dir / "entries.ldif"
        ldif.write_text(self._ldif())
        result = subprocess.run(
            [*self._as_admin("ldapadd"), "-f", str(ldif)],
            env=_client_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise RuntimeError(f"ldapadd failed ({result.returncode}): {result.stderr.strip()}\n{result.stdout}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop slapd by PID (SIGTERM, then SIGKILL to its group) and remove its directory; safe to call twice."""
        atexit.unregister(self.stop)
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _log_tail(self, chars: int = 3000) -> str:
        """The end of slapd's log, for error messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except (OSError, AssertionError):
            return "(no log)"

    def __enter__(self) -> LdapServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
