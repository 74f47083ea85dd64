"""The backend admin API, compatible with trinodb/trino-gateway's ``/gateway/backend/...``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError
from quart import Blueprint, Response, request

from gateway.clusters.manager import NotManaged
from gateway.config import describe_errors
from gateway.control.api.access import action, address, changer, principal, reader
from gateway.control.api.models import (
    BackendName,
    BackendToDelete,
    BackendToDeleteJson,
    Deleted,
    DrainStatus,
    StoredBackend,
    json_response,
)
from gateway.control.api.openapi import JSON, TEXT, Answer, answers
from gateway.errors import api_error
from gateway.store import DuplicateBackend
from gateway.store.backend import Backend

if TYPE_CHECKING:
    from gateway.control.services import Services


NO_SUCH_BACKEND = "no backend of this name"
NOT_MANAGED = "the backend has no scaler, or is deactivated: the gateway does not start or stop it"
STORED = Answer("the backend as stored", StoredBackend)
BAD_BACKEND = "the body is not JSON, not an object, or not a valid backend (the message names the field)"


def backends_api(services: Services) -> Blueprint:
    api = Blueprint("backend", __name__)
    store = services.store

    async def changed(name: str, before: Backend | None, after: Backend | None, check: bool = True) -> None:
        """A backend changed here: it goes to the audit trail; this worker routes with the change from
        the next query on, and a new or changed backend is checked at once (an unchecked backend
        takes no queries)."""
        await services.audit.record(
            principal(),
            address(),
            action(),
            name,
            before=None
            if before is None
            else StoredBackend.of(before).model_dump(mode="json", by_alias=True, exclude={"state"}),
            after=None
            if after is None
            else StoredBackend.of(after).model_dump(mode="json", by_alias=True, exclude={"state"}),
        )
        services.registry.invalidate()
        if check and after is not None:
            await services.health.check_now(name)

    def stored(backend: Backend) -> StoredBackend:
        clusters = services.clusters
        return StoredBackend.of(backend, clusters.state(backend) if clusters is not None else None)

    async def payload() -> Backend | Response:
        raw = await request.get_data()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            return api_error(400, f"request body is not valid JSON: {error}")
        if not isinstance(data, dict):
            return api_error(400, "request body must be a JSON object with name, proxyTo, active, routingGroup")
        # What a GET answers may be sent back as it is: its state is read-only (the cluster manager's).
        data.pop("state", None)
        try:
            return Backend.model_validate(data)
        except ValidationError as error:
            return api_error(400, describe_errors(error, "backend"))

    @api.get("/gateway/backend/all")
    @reader
    @answers({200: Answer("the backends", list[StoredBackend])})
    async def all_backends() -> Response:
        """Every backend."""
        return json_response([stored(b) for b in await store.list_backends()])

    @api.get("/gateway/backend/active")
    @reader
    @answers({200: Answer("the active backends", list[StoredBackend])})
    async def active_backends() -> Response:
        """The active backends."""
        return json_response([stored(b) for b in await store.list_backends() if b.active])

    @api.get("/gateway/backend/<name>")
    @reader
    @answers({200: Answer("the backend", StoredBackend), 404: NO_SUCH_BACKEND}, path=BackendName)
    async def one_backend(name: str) -> Response:
        """One backend."""
        backend = await store.get_backend(name)
        if backend is None:
            return api_error(404, f"no backend named {name!r}")
        return json_response(stored(backend))

    @api.get("/gateway/backend/<name>/drain")
    @reader
    @answers({200: Answer("its drain", DrainStatus), 404: NO_SUCH_BACKEND}, path=BackendName)
    async def drain_status(name: str) -> Response:
        """What the backend still has to finish.

        Over every worker and gateway node: `drained` is true only once it is inactive and no query or
        transaction of it remains."""
        status = await services.drain_status(name)
        if status is None:
            return api_error(404, f"no backend named {name!r}")
        return json_response(DrainStatus.of(status))

    async def set_active(name: str, active: bool) -> Response:
        before = await store.get_backend(name)
        if before is None or not await store.set_active(name, active):
            return api_error(404, f"no backend named {name!r}")
        after = await store.get_backend(name)
        await changed(name, before, after, check=active)
        # Deleted since (by another node or worker): the backend as this request left it.
        return json_response(stored(after or before.model_copy(update={"active": active})))

    @api.post("/gateway/backend/activate/<name>")
    @changer
    @answers({200: Answer("the backend", StoredBackend), 404: NO_SUCH_BACKEND}, path=BackendName)
    async def activate(name: str) -> Response:
        """New queries may go to the backend again."""
        return await set_active(name, True)

    @api.post("/gateway/backend/deactivate/<name>")
    @changer
    @answers({200: Answer("the backend", StoredBackend), 404: NO_SUCH_BACKEND}, path=BackendName)
    async def deactivate(name: str) -> Response:
        """No new queries go to the backend; its running queries finish.

        They keep polling it until they finish."""
        return await set_active(name, False)

    async def managed(name: str, start: bool) -> Response:
        clusters = services.clusters
        assert clusters is not None
        before = await store.get_backend(name)
        if before is None:
            return api_error(404, f"no backend named {name!r}")
        why = f"{'started' if start else 'stopped'} by {principal().name}"
        try:
            state = await (clusters.start(name, why) if start else clusters.stop(name, why))
        except NotManaged as error:
            return api_error(409, str(error))
        await services.audit.record(principal(), address(), action(), name, after={"state": state})
        return json_response(stored(before))

    @api.post("/gateway/backend/<name>/start")
    @changer
    @answers(
        {200: Answer("the backend, its state now", StoredBackend), 404: NO_SUCH_BACKEND, 409: NOT_MANAGED},
        path=BackendName,
    )
    async def start(name: str) -> Response:
        """Start the cluster through its scaler (docs/scaling.md).

        Answered once the start is under way (STARTING): the cluster takes queries when its health checks
        pass (READY). A DRAINING cluster goes back to READY."""
        return await managed(name, True)

    @api.post("/gateway/backend/<name>/stop")
    @changer
    @answers(
        {200: Answer("the backend, its state now", StoredBackend), 404: NO_SUCH_BACKEND, 409: NOT_MANAGED},
        path=BackendName,
    )
    async def stop(name: str) -> Response:
        """Drain the cluster, then stop it through its scaler once drained (docs/scaling.md).

        It takes no new queries from now on (DRAINING); its running queries and open transactions finish
        first, on every gateway node; then it is stopped (TERMINATING, then STOPPED)."""
        return await managed(name, False)

    @api.post("/gateway/backend/modify/add")
    @changer
    @answers(
        {200: STORED, 400: BAD_BACKEND, 409: "a backend of this name exists already"},
        body={JSON: Backend},
    )
    async def add() -> Response:
        """Add a backend."""
        backend = await payload()
        if isinstance(backend, Response):
            return backend
        try:
            await store.add_backend(backend)
        except DuplicateBackend as error:
            return api_error(409, str(error))
        await changed(backend.name, None, backend)
        return json_response(stored(backend))

    @api.post("/gateway/backend/modify/update")
    @changer
    @answers({200: STORED, 400: BAD_BACKEND}, body={JSON: Backend})
    async def update() -> Response:
        """Change a backend, or add it if it is new.

        trinodb/trino-gateway's update is an upsert too."""
        backend = await payload()
        if isinstance(backend, Response):
            return backend
        before = await store.get_backend(backend.name)
        if not await store.update_backend(backend):
            try:
                await store.add_backend(backend)
            except DuplicateBackend:
                await store.update_backend(backend)
        await changed(backend.name, before, backend)
        return json_response(stored(backend))

    @api.post("/gateway/backend/modify/delete")
    @changer
    @answers(
        {
            200: Answer("the backend is gone", Deleted),
            400: "the body names no backend, or is not valid JSON",
            404: NO_SUCH_BACKEND,
        },
        body={TEXT: BackendToDelete, JSON: BackendToDeleteJson},
    )
    async def delete() -> Response:
        """Delete a backend.

        The body names the backend: raw text (as trinodb/trino-gateway takes it), a JSON string, or a
        JSON object with `name`."""
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
        before = await store.get_backend(name)
        if not await store.delete_backend(name):
            return api_error(404, f"no backend named {name!r}")
        await store.forget_cluster(name)  # (what cluster management last did to it goes with it)
        await changed(name, before, None)
        return json_response(Deleted(deleted=name))

    return api
