"""The throwaway OpenLDAP server of ``tests/ldap_server.py``: users bind, groups list members, stop() stops it."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator

import pytest
from ldap3 import BASE, SUBTREE, Connection, Server
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from tests.ldap_server import HOST, LdapServer

pytestmark = pytest.mark.slow

USERS = {"alice": "alice-secret", "bob": "bob-secret", "carol, jr": "pässwörd"}
GROUPS = {"analysts": ["alice", "bob"], "admins": ["alice"], "auditors": ["carol, jr"], "empty": []}


@pytest.fixture(scope="module")
def ldap_server() -> Iterator[LdapServer]:
    # One server for the module: starting one takes well under a second, but there is no need to repeat it.
    with LdapServer(users=USERS, groups=GROUPS) as server:
        yield server


def bind(server: LdapServer, dn: str, password: str) -> bool:
    connection = Connection(Server(server.url, connect_timeout=5), user=dn, password=password, receive_timeout=5)
    try:
        return bool(connection.bind())
    finally:
        connection.unbind()


@pytest.mark.parametrize("uid", sorted(USERS))
def test_user_binds_with_its_password_only(ldap_server: LdapServer, uid: str) -> None:
    assert bind(ldap_server, ldap_server.user_dn(uid), USERS[uid])
    assert not bind(ldap_server, ldap_server.user_dn(uid), USERS[uid] + "x")
    assert not bind(ldap_server, ldap_server.user_dn(uid), "bob-secret" if uid != "bob" else "alice-secret")


def test_admin_binds_and_passwords_are_hashed(ldap_server: LdapServer) -> None:
    with Connection(ldap_server.url, user=ldap_server.admin_dn, password=ldap_server.admin_password) as admin:
        assert admin.search(ldap_server.user_dn("alice"), "(objectClass=*)", BASE, attributes=["userPassword"])
        stored = admin.entries[0].userPassword.value
    assert stored.startswith(b"{SSHA}")


def group_names(server: LdapServer, uid: str) -> set[str]:
    with Connection(server.url, user=server.user_dn(uid), password=USERS[uid], receive_timeout=5) as connection:
        member = escape_filter_chars(server.user_dn(uid))
        connection.search(
            server.groups_dn, f"(&(objectClass=groupOfNames)(member={member}))", SUBTREE, attributes=["cn"]
        )
        return {entry.cn.value for entry in connection.entries}


def test_groups_of_a_user(ldap_server: LdapServer) -> None:
    assert group_names(ldap_server, "alice") == {"analysts", "admins"}
    assert group_names(ldap_server, "bob") == {"analysts"}
    assert group_names(ldap_server, "carol, jr") == {"auditors"}


def test_stop_ends_the_process_and_frees_the_port() -> None:
    server = LdapServer(users={"dave": "dave-secret"}).start()
    pid, port, directory = server.pid, server.port, server.dir
    assert pid is not None and directory is not None
    assert bind(server, server.user_dn("dave"), "dave-secret")

    server.stop()
    server.stop()  # idempotent

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(OSError), socket.create_connection((HOST, port), timeout=1):
        pass
    with pytest.raises(LDAPException):
        bind(server, server.user_dn("dave"), "dave-secret")
    assert not directory.exists()


def test_missing_slapd_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(RuntimeError, match="make system-deps"):
        LdapServer().start()
