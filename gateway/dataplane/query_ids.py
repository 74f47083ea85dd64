"""Finding the Trino query a request belongs to, so it can go to the cluster running it."""

from __future__ import annotations

import re

# Trino's form, YYYYMMDD_HHMMSS_<counter>_<coordinator id>, with bounded lengths: an id a client
# made up cannot be arbitrarily long.
_QUERY_ID = r"\d{8}_\d{6}_\d{1,10}_[a-z0-9]{1,32}"
_STATEMENT = re.compile(rf"^/v1/statement/(?:queued|executing|scheduled)/(?:partialCancel/)?({_QUERY_ID})(?:/|$)")
_QUERY_API = re.compile(rf"^/(?:v1/query|ui/api/query)/({_QUERY_ID})(?:/|$)")
# ``/ui/query.html?<id>`` or ``...?queryId=<id>`` / ``query_id=<id>``.
_IN_QUERY_STRING = re.compile(rf"(?:^|&)(?:query_?id=)?({_QUERY_ID})(?:&|$)", re.IGNORECASE)
_KILL_QUERY = re.compile(rf"kill_query\s*\(\s*(?:query_id\s*=>\s*)?'({_QUERY_ID})'", re.IGNORECASE)
STATEMENT_PREFIX = "/v1/statement/"
# In the id of a query the result cache answered (``gateway.dataplane.cached``), where a coordinator's
# id would be: a request of one never needs the query book or a cluster.
CACHED_MARK = "_cache"


def query_id_of(path: str, query_string: str) -> str | None:
    """The query id in a request's path or query string (``/ui/query.html?<id>``), if any."""
    match = _STATEMENT.match(path) or _QUERY_API.match(path)
    if match:
        return match.group(1)
    if query_string:
        match = _IN_QUERY_STRING.search(query_string)
        if match:
            return match.group(1)
    return None


def killed_query_id(sql: str) -> str | None:
    """The target of ``CALL system.runtime.kill_query(...)``: it must go where that query runs."""
    if "kill_query" not in sql.lower():
        return None
    match = _KILL_QUERY.search(sql)
    return match.group(1) if match else None
