"""The admin API, compatible with trinodb/trino-gateway's ``/gateway/backend/...``, and query history."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from quart import Blueprint, Response, current_app, request

from gateway.config import describe_errors, normalise_url
from gateway.errors import api_error, json_response
from gateway.rules import FileRulesSelector
from gateway.scoring import score
from gateway.store import BackendRecord, DuplicateBackend, QueryFilter, QueryRecord

admin = Blueprint("admin", __name__)


class BackendPayload(BaseModel):
    """A backend as trinodb/trino-gateway's API writes it (camelCase)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_.\-]+$")
    proxy_to: str = Field(alias="proxyTo")
    active: bool = True
    routing_group: str = Field("adhoc", alias="routingGroup", min_length=1, max_length=256)
    external_url: str | None = Field(None, alias="externalUrl")

    @field_validator("proxy_to", "external_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None or value == "" else normalise_url(value)

    def record(self) -> BackendRecord:
        return BackendRecord(self.name, self.proxy_to, self.routing_group, self.active, self.external_url)


def backend_json(backend: BackendRecord) -> dict[str, Any]:
    return {
        "name": backend.name,
        "proxyTo": backend.proxy_to,
        "active": backend.active,
        "routingGroup": backend.routing_group,
        "externalUrl": backend.external_url or backend.proxy_to,
    }


def _store() -> Any:
    return current_app.config["SERVICES"].services.store


async def _changed(name: str | None = None) -> None:
    """A backend changed here: this worker routes with the change from the next query on, and a new
    or changed backend is checked at once (an unchecked backend takes no queries)."""
    services = current_app.config["SERVICES"].services
    services.registry.invalidate()
    if name is not None:
        await services.health.check_now(name)


async def _payload() -> BackendPayload | Response:
    raw = await request.get_data()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return api_error(400, f"request body is not valid JSON: {error}")
    if not isinstance(data, dict):
        return api_error(400, "request body must be a JSON object with name, proxyTo, active, routingGroup")
    try:
        return BackendPayload.model_validate(data)
    except ValidationError as error:
        return api_error(400, describe_errors(error, "backend"))


@admin.get("/gateway")
async def ok() -> Response:
    return Response("ok", content_type="text/plain")


@admin.get("/gateway/backend/all")
async def all_backends() -> Response:
    return json_response([backend_json(b) for b in await _store().list_backends()])


@admin.get("/gateway/backend/active")
async def active_backends() -> Response:
    return json_response([backend_json(b) for b in await _store().list_backends() if b.active])


@admin.get("/gateway/backend/<name>")
async def one_backend(name: str) -> Response:
    backend = await _store().get_backend(name)
    if backend is None:
        return api_error(404, f"no backend named {name!r}")
    return json_response(backend_json(backend))


async def _set_active(name: str, active: bool) -> Response:
    store = _store()
    if not await store.set_active(name, active):
        return api_error(404, f"no backend named {name!r}")
    await _changed(name if active else None)
    return json_response(backend_json(await store.get_backend(name)))


@admin.post("/gateway/backend/activate/<name>")
async def activate(name: str) -> Response:
    return await _set_active(name, True)


@admin.post("/gateway/backend/deactivate/<name>")
async def deactivate(name: str) -> Response:
    """No new queries go to the backend; its running queries keep polling it until they finish."""
    return await _set_active(name, False)


@admin.post("/gateway/backend/modify/add")
async def add() -> Response:
    payload = await _payload()
    if isinstance(payload, Response):
        return payload
    try:
        await _store().add_backend(payload.record())
    except DuplicateBackend as error:
        return api_error(409, str(error))
    await _changed(payload.name)
    return json_response(backend_json(payload.record()))


@admin.post("/gateway/backend/modify/update")
async def update() -> Response:
    """Change a backend, or add it if it is new (trinodb/trino-gateway's update is an upsert)."""
    payload = await _payload()
    if isinstance(payload, Response):
        return payload
    store = _store()
    if not await store.update_backend(payload.record()):
        try:
            await store.add_backend(payload.record())
        except DuplicateBackend:
            await store.update_backend(payload.record())
    await _changed(payload.name)
    return json_response(backend_json(payload.record()))


@admin.post("/gateway/backend/modify/delete")
async def delete() -> Response:
    """The body is the backend's name: raw text as trinodb/trino-gateway takes it, a JSON string, or
    a JSON object with ``name``."""
    raw = (await request.get_data()).decode("utf-8", errors="replace").strip()
    name: Any = raw
    if raw.startswith(("{", '"')):
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            return api_error(400, f"request body is not valid JSON: {error}")
        name = parsed.get("name") if isinstance(parsed, dict) else parsed
    if not isinstance(name, str) or not name:
        return api_error(400, "the request body must name the backend to delete")
    if not await _store().delete_backend(name):
        return api_error(404, f"no backend named {name!r}")
    await _changed()
    return json_response({"deleted": name})


def _query_json(record: QueryRecord) -> dict[str, Any]:
    return {
        "queryId": record.query_id,
        "user": record.user_name,
        "source": record.source,
        "clientTags": record.client_tags.split(",") if record.client_tags else [],
        "routingGroup": record.routing_group,
        "backend": record.backend_name,
        "backendUrl": record.backend_url,
        "query": record.query_text,
        "submittedAt": record.submitted_at,
        "state": record.state or "RUNNING",
        "errorName": record.error_name,
        "finishedAt": record.finished_at,
        "elapsedMs": record.elapsed_ms,
    }


def _int_arg(name: str, default: int | None, low: int = 0, high: int | None = None) -> int | None:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if number < low or (high is not None and number > high):
        raise ValueError(f"{name} must be between {low} and {high if high is not None else 'any'}")
    return number


@admin.get("/gateway/queries")
async def queries() -> Response:
    """Routed queries, newest first. Filters: user, backend, group, state (RUNNING for unfinished),
    since/until (epoch milliseconds); pagination: limit (max 1000), offset."""
    args = request.args
    try:
        where = QueryFilter(
            user=args.get("user"),
            backend=args.get("backend"),
            routing_group=args.get("group"),
            state=args.get("state", "").upper() or None,
            since_ms=_int_arg("since", None),
            until_ms=_int_arg("until", None),
        )
        limit = _int_arg("limit", 100, 1, 1000) or 100
        offset = _int_arg("offset", 0) or 0
    except ValueError as error:
        return api_error(400, f"bad query parameter: {error}")
    # What this worker has buffered is written first, so a client reads its own queries.
    await current_app.config["SERVICES"].services.history.flush()
    total, records = await _store().find_queries(where, limit, offset)
    return json_response(
        {"total": total, "limit": limit, "offset": offset, "queries": [_query_json(r) for r in records]}
    )


@admin.get("/gateway/health")
async def health() -> Response:
    """Observed health of every backend, beside its admin state: state, last check, last error,
    the monitor's figures and the routing score."""
    services = current_app.config["SERVICES"].services
    out = []
    for backend in await services.store.list_backends():
        state = services.health.of(backend.name)
        in_flight = services.in_flight.count(backend.name)
        out.append(
            {
                "name": backend.name,
                "routingGroup": backend.routing_group,
                "active": backend.active,
                "state": state.state.value,
                "lastCheck": state.last_check_ms,
                "lastError": state.last_error,
                "consecutiveFailures": state.consecutive_failures,
                "requestFailures": state.request_failures,
                "runningQueries": state.stats.running,
                "queuedQueries": state.stats.queued,
                "workers": state.stats.workers,
                "inFlight": in_flight,
                "routedSinceCheck": state.routed_since_check,
                "latencyMs": round(state.latency * 1000, 2),
                "errorRate": round(state.error_rate, 4),
                "score": round(score(state, in_flight, services.router.weights), 4),
            }
        )
    return json_response(out)


@admin.get("/gateway/livez")
async def livez() -> Response:
    return Response("ok", content_type="text/plain")


@admin.get("/gateway/readyz")
async def readyz() -> Response:
    try:
        await _store().list_backends()
    except Exception as error:
        return api_error(503, f"the store cannot be read: {error}")
    return Response("ok", content_type="text/plain")


@admin.get("/gateway/routing-rules")
async def routing_rules() -> Response:
    """The routing rules in use (this worker's copy), and why the last change did not load, if it did not."""
    services = current_app.config["SERVICES"].services
    settings = services.config.routing_rules
    if not settings.enabled:
        return json_response({"enabled": False, "type": None})
    if isinstance(services.selector, FileRulesSelector):
        return json_response({"enabled": True, "type": "FILE", **services.selector.rules.describe()})
    return json_response({"enabled": True, "type": "EXTERNAL", "url": settings.external.url})
