"""Users checked by binding to an LDAP directory as themselves (the directory checks the password),
and their groups read for role mapping. ldap3 is synchronous: calls run in a thread."""

from __future__ import annotations

import asyncio
import logging
import math
import ssl

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from gateway.config import LdapConfig

log = logging.getLogger("gateway.auth")


class LdapUnavailable(Exception):
    """The directory could not be asked (down, refused, TLS): the login neither succeeds nor counts as failed."""


class LdapDirectory:
    def __init__(self, settings: LdapConfig) -> None:
        self.settings = settings
        tls = None
        if settings.url.startswith("ldaps://") or settings.start_tls:
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=settings.ca_file)
        self.server = ldap3.Server(settings.url, connect_timeout=settings.timeout, tls=tls, get_info=ldap3.NONE)

    def user_dn(self, user: str) -> str:
        return self.settings.user_dn.replace("{user}", escape_rdn(user))

    async def check(self, user: str, password: str) -> frozenset[str] | None:
        """The user's groups when the directory accepts the password, None when it refuses."""
        return await asyncio.to_thread(self._check, user, password)

    def _check(self, user: str, password: str) -> frozenset[str] | None:
        if not password:
            # An empty password is an anonymous ("unauthenticated") bind, which many directories
            # accept: never a login.
            return None
        dn = self.user_dn(user)
        connection = ldap3.Connection(
            self.server,
            user=dn,
            password=password,
            # ldap3 packs this into a socket option of whole seconds.
            receive_timeout=max(1, math.ceil(self.settings.timeout)),
            raise_exceptions=False,
        )
        try:
            if self.settings.start_tls and not connection.start_tls():
                raise LdapUnavailable(f"StartTLS refused by {self.settings.url}")
            if not connection.bind():
                if connection.result.get("result") == 49:  # invalidCredentials
                    return None
                raise LdapUnavailable(f"{self.settings.url} refused the bind: {connection.result.get('description')}")
            return self._groups(connection, user, dn)
        except LdapUnavailable:
            raise
        except (LDAPException, OSError) as error:
            raise LdapUnavailable(f"{self.settings.url}: {type(error).__name__}: {error}") from None
        finally:
            connection.unbind()

    def _groups(self, connection: ldap3.Connection, user: str, dn: str) -> frozenset[str]:
        settings = self.settings
        if settings.group_base is None:
            return frozenset()
        search = settings.group_filter.replace("{user_dn}", escape_filter_chars(dn)).replace(
            "{user}", escape_filter_chars(user)
        )
        if not connection.search(settings.group_base, search, attributes=[settings.group_attribute]):
            return frozenset()
        groups = set()
        for entry in connection.entries:
            values = entry.entry_attributes_as_dict.get(settings.group_attribute) or []
            groups.update(str(v) for v in values)
        return frozenset(groups)
