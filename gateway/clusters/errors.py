"""The one error of a scaler, in a module of its own: both kinds raise it and `scaler.py`, which
builds them, re-exports it (two modules of one folder never import each other)."""

from __future__ import annotations

# How much of a command's or the engine's output a message quotes: enough to read the cause, short
# enough for a log line and the admin API. The whole (bounded) output stays on the error.
MESSAGE_OUTPUT_CHARS = 500


class ScalerError(Exception):
    """A start, stop or status that failed, timed out or could not run at all.

    The message says which action, of what, and why, quoting at most the last 500 characters of the
    output; ``output`` keeps everything that was captured (a command's last 64 KB).
    """

    def __init__(self, message: str, output: str = "") -> None:
        self.output = output
        quoted = output.strip()[-MESSAGE_OUTPUT_CHARS:]
        super().__init__(f"{message}: {quoted}" if quoted else message)
