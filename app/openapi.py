"""The OpenAPI document as the API behaves: bearer auth, the error responses it sends, the bodies it reads.

FastAPI documents a 422 the API never sends (validation errors are 400s in the one error shape) and
knows nothing of errors raised by dependencies. `document_api` fixes that once, when the schema is
first built; `request_body_doc` documents a body a handler reads itself (JSON or a form with a file).
`allowed_methods` answers a 405's `Allow` with every method the path takes, not one route's.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

# Probes: no key, no errors but their own.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
SECURITY_SCHEME = "bearerAuth"
_ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error response: one object naming what went wrong.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
                "categories": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["message", "type", "param", "code"],
        }
    },
    "required": ["error"],
}
_ERRORS = {
    "400": "The request is invalid: a parameter or body field, named in `param`.",
    "401": "No API key, or not a valid one.",
    "403": "The key lacks the scope this endpoint needs.",
    "404": "No such resource for this key (another key's ids are 404 too).",
    "408": "The request body did not arrive in time.",
    "409": "The resource is not in a state that allows this (e.g. the video is not ready yet).",
    "413": "The body, or an input in it, is over its limit.",
    "415": "An uploaded or fetched input is not a supported format.",
    "429": "A rate, concurrency or quota limit; `Retry-After` says when to try again.",
    "431": "The request's headers are too large.",
    "503": "A dependency (database, broker, storage, moderation) is unavailable, or the API is at its "
    "limit of requests in progress; retry shortly.",
}
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _error_codes(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    """The error statuses this operation can answer with."""
    codes = ["401", "403", "429", "431", "503"]
    has_body = "requestBody" in operation
    if operation.get("parameters") or has_body:
        codes.append("400")
    if "{" in path or has_body:
        codes.append("404")  # a path id, or an id in the body (a video to edit or extend)
    if method != "get" or "{" in path:
        codes.append("409")
    if has_body:
        codes += ["408", "413"]
        if "multipart/form-data" in operation["requestBody"].get("content", {}):
            codes.append("415")
    return sorted(codes)


def document_api(schema: dict[str, Any]) -> dict[str, Any]:
    """Add bearer auth and the error responses to every operation of a FastAPI-built schema; drop 422."""
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    components["schemas"].pop("HTTPValidationError", None)
    components["schemas"].pop("ValidationError", None)
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer kn_...`.",
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in _METHODS:
                continue
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            if path in PUBLIC_PATHS:
                if path == "/readyz":
                    responses["503"] = {"description": "Not ready: a check failed (named in the body)."}
                continue
            operation["security"] = [{SECURITY_SCHEME: []}]
            for code in _error_codes(path, method, operation):
                responses.setdefault(
                    code,
                    {"description": _ERRORS[code], "content": {"application/json": {"schema": _ERROR_REF}}},
                )
    return schema


def install(app: FastAPI) -> None:
    """Make `app.openapi()` return the documented schema (built once, like FastAPI's own)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_api(build())
        assert app.openapi_schema is not None
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema with its nested models inlined (so it can sit anywhere in the document)."""
    schema = model.model_json_schema()
    return dict(_inline(schema, schema.get("$defs", {})))


def request_body_doc(model: type[BaseModel], *, file_part: str | None = None) -> dict[str, Any]:
    """`openapi_extra` for a handler that reads `model` itself: as JSON, or as a form whose text fields
    are the same (nested objects as `name[field]`) plus an optional `file_part` upload."""
    schema = inline_schema(model)
    form_fields = {
        name: {"type": "string"}
        for name, prop in schema["properties"].items()
        if "properties" not in prop and not any("properties" in alt for alt in prop.get("anyOf", []))
    }
    if file_part is not None:
        form_fields[file_part] = {"type": "string", "format": "binary"}
    form = {"type": "object", "properties": form_fields, "required": schema.get("required", [])}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}, "multipart/form-data": {"schema": form}},
        }
    }


def allowed_methods(app: FastAPI, path: str) -> str | None:
    """The methods the API documents for `path` (a 405's `Allow`); None for undocumented paths.

    Where templates overlap (`/v1/videos/edits`, `/v1/videos/{video_id}`) the most literal one wins.
    """
    table: list[tuple[re.Pattern[str], str]] | None = getattr(app.state, "allow_table", None)
    if table is None:
        table = []
        templates = app.openapi().get("paths", {})
        for template in sorted(templates, key=lambda t: t.count("{")):
            literal_parts = re.split(r"\{[^}/]+\}", template)
            pattern = re.compile("^" + "[^/]+".join(re.escape(part) for part in literal_parts) + "$")
            methods = ", ".join(sorted(m.upper() for m in templates[template] if m in _METHODS))
            table.append((pattern, methods))
        app.state.allow_table = table
    for pattern, methods in table:
        if pattern.match(path):
            return methods
    return None
