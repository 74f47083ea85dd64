"""TLS contexts for ``https://`` backends, from each backend's ``tls`` settings.

One context per distinct settings, built once and shared by the statement pool and the httpx
clients: building one reads certificate files, which must not happen per request.
"""

from __future__ import annotations

import ssl

from gateway.store.backend import BackendTls


class TlsSettingsError(ValueError):
    """A backend's TLS files cannot be used; the message names the file and why."""


class TlsContexts:
    def __init__(self) -> None:
        self._contexts: dict[BackendTls, ssl.SSLContext] = {}

    def get(self, settings: BackendTls | None) -> ssl.SSLContext | None:
        """The context for ``settings``; None means the default (the system's trust store)."""
        if settings is None:
            return None
        context = self._contexts.get(settings)
        if context is None:
            context = self._contexts[settings] = build_context(settings)
        return context


def build_context(settings: BackendTls) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=settings.ca_file)
        if settings.cert_file is not None:
            context.load_cert_chain(settings.cert_file, settings.key_file)
    except (OSError, ssl.SSLError) as error:
        raise TlsSettingsError(f"cannot use the TLS files {settings.model_dump(exclude_none=True)}: {error}") from None
    if not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
