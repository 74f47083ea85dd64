"""A cached result: a finished query's columns and rows, as its cluster wrote them, and the pages
the gateway serves them in.

Kept as one blob (``encode``): a header line (columns, row count) and one JSON array per row, each row
on a line of its own (JSON text never holds a raw newline), compressed with zlib when it is worth it.
Rows are sliced into pages of about ``page_bytes`` each; the slicing depends on the result alone, so
every worker and node serves page N of one entry alike.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import orjson

_PLAIN, _DEFLATED = b"P", b"Z"
_WORTH_DEFLATING = 4096  # bytes; below this zlib's few saved bytes cost more than they save


@dataclass(slots=True)
class Result:
    columns: bytes
    """The ``columns`` array, as JSON."""
    rows: list[bytes]
    """Each row a JSON array."""

    @property
    def size(self) -> int:
        """About the bytes of its rows and columns as JSON: what the entry limit counts."""
        return len(self.columns) + sum(len(row) + 1 for row in self.rows)

    def encode(self) -> bytes:
        header = orjson.dumps({"columns": orjson.Fragment(self.columns), "rows": len(self.rows)})
        plain = b"\n".join([header, *self.rows])
        if len(plain) < _WORTH_DEFLATING:
            return _PLAIN + plain
        return _DEFLATED + zlib.compress(plain, 1)

    @classmethod
    def decode(cls, blob: bytes) -> Result | None:
        """The result in ``blob``; None for a blob this code did not write (or that was damaged)."""
        try:
            kind, body = blob[:1], blob[1:]
            if kind == _DEFLATED:
                body = zlib.decompress(body)
            elif kind != _PLAIN:
                return None
            lines = body.split(b"\n")
            header = orjson.loads(lines[0])
            rows = lines[1:] if len(lines) > 1 else []
            if header.get("rows") != len(rows) or not isinstance(header.get("columns"), list):
                return None
            if kind == _PLAIN:
                # A deflated blob is checked whole by zlib's checksum; a plain one (small: a few rows) has
                # each row read, so that one cut short is not served as a row.
                for row in rows:
                    if not isinstance(orjson.loads(row), list):
                        return None
            return cls(orjson.dumps(header["columns"]), rows)
        except (zlib.error, orjson.JSONDecodeError, AttributeError, IndexError):
            return None

    def pages(self, page_bytes: int) -> list[tuple[int, int]]:
        """The row slices ``[start, end)`` of its pages: at least one row per page, and one page even
        when there are no rows (it carries the columns)."""
        pages: list[tuple[int, int]] = []
        start, size = 0, 0
        for index, row in enumerate(self.rows):
            if size and size + len(row) > page_bytes:
                pages.append((start, index))
                start, size = index, 0
            size += len(row) + 1
        pages.append((start, len(self.rows)))
        return pages
