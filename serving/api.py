"""The HTTP surface every family's gateway is mounted on: routes as data (`Route`, declared
in `ROUTES` by the class that implements them and `mount`ed), the FastAPI app with the error
handlers every family shares (`create_api`), and the OpenAPI it publishes (request bodies
that take JSON or multipart images, `images_body`; 400 documented, not 422; `Allow` on 405
and OPTIONS). The request-handling core is serving/deployments/gateway.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from promptserve._version import __version__
from promptserve.serving.errors import InvalidInput, ServeError
from promptserve.serving.inputs import form_fields, json_types
from promptserve.types import ErrorBody, ErrorDetail, RegisterPromptRequest

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": why}
    for code, why in {
        400: "Invalid input",
        401: "Missing API key",
        403: "Unknown API key",
        404: "Unknown prompt (or index)",
        409: "Built for another backbone (or prompt), or already exists",
        413: "Body too large",
        503: "Overloaded; see Retry-After",
    }.items()
}


@dataclass(frozen=True)
class Route:
    """One HTTP route: `endpoint` names the method of the class that declares it."""

    method: str
    path: str
    endpoint: str
    options: dict[str, Any] = field(default_factory=dict)


def images_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body for a route that takes JSON (`model`, base64 images) or multipart
    (`images` files and `model`'s other fields, with the JSON fields' types and bounds: both
    forms are read from the one model, see serving/inputs.py's `FormFields`)."""
    props = model.model_json_schema()["properties"]
    names = form_fields(model)
    files = {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "description": "Image files (JPEG, PNG, WebP, ...), one part each.",
    }
    fields: dict[str, Any] = {"images": files}
    for name in names.scalars:
        fields[name] = _form_scalar(props[name])
    for name in names.lists:
        fields[name] = _form_list(props[name], text=name in names.texts)
    multipart = {"type": "object", "properties": fields, "required": ["images"]}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}},
                "multipart/form-data": {"schema": multipart},
            },
        }
    }


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI request body of a route that reads `model` as JSON itself (to bound the body's
    size before parsing it): list `model` in `create_api(bodies=...)` too."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def _documented(prop: dict[str, Any]) -> dict[str, Any]:
    """A property's description and (non-null) default."""
    return {k: prop[k] for k in ("description", "default") if prop.get(k) is not None}


def _form_scalar(prop: dict[str, Any]) -> dict[str, Any]:
    """A JSON property as one form field: its type and bounds, without the null a form cannot
    send (an absent field is the null)."""
    types = [{k: v for k, v in t.items() if k != "title"} for t in json_types(prop)]
    return {**(types[0] if len(types) == 1 else {"anyOf": types}), **_documented(prop)}


def _form_list(prop: dict[str, Any], *, text: bool) -> dict[str, Any]:
    """A JSON list property as a repeated form field (one value each; nested lists, e.g.
    synonym groups, as one value holding the whole JSON list)."""
    array = next(t for t in json_types(prop) if t.get("type") == "array")
    items = array.get("items", {})
    how = "Repeat the field, one value each, or send one value holding a JSON list."
    if text:
        how += " One value that is not a JSON list is the text form (e.g. a preset name)."
    return {
        "type": "array",
        "items": items if items.get("type") == "string" else {"type": "string"},
        "description": f"{prop.get('description', '')} {how}".strip(),
    }


def _allowed_methods(api: FastAPI, request: Request) -> list[str]:
    """Every method the routes `mount`ed on `api` serve at the request's path (Starlette's 405
    names only the first route that matched the path: GET for /v1/prompts, which takes POST
    too)."""
    path, root = request.scope["path"], request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    methods: set[str] = set()
    for regex, allowed in api.state.route_methods.values():
        if regex.match(path):
            methods |= allowed
    return sorted(methods)


def create_api(*, description: str, bodies: Sequence[type[BaseModel]]) -> FastAPI:
    """The FastAPI app of a family's gateway, with the error handlers every family shares.
    `bodies` are the request models routes parse themselves (they read the raw body to enforce
    size limits first, and accept multipart too): the schema documents them all the same."""
    models: tuple[type[BaseModel], ...] = (*bodies, RegisterPromptRequest)

    class _API(FastAPI):
        def openapi(self) -> dict[str, Any]:
            schema = super().openapi()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                if model.__name__ not in components:
                    body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                    components.update(body.pop("$defs", {}))
                    components[model.__name__] = body
            # FastAPI documents a 422 for operations with parameters; this server answers
            # invalid input with a 400 and the error body (`_validation_error`), as ERRORS says.
            for operation in (
                op for ops in schema.get("paths", {}).values() for op in ops.values()
            ):
                operation.get("responses", {}).pop("422", None)
            if "HTTPValidationError" not in json.dumps(schema.get("paths", {})):
                components.pop("HTTPValidationError", None)
                components.pop("ValidationError", None)
            return schema

    api = _API(title="promptserve", version=__version__, description=description)
    # path template -> (its regex, the methods `mount`ed there): the `Allow` of 405s and OPTIONS
    api.state.route_methods = {}

    @api.exception_handler(ServeError)
    async def _serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """Unknown routes and methods get the same error body as everything else; OPTIONS on
        a route answers which methods it takes (`Allow`), and so does a 405."""
        headers = dict(exc.headers or {})
        message = f"{exc.detail}: see /docs for the API"
        if exc.status_code == 405:
            allowed = _allowed_methods(api, request) or sorted(
                m.strip() for m in headers.get("Allow", "").split(",") if m.strip()
            )
            if request.method == "OPTIONS":
                return Response(
                    status_code=204, headers={"Allow": ", ".join([*allowed, "OPTIONS"])}
                )
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed here: use {headers['Allow']} (see /docs)"
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_input")
        detail = ErrorDetail(type=kind, message=message)
        return JSONResponse(
            ErrorBody(error=detail).model_dump(), status_code=exc.status_code, headers=headers
        )

    @api.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return await _serve_error(request, InvalidInput.from_validation(exc, skip=1))

    return api


def mount(api: FastAPI, cls: type) -> None:
    """Add the routes `cls` and its bases declare (`ROUTES`) to `api`, bases first."""
    for base in reversed(cls.__mro__):
        for route in vars(base).get("ROUTES", ()):
            api.add_api_route(
                route.path,
                getattr(base, route.endpoint),
                methods=[route.method],
                **route.options,
            )
            _, methods = api.state.route_methods.setdefault(
                route.path, (compile_path(route.path)[0], set())
            )
            methods.add(route.method)
