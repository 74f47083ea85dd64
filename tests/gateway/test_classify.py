"""One classifier says what a request is: the gateway's own, a new query, or a request of a known query."""

from __future__ import annotations

import pytest

from gateway.dataplane.classify import Route, classify

QUERY_ID = "20261123_000000_00001_abcde"


@pytest.mark.parametrize(
    ("method", "path", "query_string", "route", "kind", "query_id"),
    [
        ("POST", "/v1/statement", b"", Route.SUBMIT, "submit", None),
        ("GET", "/v1/statement", b"", Route.NOT_ALLOWED, "other", None),
        ("GET", f"/v1/statement/executing/{QUERY_ID}/y1/1", b"", Route.STATEMENT, "poll", QUERY_ID),
        ("HEAD", f"/v1/statement/queued/{QUERY_ID}/y1/1", b"", Route.STATEMENT, "poll", QUERY_ID),
        ("DELETE", f"/v1/statement/queued/{QUERY_ID}/y1/1", b"", Route.STATEMENT, "cancel", QUERY_ID),
        ("DELETE", f"/v1/statement/executing/partialCancel/{QUERY_ID}/1/y/2", b"", Route.STATEMENT, "cancel", QUERY_ID),
        ("GET", "/v1/statement/executing/not-a-query/y1/1", b"", Route.NO_SUCH_QUERY, "poll", None),
        ("DELETE", f"/v1/query/{QUERY_ID}", b"", Route.OF_QUERY, "cancel", QUERY_ID),
        ("GET", f"/v1/query/{QUERY_ID}", b"", Route.OF_QUERY, "other", QUERY_ID),
        ("GET", f"/ui/api/query/{QUERY_ID}", b"", Route.OF_QUERY, "other", QUERY_ID),
        ("GET", "/ui/query.html", QUERY_ID.encode(), Route.OF_QUERY, "other", QUERY_ID),
        ("GET", "/v1/info", b"", Route.OTHER, "other", None),
        ("GET", "/ui", b"", Route.OTHER, "other", None),
        ("GET", "/v1/spooled/download/abc", b"trino_gateway_backend=b1", Route.OTHER, "other", None),
        ("GET", "/uix", b"", Route.ADMIN, "other", None),
        ("GET", "/gateway/backend/all", b"", Route.ADMIN, "other", None),
        ("GET", "/metrics", b"", Route.ADMIN, "other", None),
        ("GET", "/v1/jmx/mbean", b"", Route.ADMIN, "other", None),
    ],
)
def test_every_request_is_classified_once_with_its_metrics_kind_and_query(
    method, path, query_string, route, kind, query_id
):
    classified = classify(method, path, query_string)
    assert (classified.route, classified.kind, classified.query_id) == (route, kind, query_id)
