"""``GET /gateway/openapi.json``: an OpenAPI 3.1 document of the gateway's own API, built once when the
app is made.

Each operation is written down here: what it takes and what its handler answers. What is not typed
twice is read from where it is decided: who may call an operation (and so its security and its 401,
403 and 429 answers) from the handler's access declaration (``gateway.control.api.access``) and the
configuration's ``auth``; the backend's schema from its pydantic model. ``tests/gateway/test_openapi.py``
holds the document to the app's routes, ``tests/gateway/test_admin_fuzz.py`` the answers to the document.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, get_args

import orjson
from quart import Quart, Response

from gateway.auth.principal import Principal, Role
from gateway.backends.health.state import Health
from gateway.config import QueuePolicy
from gateway.control.api.access import CHANGE, CSRF_HEADER, PUBLIC, SAFE_METHODS, access_of, public
from gateway.control.api.queries import BIGINT_MAX, STATS_STEP_MAX, STATS_STEP_MIN
from gateway.control.api.routing_rules import RULES_BODY_MAX_BYTES
from gateway.store.backend import Backend
from observability.metrics import QUEUED_USERS_SHOWN

if TYPE_CHECKING:
    from gateway.config import AuthConfig
    from gateway.control.services import Services

PATH = "/gateway/openapi.json"
SESSION_COOKIE = "trino_gateway_session"
JSON = "application/json"
Schema = dict[str, Any]


def openapi_path(rule: str) -> str:
    """A Quart rule as an OpenAPI path: ``<name>`` and ``<path:name>`` become ``{name}``."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


def install(app: Quart, services: Services) -> None:
    """Serve the document; call it once every other route of ``app`` is registered."""

    @public
    async def openapi_document() -> Response:
        return Response(body, content_type=JSON)

    app.add_url_rule(PATH, "openapi", openapi_document, methods=["GET"])
    # Built after the route exists, so that the document finds its own route's access too.
    body = orjson.dumps(build(app, services.config.auth))


def build(app: Quart, auth: AuthConfig | None) -> dict[str, Any]:
    endpoints = {
        (method.lower(), openapi_path(rule.rule)): rule.endpoint
        for rule in app.url_map.iter_rules()
        for method in rule.methods or ()
    }
    schemes = _security_schemes(auth)
    paths: dict[str, dict[str, Any]] = {}
    for path, operations in _OPERATIONS.items():
        for method, written in operations.items():
            endpoint = endpoints.get((method, path))
            # A documented operation the app lacks is public as an unrouted path is (and the test names it).
            access = access_of(app.view_functions.get(endpoint or ""))
            operation = {"operationId": endpoint or f"{method} {path}", **written}
            if auth is not None and access != PUBLIC and path not in auth.public_paths:
                roles = [
                    role.value for role in Role if access != CHANGE or Principal("", roles=frozenset({role})).may_change
                ]
                operation["security"] = [{scheme: roles} for scheme in schemes]
                operation["description"] = (
                    f"{operation.get('description', '')}\n\nRoles: {', '.join(roles)}."
                    f"{_CSRF_NOTE if method.upper() not in SAFE_METHODS else ''}"
                ).strip()
                operation["responses"] = {**operation["responses"], **_refusals(access)}
            paths.setdefault(path, {})[method] = operation
    backend = Backend.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    models = backend.pop("$defs", {})
    # A validator pydantic cannot show: proxyTo must be an http(s) URL (record.normalise_url).
    backend["properties"]["proxyTo"]["pattern"] = r"^\s*https?://"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trino-gateway admin API",
            "version": _version(),
            "description": "The gateway's own API: backends (trinodb/trino-gateway's /gateway/backend/...), query "
            "history, health, routing rules, metrics, the audit trail and the UI's login. Errors are JSON "
            '`{"error": "..."}` except on the login pages (HTML).'
            + ("" if auth is not None else " No auth is configured: every operation is open to every caller."),
        },
        "paths": paths,
        "components": {
            "schemas": {**_SCHEMAS, **models, "Backend": backend},
            **({"securitySchemes": schemes} if schemes else {}),
        },
    }


def _version() -> str:
    try:
        return version("trino-ha-gateway")
    except PackageNotFoundError:
        return "0.0.0"


_CSRF_NOTE = f" With the session cookie, the request must carry the session's CSRF token ({CSRF_HEADER})."


def _security_schemes(auth: AuthConfig | None) -> dict[str, Schema]:
    if auth is None:
        return {}
    schemes: dict[str, Schema] = {}
    if auth.password_file is not None or auth.ldap is not None:
        schemes["basic"] = {"type": "http", "scheme": "basic", "description": "the password file, then LDAP"}
    if auth.oidc is not None:
        schemes["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "an ID token of the configured OpenID Connect issuer",
        }
    schemes["session"] = {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": f"the UI's signed session cookie (POST /gateway/login); a POST also sends {CSRF_HEADER}",
    }
    return schemes


def _refusals(access: str) -> dict[str, Any]:
    """What ``access.install`` answers before the handler runs."""
    forbidden = (
        "the caller's role may not change anything (USER, or no role)" if access == CHANGE else "the caller has no role"
    )
    return {
        "401": {
            **_error("no credentials, or credentials that were not accepted"),
            "headers": {"WWW-Authenticate": {"description": "the schemes to try", "schema": {"type": "string"}}},
        },
        "403": _error(f"{forbidden}; or a session's POST without its CSRF token"),
        "429": {
            **_error("too many failed logins of this user or from this address"),
            "headers": {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": r"^\d+$"}}},
        },
    }


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: Schema) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(description, _ref("Error"))


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def _html(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _redirect(description: str) -> dict[str, Any]:
    return {"description": description, "headers": {"Location": {"required": True, "schema": {"type": "string"}}}}


def _parameter(
    where: str, name: str, description: str, schema: Schema | None = None, example: str | None = None
) -> dict[str, Any]:
    parameter = {
        "in": where,
        "name": name,
        "required": where == "path",
        "description": description,
        "schema": schema or {"type": "string"},
    }
    if example is not None:
        parameter["example"] = example
    return parameter


def _nullable(kind: str, description: str | None = None, **more: Any) -> Schema:
    schema: Schema = {"type": [kind, "null"], **more}
    if description is not None:
        schema["description"] = description
    return schema


def _record(properties: dict[str, Schema], description: str = "") -> Schema:
    """An object with exactly these properties, all of them always written."""
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


_INTEGER = {"type": "integer"}
_NUMBER = {"type": "number"}
_STRING = {"type": "string"}
_BOOLEAN = {"type": "boolean"}
_EPOCH_MS = {"type": "integer", "minimum": 0, "maximum": BIGINT_MAX, "description": "epoch milliseconds"}
_BACKEND_NAME = _parameter("path", "name", "the backend's name", example="trino-1")
_NEXT = _parameter("query", "next", "a path of this gateway to go to after the login")
_DRAIN = {
    "name": _STRING,
    "active": _BOOLEAN,
    "unfinishedQueries": _INTEGER,
    "oldestQueryAgeSeconds": _nullable("number"),
    "openTransactions": _INTEGER,
    "oldestTransactionAgeSeconds": _nullable("number"),
    "drained": {"type": "boolean", "description": "inactive, and nothing of it is left running: safe to stop"},
}
_PAGE = {"total": _INTEGER, "limit": _INTEGER, "offset": _INTEGER}
_STEP = {"type": "integer", "minimum": STATS_STEP_MIN, "maximum": STATS_STEP_MAX}

_SCHEMAS: dict[str, Schema] = {
    "Error": _record({"error": _STRING}, "what went wrong, in a sentence"),
    "DrainStatus": _record(_DRAIN, "what a backend still has to finish, over every worker and gateway node"),
    "BackendHealth": _record(
        {
            "name": _STRING,
            "routingGroup": _STRING,
            "active": _BOOLEAN,
            "state": {"type": "string", "enum": [state.value for state in Health]},
            "lastCheck": {"type": ["integer", "null"], "description": "epoch milliseconds"},
            "lastError": _nullable("string"),
            "consecutiveFailures": _INTEGER,
            "requestFailures": _INTEGER,
            "runningQueries": _nullable("integer"),
            "queuedQueries": _nullable("integer"),
            "workers": _nullable("integer"),
            "inFlight": _INTEGER,
            "requestsInFlight": _INTEGER,
            "routedSinceCheck": _INTEGER,
            "latencyMs": _NUMBER,
            "errorRate": _NUMBER,
            "score": _NUMBER,
            "cost": _NUMBER,
            **{key: value for key, value in _DRAIN.items() if key not in ("name", "active")},
            "maxRunning": _nullable("integer", "the most queries the gateway runs there at once; null: no limit"),
            "runningSlots": {
                "type": "integer",
                "minimum": 0,
                "description": "queries run there under admission control (slots in use): this worker's on "
                "SQLite, the fleet's on PostgreSQL",
            },
            "gatewayQueue": _ref("GatewayQueue"),
        },
        "a backend's admin state beside what this worker observes of it, its drain, and its capacity",
    ),
    "GatewayQueue": _record(
        {
            "worker": {"type": "string", "description": "the worker (host:pid) whose queue this is"},
            "waiting": {"type": "integer", "minimum": 0},
            "waitingByUser": {
                "type": "array",
                "description": f"most waiting first, at most {QUEUED_USERS_SHOWN} users (as the queued-queries "
                "gauge); a caller who may not see every query sees its own user only",
                "items": _record({"user": _nullable("string"), "waiting": {"type": "integer", "minimum": 1}}),
            },
            "otherUsersWaiting": {
                "type": "integer",
                "minimum": 0,
                "description": "waiting queries of the users not named",
            },
            "maxQueued": _nullable("integer"),
            "maxQueueWait": _nullable("number", "seconds"),
            "queuePolicy": {"enum": list(get_args(QueuePolicy))},
        },
        "the queries of the backend's routing group waiting in the gateway, as the answering worker holds them "
        "(each worker queues its own), and the group's queue settings",
    ),
    "Query": _record(
        {
            "queryId": _STRING,
            "user": _nullable("string"),
            "source": _nullable("string"),
            "clientTags": {"type": "array", "items": _STRING},
            "routingGroup": _STRING,
            "backend": _STRING,
            "backendUrl": _STRING,
            "query": _nullable("string"),
            "submittedAt": _EPOCH_MS,
            "state": {"type": "string", "description": "RUNNING until the gateway saw the query end"},
            "errorName": _nullable("string"),
            "finishedAt": _nullable("integer"),
            "elapsedMs": _nullable("integer"),
            "transactionId": _nullable("string"),
            "routingSource": {
                "type": ["string", "null"],
                "description": "what chose the routing group: header, rule, external, default; transaction "
                "(sent to its transaction's backend) or kill_query (sent to its target's backend); null for "
                "queries recorded before the gateway kept it",
            },
            "routingRule": {
                "type": ["string", "null"],
                "description": "the routing rule that set the group (external for the routing service)",
            },
            "gatewayQueryId": _nullable(
                "string",
                "the id the gateway gave the query while it waited in the gateway's queue (the id its client saw "
                "first); null: it was sent to its backend at once",
            ),
            "queuedMs": _nullable(
                "integer",
                "how long it waited in the gateway before a backend had room; null: it did not wait",
                minimum=0,
            ),
            "attempts": _nullable(
                "string",
                'earlier attempts on other backends that failed before any row reached the client, joined by "; " '
                '(e.g. "trino-1: connection refused"); null: the first backend took it',
            ),
            "traceId": {
                "type": ["string", "null"],
                "pattern": "^[0-9a-f]{32}$",
                "description": "the query's trace (W3C trace id), when tracing was on",
            },
            "traceUrl": {
                "type": ["string", "null"],
                "description": "the trace's page in the tracing UI (observability.tracing.ui_url), if configured",
            },
        },
        "one routed query",
    ),
    "QueryPage": _record({**_PAGE, "queries": {"type": "array", "items": _ref("Query")}}),
    "QueryStats": _record(
        {
            "since": _EPOCH_MS,
            "until": _EPOCH_MS,
            "step": {**_STEP, "description": "seconds per bucket"},
            "buckets": {
                "type": "array",
                "description": "by bucket, routing group, backend; buckets with no query are left out",
                "items": _record(
                    {
                        "at": {**_EPOCH_MS, "description": "the bucket's start: a multiple of step since the epoch"},
                        "routingGroup": _STRING,
                        "backend": _STRING,
                        "queries": {"type": "integer", "minimum": 1},
                        "failed": {"type": "integer", "minimum": 0, "description": "of them, ended FAILED"},
                    }
                ),
            },
        },
        "routed queries counted per time bucket, routing group and backend",
    ),
    "AuditEntry": _record(
        {
            "id": _nullable("integer"),
            "at": _EPOCH_MS,
            "actor": _STRING,
            "method": {"type": "string", "description": "how the actor was authenticated"},
            "address": _STRING,
            "action": {"type": "string", "description": "the handler, e.g. backend.deactivate"},
            "target": _nullable("string"),
            "outcome": {"type": "string", "description": "done, or refused"},
            "before": {"description": "the target before the change (a backend; a rules file's text), or null"},
            "after": {"description": "the target after the change (a backend; a rules file's text), or null"},
        },
        "one change through the admin API, or a refused attempt at one",
    ),
    "AuditPage": _record({**_PAGE, "entries": {"type": "array", "items": _ref("AuditEntry")}}),
    "RoutingRules": {
        "type": "object",
        "required": ["enabled", "type"],
        "properties": {
            "enabled": _BOOLEAN,
            "type": {"enum": ["FILE", "EXTERNAL", None]},
            "file": {"type": "string", "description": "the rules file (as path)"},
            "path": {"type": "string", "description": "the rules file"},
            "text": {"type": "string", "description": "the text the rules in use were read from"},
            "rules": {"type": "array", "items": _ref("Rule")},
            "lastError": _nullable("string"),
            "reloads": _INTEGER,
            "url": _STRING,
        },
    },
    "Rule": {
        "type": "object",
        "description": "a rule as written (name, description, priority, condition and actions, or "
        "compositeRuleType and composingRules), and how many times it fired for new queries on this node",
        "required": ["name", "priority", "fired"],
        "properties": {
            "name": _STRING,
            "description": _STRING,
            "priority": _INTEGER,
            "condition": _STRING,
            "actions": {"type": "array", "items": _STRING},
            "compositeRuleType": _STRING,
            "composingRules": {"type": "array", "items": _ref("Rule")},
            "fired": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "null for a composite rule: its composing rules are counted",
            },
        },
    },
    "RulesError": _record(
        {
            "error": _STRING,
            "line": {"type": ["integer", "null"], "minimum": 1, "description": "where in the rules' text, if known"},
        },
        "rules that do not load (or a body that holds none): why, and the line of the text where",
    ),
    "RulesTest": _record(
        {
            "routingGroup": {"type": ["string", "null"], "description": "null: the default group"},
            "rule": {"type": ["string", "null"], "description": "the rule that set the group"},
            "fired": {"type": "array", "items": _STRING, "description": "every rule that fired, in order"},
            "failed": {
                "type": "array",
                "description": "rules that failed while running (skipped): [rule, error]",
                "items": {"type": "array", "items": _STRING, "minItems": 2, "maxItems": 2},
            },
            "source": {"enum": ["rule", "header", "default"], "description": "what chose the group"},
        },
        "what the rules decide for the request",
    ),
    "MBean": _record(
        {
            "objectName": _STRING,
            "className": _STRING,
            "description": _STRING,
            "attributes": {
                "type": "array",
                "items": _record(
                    {
                        "name": _STRING,
                        "type": {"enum": ["boolean", "java.lang.String", "double", "long"]},
                        "readable": _BOOLEAN,
                        "writable": _BOOLEAN,
                        "value": {"description": "a number, string or boolean (null for NaN)"},
                    }
                ),
            },
            "operations": {"type": "array", "maxItems": 0},
        },
        "an MBean as Trino's JMX REST API writes it (airlift's MBeanRepresentation)",
    ),
    "Session": _record(
        {
            "user": _STRING,
            "roles": {"type": "array", "items": {"enum": [role.value for role in Role]}},
            "csrfToken": {"type": "string", "description": f"what the UI's POSTs send as {CSRF_HEADER}"},
        }
    ),
    "Deleted": _record({"deleted": {"type": "string", "description": "the deleted backend's name"}}),
}

_BACKEND_BODY = {
    "required": True,
    "content": {
        JSON: {
            "schema": _ref("Backend"),
            "examples": {
                "spare": {
                    "value": {
                        "name": "spare-1",
                        "proxyTo": "http://127.0.0.1:9",
                        "routingGroup": "spare",
                        "active": False,
                    }
                }
            },
        }
    },
}
_BAD_BACKEND = _error("the body is not JSON, not an object, or not a valid backend (the message names the field)")
_RULES_EXAMPLE = """---
name: airflow
condition: 'request.getHeader("X-Trino-Source") == "airflow"'
actions: ['result.put("routingGroup", "etl")']
"""
_PAGINATION = [
    _parameter("query", "limit", "at most this many (default 100)", {"type": "integer", "minimum": 1, "maximum": 1000}),
    _parameter(
        "query", "offset", "skip this many (default 0)", {"type": "integer", "minimum": 0, "maximum": BIGINT_MAX}
    ),
]

_OPERATIONS: dict[str, dict[str, dict[str, Any]]] = {
    "/gateway/backend/all": {
        "get": {
            "tags": ["backends"],
            "summary": "Every backend",
            "responses": {"200": _json("the backends", {"type": "array", "items": _ref("Backend")})},
        }
    },
    "/gateway/backend/active": {
        "get": {
            "tags": ["backends"],
            "summary": "The active backends",
            "responses": {"200": _json("the active backends", {"type": "array", "items": _ref("Backend")})},
        }
    },
    "/gateway/backend/{name}": {
        "get": {
            "tags": ["backends"],
            "summary": "One backend",
            "parameters": [_BACKEND_NAME],
            "responses": {"200": _json("the backend", _ref("Backend")), "404": _error("no backend of this name")},
        }
    },
    "/gateway/backend/{name}/drain": {
        "get": {
            "tags": ["backends"],
            "summary": "What the backend still has to finish",
            "description": "`drained` is true only once it is inactive and no query or transaction of it remains.",
            "parameters": [_BACKEND_NAME],
            "responses": {"200": _json("its drain", _ref("DrainStatus")), "404": _error("no backend of this name")},
        }
    },
    "/gateway/backend/activate/{name}": {
        "post": {
            "tags": ["backends"],
            "summary": "New queries may go to the backend again",
            "parameters": [_BACKEND_NAME],
            "responses": {"200": _json("the backend", _ref("Backend")), "404": _error("no backend of this name")},
        }
    },
    "/gateway/backend/deactivate/{name}": {
        "post": {
            "tags": ["backends"],
            "summary": "No new queries go to the backend; its running queries finish",
            "parameters": [_BACKEND_NAME],
            "responses": {"200": _json("the backend", _ref("Backend")), "404": _error("no backend of this name")},
        }
    },
    "/gateway/backend/modify/add": {
        "post": {
            "tags": ["backends"],
            "summary": "Add a backend",
            "requestBody": _BACKEND_BODY,
            "responses": {
                "200": _json("the backend as stored", _ref("Backend")),
                "400": _BAD_BACKEND,
                "409": _error("a backend of this name exists already"),
            },
        }
    },
    "/gateway/backend/modify/update": {
        "post": {
            "tags": ["backends"],
            "summary": "Change a backend, or add it if it is new",
            "requestBody": _BACKEND_BODY,
            "responses": {"200": _json("the backend as stored", _ref("Backend")), "400": _BAD_BACKEND},
        }
    },
    "/gateway/backend/modify/delete": {
        "post": {
            "tags": ["backends"],
            "summary": "Delete a backend",
            "description": "The body names the backend: raw text (as trinodb/trino-gateway takes it), a JSON "
            "string, or a JSON object with `name`.",
            "requestBody": {
                "required": True,
                "content": {
                    "text/plain": {"schema": {"type": "string", "minLength": 1}, "example": "spare-1"},
                    JSON: {
                        "schema": {
                            "anyOf": [
                                {"type": "string", "minLength": 1},
                                {"type": "object", "required": ["name"], "properties": {"name": _STRING}},
                            ]
                        },
                        "example": {"name": "spare-1"},
                    },
                },
            },
            "responses": {
                "200": _json("the backend is gone", _ref("Deleted")),
                "400": _error("the body names no backend, or is not valid JSON"),
                "404": _error("no backend of this name"),
            },
        }
    },
    "/gateway/queries": {
        "get": {
            "tags": ["queries"],
            "summary": "Routed queries, newest first",
            "description": "A caller who may not change anything (USER) sees its own queries only.",
            "parameters": [
                _parameter("query", "user", "only this user's (callers who see every query)"),
                _parameter("query", "backend", "only those routed to this backend"),
                _parameter("query", "group", "only those of this routing group"),
                _parameter("query", "transaction", "only those of this transaction"),
                _parameter("query", "state", "only those in this state; RUNNING for unfinished ones"),
                _parameter("query", "since", "submitted at or after (epoch milliseconds)", _EPOCH_MS),
                _parameter("query", "until", "submitted before (epoch milliseconds)", _EPOCH_MS),
                _parameter("query", "text", "only those whose SQL contains this, in any case (% and _ are literal)"),
                _parameter(
                    "query",
                    "id",
                    "only those whose query id, or the gateway id they waited under, starts with this",
                    example="20261201_",
                ),
                _parameter("query", "rule", "only those whose group this routing rule chose"),
                *_PAGINATION,
            ],
            "responses": {"200": _json("a page of queries", _ref("QueryPage")), "400": _error("a bad parameter")},
        }
    },
    "/gateway/queries/stats": {
        "get": {
            "tags": ["queries"],
            "summary": "Routed queries counted per time bucket, routing group and backend",
            "description": "Counts of everyone's queries, for every role: they hold no SQL and no user. "
            "Only queries submitted in [since, until) count; buckets start at multiples of step since the epoch.",
            "parameters": [
                _parameter("query", "since", "submitted at or after (epoch ms; default: until - 1 hour)", _EPOCH_MS),
                _parameter("query", "until", "submitted before (epoch ms; default: now)", _EPOCH_MS),
                _parameter("query", "step", "seconds per bucket (default 60)", _STEP),
            ],
            "responses": {
                "200": _json("the counts", _ref("QueryStats")),
                "400": _error("a bad parameter, since not before until, or more than 1000 buckets"),
            },
        }
    },
    "/gateway/queries/{query_id}": {
        "get": {
            "tags": ["queries"],
            "summary": "One routed query",
            "description": "A caller who may not see every query (USER) gets 404 for another user's query.",
            "parameters": [
                _parameter("path", "query_id", "the query's id", example="20261201_101500_00001_abcde"),
            ],
            "responses": {
                "200": _json("the query", _ref("Query")),
                "404": _error("no such query in the history, or not the caller's"),
            },
        }
    },
    "/gateway": {
        "get": {"tags": ["status"], "summary": "The gateway answers", "responses": {"200": _text("ok")}},
    },
    "/gateway/health": {
        "get": {
            "tags": ["status"],
            "summary": "Every backend's observed health, beside its admin state and drain; its capacity, and "
            "the queries of its group waiting in the gateway",
            "responses": {"200": _json("the backends", {"type": "array", "items": _ref("BackendHealth")})},
        }
    },
    "/gateway/livez": {
        "get": {"tags": ["status"], "summary": "Liveness", "responses": {"200": _text("ok")}},
    },
    "/gateway/readyz": {
        "get": {
            "tags": ["status"],
            "summary": "Readiness: the store can be read, and the node is not shutting down",
            "description": "Answered at once from what the worker knows of the store (any statement that "
            "returned lately, else the worker's own ping, sent in the background on a connection of its own), "
            "never after a round trip, so that a load balancer's check does not wait behind the work it guards.",
            "responses": {"200": _text("ok"), "503": _error("the store cannot be read, or the node is shutting down")},
        }
    },
    "/gateway/routing-rules": {
        "get": {
            "tags": ["routing rules"],
            "summary": "The routing rules in use, how often each fired, and why the last change did not load",
            "responses": {"200": _json("the rules", _ref("RoutingRules"))},
        },
        "put": {
            "tags": ["routing rules"],
            "summary": "Replace the rules file",
            "description": "The text is checked as at start-up; rules that do not load answer 400 with the line, and "
            "nothing is written. Otherwise the file is replaced whole, this worker uses the new rules at once and "
            "the others at their next check of the file; the change is audited with the text before and after.",
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {
                        "schema": _record({"text": {"type": "string", "description": "the rules file (YAML)"}}),
                        "example": {"text": _RULES_EXAMPLE},
                    }
                },
            },
            "responses": {
                "200": _json("the rules now in use", _ref("RoutingRules")),
                "400": _json("the rules do not load, or the body holds none", _ref("RulesError")),
                "409": _error("routing rules are off or come from a service: there is no rules file"),
                "413": _error(f"the body is over {RULES_BODY_MAX_BYTES} bytes"),
                "500": _error("the rules file cannot be written (the message says why)"),
            },
        },
    },
    "/gateway/routing-rules/test": {
        "post": {
            "tags": ["routing rules"],
            "summary": "What routing rules decide for a new query; nothing changes",
            "description": "Rules (`text`, default: those in use) run as for a new query with these headers, user "
            "(`X-Trino-User`, verified if the gateway verifies users) and SQL. Nothing is written or counted.",
            "requestBody": {
                "required": True,
                "content": {
                    JSON: {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "text": {"type": "string", "description": "rules to try (YAML); default: in use"},
                                "headers": {"type": "object", "additionalProperties": _STRING},
                                "user": _STRING,
                                "sql": _STRING,
                            },
                        },
                        "example": {"headers": {"X-Trino-Source": "airflow"}, "user": "alice", "sql": "SELECT 1"},
                    }
                },
            },
            "responses": {
                "200": _json("what the rules decide", _ref("RulesTest")),
                "400": _json("the rules do not load, or the body is not as described", _ref("RulesError")),
                "409": _error("routing rules are off or come from a service: there is no rules file"),
                "413": _error(f"the body is over {RULES_BODY_MAX_BYTES} bytes"),
            },
        }
    },
    "/metrics": {
        "get": {
            "tags": ["metrics"],
            "summary": "Prometheus metrics",
            "responses": {"200": _text("the Prometheus text exposition")},
        }
    },
    "/v1/jmx/mbean": {
        "get": {
            "tags": ["metrics"],
            "summary": "The gateway's figures as MBeans (Trino's JMX REST shape)",
            "responses": {"200": _json("every MBean", {"type": "array", "items": _ref("MBean")})},
        }
    },
    "/v1/jmx/mbean/{name}": {
        "get": {
            "tags": ["metrics"],
            "summary": "One MBean",
            "parameters": [
                _parameter(
                    "path", "name", "the MBean's object name (URL-encoded)", example="trino.gateway:name=ProxyHandler"
                )
            ],
            "responses": {"200": _json("the MBean", _ref("MBean")), "404": _error("no MBean of this name")},
        }
    },
    "/gateway/audit": {
        "get": {
            "tags": ["audit"],
            "summary": "The audit trail, newest first",
            "description": "Changes made through the admin API, and refused attempts.",
            "parameters": [
                _parameter("query", "actor", "only this actor's"),
                _parameter("query", "since", "at or after (epoch milliseconds)", _EPOCH_MS),
                *_PAGINATION,
            ],
            "responses": {"200": _json("a page of entries", _ref("AuditPage")), "400": _error("a bad parameter")},
        }
    },
    "/gateway/login": {
        "get": {
            "tags": ["login"],
            "summary": "The UI's login page",
            "parameters": [_NEXT],
            "responses": {"200": _html("the login form"), "302": _redirect("no auth is configured: to /")},
        },
        "post": {
            "tags": ["login"],
            "summary": "Log in with a user and password: sets the session cookie",
            "requestBody": {
                "required": True,
                "content": {
                    "application/x-www-form-urlencoded": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "username": _STRING,
                                "password": _STRING,
                                "csrf_token": {"type": "string", "description": "the login form's token"},
                                "next": {"type": "string", "description": "where to go after the login"},
                            },
                        }
                    }
                },
            },
            "responses": {
                "302": _redirect("logged in (or no auth is configured)"),
                "401": _html("unknown user or wrong password"),
                "403": _html("the form's CSRF token is missing or stale, or the user has no role for the UI"),
                "429": _html("too many failed logins of this user or from this address"),
            },
        },
    },
    "/gateway/login/oidc": {
        "get": {
            "tags": ["login"],
            "summary": "Start a single sign-on (OpenID Connect, authorization code with PKCE)",
            "parameters": [_NEXT],
            "responses": {
                "302": _redirect("to the identity provider"),
                "404": _error("single sign-on is not configured"),
                "503": _error("the identity provider cannot be reached"),
            },
        }
    },
    "/gateway/login/oidc/callback": {
        "get": {
            "tags": ["login"],
            "summary": "Where the identity provider sends the browser back",
            "parameters": [
                _parameter("query", "code", "the authorization code"),
                _parameter("query", "state", "the state the login started with"),
            ],
            "responses": {
                "302": _redirect("logged in: to the page the login started from"),
                "400": _html("no single sign-on started here, or it expired"),
                "401": _html("the identity provider's answer was not accepted"),
                "403": _html("the user has no role for the UI"),
            },
        }
    },
    "/gateway/logout": {
        "post": {
            "tags": ["login"],
            "summary": "End the session",
            "parameters": [_parameter("header", CSRF_HEADER, "the session's CSRF token")],
            "responses": {
                "302": _redirect("to the login page"),
                "403": _error("a session's logout without its CSRF token"),
            },
        }
    },
    "/gateway/session": {
        "get": {
            "tags": ["login"],
            "summary": "The UI's session: the user, its roles and its CSRF token",
            "responses": {"200": _json("the session", _ref("Session")), "401": _error("not logged in")},
        }
    },
    PATH: {
        "get": {
            "tags": ["openapi"],
            "summary": "This document",
            "responses": {"200": _json("OpenAPI 3.1", {"type": "object"})},
        }
    },
}
