"""``GET /gateway/audit``: the audit trail, newest first (ADMIN, API)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Blueprint, Response, request

from gateway.control.api.access import changer
from gateway.control.api.models import BIGINT_MAX, AuditArgs, AuditEntry, AuditPage, json_response
from gateway.control.api.openapi import Answer, answers
from gateway.errors import api_error

if TYPE_CHECKING:
    from gateway.control.services import Services


def audit_api(services: Services) -> Blueprint:
    api = Blueprint("audit", __name__)

    @api.get("/gateway/audit")
    @changer
    @answers({200: Answer("a page of entries", AuditPage), 400: "a bad parameter"}, query=AuditArgs)
    async def audit() -> Response:
        """The audit trail, newest first.

        Changes made through the admin API, and refused attempts."""
        args = request.args
        try:
            since = int(args["since"]) if args.get("since") else None
            limit = int(args.get("limit") or 100)
            offset = int(args.get("offset") or 0)
        except ValueError:
            return api_error(400, "bad query parameter: since, limit and offset are integers")
        if (
            not 1 <= limit <= 1000
            or not 0 <= offset <= BIGINT_MAX
            or (since is not None and not 0 <= since <= BIGINT_MAX)
        ):
            return api_error(400, f"bad query parameter: limit is 1 to 1000, offset and since 0 to {BIGINT_MAX}")
        total, entries = await services.store.find_audit(args.get("actor"), since, limit, offset)
        return json_response(
            AuditPage(total=total, limit=limit, offset=offset, entries=[AuditEntry.of(e) for e in entries])
        )

    return api
