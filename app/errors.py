"""The API's errors: one small hierarchy, one JSON shape `{"error": {message, type, param, code}}`."""

from __future__ import annotations

import math
from typing import Any


class APIError(Exception):
    """An error the API reports to its caller; subclasses fix the status and type."""

    status_code = 500
    type = "server_error"
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body every error response carries."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(APIError):
    status_code = 400
    type = "invalid_request_error"
    code = "invalid_value"


class ModerationBlocked(InvalidRequest):
    """400: the content policy refuses the prompt; the body adds the `categories` it fell in."""

    code = "moderation_blocked"

    def __init__(self, message: str, *, param: str, categories: list[str]) -> None:
        super().__init__(message, param=param)
        self.categories = categories

    def body(self) -> dict[str, Any]:
        """The usual error body plus `categories`."""
        body = super().body()
        body["error"]["categories"] = self.categories
        return body


class InputTooLarge(APIError):
    """413: an uploaded or fetched input is over a byte, pixel, duration or resolution limit."""

    status_code = 413
    type = "invalid_request_error"
    code = "input_too_large"


class UnsupportedMediaType(APIError):
    """415: an input whose content is not one of the accepted formats (whatever its name says)."""

    status_code = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class AuthenticationFailed(APIError):
    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code, headers={"WWW-Authenticate": "Bearer"})


class PermissionDenied(APIError):
    status_code = 403
    type = "permission_error"
    code = "missing_scope"


class NotFound(APIError):
    status_code = 404
    type = "not_found_error"
    code = "not_found"


class Conflict(APIError):
    status_code = 409
    type = "invalid_request_error"
    code = "conflict"


class RateLimited(APIError):
    """429: a request-rate, concurrency or quota limit; `Retry-After` says when trying again can work."""

    status_code = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        code: str,
        retry_after_s: float,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        retry_after_s = max(retry_after_s, 0.001)
        super().__init__(
            message,
            param=param,
            code=code,
            headers={
                **(headers or {}),
                "Retry-After": str(max(1, math.ceil(retry_after_s))),
                # The openai SDK prefers the millisecond form when present.
                "retry-after-ms": str(math.ceil(retry_after_s * 1000)),
            },
        )


class ServiceUnavailable(APIError):
    status_code = 503
    type = "server_error"
    code = "service_unavailable"


class RequestTimeout(APIError):
    """408: the request body did not arrive in time (a stalled or deliberately slow upload)."""

    status_code = 408
    type = "invalid_request_error"
    code = "request_timeout"


class HeadersTooLarge(APIError):
    """431: the request's header lines are over KINEMA_MAX_HEADER_BYTES together."""

    status_code = 431
    type = "invalid_request_error"
    code = "headers_too_large"
