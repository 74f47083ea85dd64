"""Whether a statement may run twice without harm: the statements a gateway may send to another
cluster when the first failed before returning a row.

The same statement types as the routing rules' ``trinoQueryProperties.queryType`` (Query, Show*,
Describe*, Explain; not ExplainAnalyze, which runs its statement), read from the leading keywords
only: this runs for every new query, and a full parse costs more than the whole proxying of a small
one. A statement whose type the keywords cannot tell is not read-only.
"""

from __future__ import annotations

import re

# Leading comments, whitespace and opening parentheses ("(SELECT 1) UNION ...") before the keyword.
_LEAD = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*", re.DOTALL)
_WORD = re.compile(r"[A-Za-z]+")
_READ_ONLY = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "SHOW", "DESCRIBE", "DESC", "EXPLAIN"})


def is_read_only(sql: str) -> bool:
    """Query, Show*, Describe* or Explain by its leading keywords."""
    position = _LEAD.match(sql).end()  # type: ignore[union-attr]  # matches the empty string at least
    first = _WORD.match(sql, position)
    if first is None:
        return False
    keyword = first.group().upper()
    if keyword not in _READ_ONLY:
        return False
    if keyword == "EXPLAIN":
        rest = _LEAD.match(sql, first.end()).end()  # type: ignore[union-attr]
        second = _WORD.match(sql, rest)
        return second is None or second.group().upper() != "ANALYZE"
    return True
