"""Noticing that certificate files changed on disk (a renewal by cert-manager or certbot), so the
HTTPS listener picks the new ones up without a restart."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("gateway.tls")


class CertificateWatcher:
    """Calls ``on_change`` once the watched files changed and then stayed the same for one
    interval (a renewal writes the certificate and the key one after the other)."""

    def __init__(self, paths: list[Path], on_change: Callable[[], None], interval: float = 2.0) -> None:
        self.paths = paths
        self.on_change = on_change
        self.interval = interval
        self._stop = threading.Event()

    def _stamp(self) -> tuple[tuple[float, int], ...]:
        stamps = []
        for path in self.paths:
            try:
                stat = path.stat()
                stamps.append((stat.st_mtime, stat.st_size))
            except OSError:
                stamps.append((0.0, -1))
        return tuple(stamps)

    def start(self) -> None:
        threading.Thread(target=self._watch, name="certificate watcher", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        served = self._stamp()
        seen = served
        while not self._stop.wait(self.interval):
            now = self._stamp()
            if now != seen:
                seen = now  # still changing: wait one more interval
                continue
            if now != served and all(size >= 0 for _, size in now):
                served = now
                log.warning(
                    "TLS certificate files changed: %s; serving them from now on", ", ".join(map(str, self.paths))
                )
                self.on_change()
