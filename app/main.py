"""The FastAPI application: routers, middleware, and the one JSON error shape."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import __version__
from app.api_keys.router import router as admin_keys_router
from app.errors import APIError, InvalidRequest, ServiceUnavailable
from app.health import router as health_router
from app.jobs.router import router as jobs_router
from app.limits.middleware import RateLimitHeadersMiddleware
from app.limits.router import router as usage_router
from app.openai_compat.router import router as openai_router
from app.provenance.router import router as provenance_router
from app.storage import StorageError
from app.webhooks.router import router as webhooks_router

log = logging.getLogger(__name__)

_TYPE_CODES = {
    "missing": "missing_field",
    "json_invalid": "invalid_json",
    "extra_forbidden": "unknown_field",
    "model_attributes_type": "invalid_json",
}


def _validation_error(exc: RequestValidationError) -> InvalidRequest:
    """The first validation problem, as a 400 naming the field."""
    first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
    kind = str(first.get("type", ""))
    code = _TYPE_CODES.get(kind) or (
        "invalid_type" if kind.endswith(("_type", "_parsing")) else "invalid_value"
    )
    param = ".".join(loc) or None
    if kind == "json_invalid":
        message = "The request body is not valid JSON."
        param = None
    elif kind == "model_attributes_type":
        message = "The request body must be a JSON object."
    elif kind == "extra_forbidden":
        message = f"Unknown field {param!r}."
    else:
        message = (
            f"{param}: {first.get('msg', 'invalid value')}" if param else str(first.get("msg", "invalid"))
        )
    return InvalidRequest(message, param=param, code=code)


def _error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


def create_app() -> FastAPI:
    """Build the gateway application."""
    app = FastAPI(
        title="Kinema",
        version=__version__,
        description="Self-hosted video generation: submit a prompt, poll the job, download the MP4.",
    )

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = APIError(str(exc.detail), code="not_found" if exc.status_code == 404 else "http_error")
        error.status_code = exc.status_code
        error.type = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return JSONResponse(error.body(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(StorageError)
    async def _storage(_: Request, exc: StorageError) -> JSONResponse:
        log.error("storage error: %s", exc)
        return _error_response(
            ServiceUnavailable("Storage is unavailable; retry shortly.", code="storage_unavailable")
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return _error_response(APIError("The server had an error while processing your request."))

    app.include_router(health_router)
    app.include_router(jobs_router)
    app.include_router(webhooks_router)
    app.include_router(usage_router)
    app.include_router(admin_keys_router)
    app.include_router(openai_router)
    app.include_router(provenance_router)
    # Rate-limit headers on every authenticated response, error responses included.
    app.add_middleware(RateLimitHeadersMiddleware)
    return app
