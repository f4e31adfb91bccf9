"""The FastAPI application: routers, middleware, and the one JSON error shape."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app import __version__, openapi
from app.api_keys.router import router as admin_keys_router
from app.config import get_settings
from app.edge import EdgeMiddleware, bind_path_ids
from app.errors import APIError, InvalidRequest, ServiceUnavailable
from app.health import router as health_router
from app.jobs.router import router as jobs_router
from app.limits.inflight import InFlightLimitMiddleware
from app.limits.middleware import RateLimitHeadersMiddleware
from app.limits.requests import RequestLimitsMiddleware, RequestRefused, refused_response
from app.limits.router import router as usage_router
from app.logs import configure_logging
from app.metrics.router import router as metrics_router
from app.openai_compat.router import router as openai_router
from app.playground.router import router as playground_router
from app.provenance.router import router as provenance_router
from app.storage import StorageError
from app.webhooks.router import router as webhooks_router

log = logging.getLogger(__name__)

# What a browser script on an allowed origin may read from a response.
CORS_EXPOSED_HEADERS = [
    "Location",
    "X-Request-ID",
    "Retry-After",
    "retry-after-ms",
    "openai-poll-after-ms",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
]

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
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    app = FastAPI(
        title="Kinema",
        version=__version__,
        description="Self-hosted video generation: submit a prompt, poll the job, download the MP4.",
        # The job (or other) id in the path joins every log line of the request.
        dependencies=[Depends(bind_path_ids)],
    )

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        error = APIError(str(exc.detail), code="not_found" if exc.status_code == 404 else "http_error")
        error.status_code = exc.status_code
        error.type = "invalid_request_error" if exc.status_code < 500 else "server_error"
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Every method the path takes, not only those of the one route the router tried.
            headers["Allow"] = openapi.allowed_methods(app, request.url.path) or headers.get("Allow", "")
        return JSONResponse(error.body(), status_code=exc.status_code, headers=headers)

    app.add_exception_handler(RequestRefused, refused_response)

    @app.exception_handler(DataError)
    async def _unstorable(_: Request, exc: DataError) -> JSONResponse:
        # SQLSTATE class 22 (a NUL character in text, a number out of range): the request's values.
        log.warning("refused a value the database cannot store: %s", str(exc.orig).splitlines()[0])
        return _error_response(
            InvalidRequest(
                "A value in the request cannot be stored (a NUL character, or a number out of range).",
                code="invalid_value",
            )
        )

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
    app.include_router(playground_router)
    if settings.metrics_enabled:
        app.include_router(metrics_router)
    openapi.install(app)
    # Rate-limit headers on every authenticated response, error responses included.
    app.add_middleware(RateLimitHeadersMiddleware)
    # Header and body size, and body time: before anything reads the body.
    app.add_middleware(RequestLimitsMiddleware, settings=settings)
    # Added after the limits, so it runs before them: a refused request costs nothing else.
    app.add_middleware(InFlightLimitMiddleware, limit=settings.max_in_flight_requests)
    if settings.cors_origins:
        # Off unless configured: the playground is same-origin and needs none.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=CORS_EXPOSED_HEADERS,
            max_age=600,
        )
    # Outermost: request id, security headers, metrics and the access log on every response.
    app.add_middleware(EdgeMiddleware, settings=settings)
    return app
