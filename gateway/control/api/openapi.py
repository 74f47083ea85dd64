"""``GET /gateway/openapi.json``: the admin API as an OpenAPI 3.1 document, generated when the app is made.
The operations are the app's routes. Each handler's ``@answers`` names its answers by status, its
parameters and its body as models of ``gateway.control.api.models`` (or types pydantic can show, such as
``list[Model]``), whose JSON schemas pydantic writes; its docstring gives the summary (first paragraph)
and description; its access declaration (``access.py``) and the configuration's ``auth`` its security
and the 401, 403 and 429 answered before it runs. Nothing here describes a field."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema
from quart import Quart, Response
from werkzeug.routing import Rule

from gateway.auth.principal import Principal, Role
from gateway.control.api.access import CHANGE, CSRF_HEADER, PUBLIC, READ, SAFE_METHODS, access_of, public
from gateway.control.api.models import Challenge, Redirect, RetryAfter
from gateway.errors import Error

if TYPE_CHECKING:
    from gateway.config import AuthConfig
    from gateway.control.services import Services

PATH = "/gateway/openapi.json"
SESSION_COOKIE = "trino_gateway_session"
JSON, TEXT, HTML, FORM = "application/json", "text/plain", "text/html", "application/x-www-form-urlencoded"
Schema = dict[str, Any]
F = TypeVar("F", bound=Callable[..., Any])
_DECLARED = "trino_gateway_answers"
_TAGS = {"backend": "backends", "routing_rules": "routing rules"}  # else the blueprint's name


@dataclass(frozen=True)
class Answer:
    """One answer of an operation: what it means, and the model of its body in ``media`` (None: no body)."""

    description: str
    model: Any = None
    media: str = JSON
    headers: type[BaseModel] | None = None


plain, page = partial(Answer, model=str, media=TEXT), partial(Answer, model=str, media=HTML)
redirected = partial(Answer, headers=Redirect)


@dataclass(frozen=True)
class Declaration:
    """What a handler answers, by status (a text: an ``Error`` so described), and takes: its path, query
    and header parameters and its body (by media type), each a model. ``@answers(...)`` declares it."""

    responses: Mapping[int, Answer | str]
    path: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    header: type[BaseModel] | None = None
    body: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, view: F) -> F:
        setattr(view, _DECLARED, self)
        return view

    def answered(self) -> dict[int, Answer]:
        return {status: Answer(a, Error) if isinstance(a, str) else a for status, a in self.responses.items()}


answers = Declaration


class Undocumented(Exception):
    """A route of the admin API declares no answers, or not its path's parameters."""


def openapi_path(rule: str) -> str:
    """A Quart rule as an OpenAPI path: ``<name>`` and ``<path:name>`` become ``{name}``."""
    return re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule)


def install(app: Quart, services: Services) -> None:
    """Serve the document; call it once every other route of ``app`` is registered."""

    @public
    @answers({200: Answer("OpenAPI 3.1", dict[str, Any])})
    async def openapi_document() -> Response:
        """This document"""
        return Response(body, content_type=JSON)

    app.add_url_rule(PATH, "openapi", openapi_document, methods=["GET"])
    # Built after the route exists, so that the document finds its own route too.
    body = orjson.dumps(build(app, services.config.auth))


def _refusals(forbidden: str) -> dict[int, Answer]:
    """What ``access.install`` answers before a handler runs that is not public."""
    return {
        401: Answer("no credentials, or credentials that were not accepted", Error, headers=Challenge),
        403: Answer(f"{forbidden}; or a session's POST without its CSRF token", Error),
        429: Answer("too many failed logins of this user or from this address", Error, headers=RetryAfter),
    }


_REFUSALS = {
    READ: _refusals("the caller has no role"),
    CHANGE: _refusals("the caller's role may not change anything (USER, or no role)"),
}
try:
    _VERSION = version("trino-ha-gateway")
except PackageNotFoundError:  # a source tree never installed
    _VERSION = "0.0.0"
_CSRF_NOTE = f" With the session cookie, the request must carry the session's CSRF token ({CSRF_HEADER})."


def build(app: Quart, auth: AuthConfig | None) -> dict[str, Any]:
    """The document of every route of ``app``, each of which must declare its answers."""
    operations = list(_operations(app))
    schemas, components = _schemas(
        [*(a for *_, d in operations for a in d.answered().values()), *_REFUSALS[CHANGE].values()],
        [model for *_, d in operations for model in d.body.values()],
    )
    schemes = _security_schemes(auth)
    paths: dict[str, dict[str, Any]] = {}
    for method, rule, view, declared in operations:
        # The docstring's paragraphs, each as one line: the first is the summary.
        summary, *rest = [" ".join(part.split()) for part in (inspect.getdoc(view) or "").split("\n\n")]
        description = "\n\n".join(part for part in rest if part)
        blueprint = rule.endpoint.rpartition(".")[0] or rule.endpoint
        operation: dict[str, Any] = {"operationId": rule.endpoint, "tags": [_TAGS.get(blueprint, blueprint)]}
        operation["summary"] = summary.removesuffix(".")
        parameters = [p for where in ("path", "query", "header") for p in _parameters(where, getattr(declared, where))]
        if parameters:
            operation["parameters"] = parameters
        if declared.body:
            content = {media: {"schema": schemas[id(model), "validation"]} for media, model in declared.body.items()}
            operation["requestBody"] = {"required": True, "content": content}
        responses = declared.answered()
        access = access_of(view)
        if auth is not None and access != PUBLIC and rule.rule not in auth.public_paths:
            may = [role.value for role in Role if access != CHANGE or Principal("", roles=frozenset({role})).may_change]
            operation["security"] = [{scheme: may} for scheme in schemes]
            csrf = _CSRF_NOTE if method not in SAFE_METHODS else ""
            description = f"{description}\n\nRoles: {', '.join(may)}.{csrf}".strip()
            responses.update(_REFUSALS[access])
        if description:
            operation["description"] = description
        operation["responses"] = {str(status): _response(responses[status], schemas) for status in sorted(responses)}
        paths.setdefault(openapi_path(rule.rule), {})[method.lower()] = operation
    open_to_all = "" if auth is not None else " No auth is configured: every operation is open to every caller."
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "trino-gateway admin API",
            "version": _VERSION,
            "description": "The gateway's own API: backends (trinodb/trino-gateway's /gateway/backend/...), query "
            "history, health, routing rules, metrics, the audit trail and the UI's login. Errors are JSON "
            f'`{{"error": "..."}}` except on the login pages (HTML).{open_to_all}',
        },
        "paths": paths,
        "components": {"schemas": components, **({"securitySchemes": schemes} if schemes else {})},
    }


def _operations(app: Quart) -> Iterator[tuple[str, Rule, Callable[..., Any], Declaration]]:
    """Every route's methods (not the HEAD and OPTIONS Quart adds), each with its handler's declaration."""
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        declared: Declaration | None = getattr(view, _DECLARED, None)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            where = f"{method} {rule.rule} ({rule.endpoint})"
            if declared is None:
                raise Undocumented(f"{where} declares no answers: give its handler @answers(...)")
            missing = set(rule.arguments) - set(declared.path.model_fields if declared.path else ())
            if missing:
                raise Undocumented(f"{where} declares no path model with {', '.join(sorted(missing))}")
            yield method, rule, view, declared


class _Untitled(GenerateJsonSchema):
    """pydantic's JSON schema without a title per field (the field's name, capitalised, says nothing)."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def _schemas(
    answered: Iterable[Answer], sent: Iterable[Any]
) -> tuple[dict[tuple[int, str], Schema], dict[str, Schema]]:
    """The schema of every model answered or sent (by its id, and how it is used), and the models they
    refer to by name: one generator for all, so that each model is one schema wherever it is used."""
    wanted: dict[tuple[int, str], Any] = {(id(model), "validation"): model for model in sent}
    wanted |= {(id(answer.model), "serialization"): answer.model for answer in answered if answer.model is not None}
    found, defs = TypeAdapter.json_schemas(
        [(key, key[1], TypeAdapter(model)) for key, model in wanted.items()],
        ref_template="#/components/schemas/{model}",
        schema_generator=_Untitled,
    )
    return {key: schema for (key, _), schema in found.items()}, defs.get("$defs", {})


def _response(answer: Answer, schemas: Mapping[tuple[int, str], Schema]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": answer.description}
    if answer.model is not None:
        out["content"] = {answer.media: {"schema": schemas[id(answer.model), "serialization"]}}
    if answer.headers is not None:
        out["headers"] = {}
        for header in _parameters("header", answer.headers):
            del header["in"]
            out["headers"][header.pop("name")] = header
    return out


def _parameters(where: str, model: type[BaseModel] | None) -> list[Schema]:
    """A model's fields as parameters: each field's schema, description and first example. One that may
    be left out is shown as the type it has when given (a URL holds no null)."""
    schema = model.model_json_schema(schema_generator=_Untitled) if model is not None else {"properties": {}}
    out = []
    for name, prop in schema["properties"].items():
        description, examples = prop.pop("description", None), prop.pop("examples", None)
        if prop.get("default", ...) is None:
            del prop["default"]
        given = [branch for branch in prop.pop("anyOf", []) if branch != {"type": "null"}]
        if given:
            prop = {**given[0], **prop} if len(given) == 1 else {"anyOf": given, **prop}
        parameter = {"in": where, "name": name, "required": where == "path" or name in schema.get("required", ())}
        parameter |= {"description": description} if description else {}
        parameter |= {"example": examples[0]} if examples else {}
        out.append({**parameter, "schema": prop})
    return out


def _security_schemes(auth: AuthConfig | None) -> dict[str, Schema]:
    if auth is None:
        return {}
    schemes: dict[str, Schema] = {}
    if auth.password_file is not None or auth.ldap is not None:
        schemes["basic"] = {"type": "http", "scheme": "basic", "description": "the password file, then LDAP"}
    if auth.oidc is not None:
        schemes["bearer"] = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        schemes["bearer"]["description"] = "an ID token of the configured OpenID Connect issuer"
    session = f"the UI's signed session cookie (POST /gateway/login); a POST also sends {CSRF_HEADER}"
    schemes["session"] = {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE, "description": session}
    return schemes
