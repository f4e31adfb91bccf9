"""Reading request bodies: JSON objects, and forms that may carry input files (within the input limits)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.types import Message

from app.config import Settings
from app.errors import InputTooLarge, InvalidRequest

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_FIELDS_ALLOWANCE = 1024 * 1024  # text fields and multipart framing, on top of the largest input
_MAX_FILES = 4
_MAX_FIELDS = 64


@dataclass(frozen=True, slots=True)
class Form:
    """A parsed form: text fields and uploaded files by name (each name at most once)."""

    fields: dict[str, str]
    files: dict[str, UploadFile]


def is_form(request: Request) -> bool:
    """Whether the body is a form (multipart or urlencoded) rather than JSON."""
    return request.headers.get("content-type", "").lower().startswith(FORM_TYPES)


def max_body_bytes(settings: Settings) -> int:
    """The largest form body accepted: the largest input plus room for the text fields."""
    return max(settings.input_image_max_bytes, settings.input_video_max_bytes) + _FIELDS_ALLOWANCE


@asynccontextmanager
async def read_form(
    request: Request, settings: Settings, *, file_fields: frozenset[str]
) -> AsyncIterator[Form]:
    """The request's form, its files spooled to disk; refused (413) as soon as the body passes the limit.

    A file under a name not in `file_fields`, a text value under one that is, or a name given twice is a
    400 naming it. The files are closed on exit.
    """
    limit = max_body_bytes(settings)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InputTooLarge(f"The request body is larger than {limit} bytes.")
    received = 0

    async def counted() -> Message:
        # Chunked bodies declare no length: count what arrives and stop at the limit.
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise InputTooLarge(f"The request body is larger than {limit} bytes.")
        return message

    form = await Request(request.scope, counted).form(max_files=_MAX_FILES, max_fields=_MAX_FIELDS)
    try:
        fields: dict[str, str] = {}
        files: dict[str, UploadFile] = {}
        for name, value in form.multi_items():
            if name in fields or name in files:
                raise InvalidRequest(f"{name} is given more than once.", param=name)
            if isinstance(value, str):
                if name in file_fields:
                    raise InvalidRequest(f"{name} must be a file upload.", param=name)
                fields[name] = value
            elif name in file_fields:
                files[name] = value
            else:
                raise InvalidRequest(f"{name} must be a text field, not a file.", param=name)
        yield Form(fields=fields, files=files)
    finally:
        await form.close()


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_json(model: type[ModelT], raw: bytes) -> ModelT:
    """`raw` as a JSON object validated by `model`; a 400 in the app's error shape otherwise."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors()
        kind, loc = (errors[0]["type"], errors[0]["loc"]) if errors else ("", ())
        if kind == "json_invalid":
            raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from exc
        if kind == "model_type" and not loc:
            raise InvalidRequest("The request body must be a JSON object.", code="invalid_json") from exc
        raise RequestValidationError(exc.errors()) from exc  # the app's handler: a 400 naming the field


def parse_fields(model: type[ModelT], fields: Mapping[str, object]) -> ModelT:
    """Form fields (text) validated by `model`, numbers and booleans read from their text."""
    try:
        return model.model_validate(fields, strict=False)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


def digest(file: BinaryIO) -> str:
    """SHA-256 of an uploaded file (for Idempotency-Key fingerprints); leaves it at the start."""
    file.seek(0)
    sha = hashlib.sha256()
    while chunk := file.read(1024 * 1024):
        sha.update(chunk)
    file.seek(0)
    return sha.hexdigest()
