"""`POST /v1/provenance/verify`: upload an MP4, get its C2PA manifest and invisible watermark."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter, UploadFile
from fastapi.concurrency import run_in_threadpool

from app.deps import SessionDep, SettingsDep
from app.errors import APIError, InvalidRequest
from app.provenance import service
from app.provenance.schemas import VerifyOut
from app.security import ReadKey

router = APIRouter(prefix="/v1/provenance", tags=["provenance"])

_CHUNK = 1024 * 1024


class FileTooLarge(APIError):
    status_code = 413
    type = "invalid_request_error"
    code = "file_too_large"


@router.post("/verify", response_model=VerifyOut, summary="Verify a video's C2PA manifest and watermark")
async def verify(file: UploadFile, _: ReadKey, session: SessionDep, settings: SettingsDep) -> VerifyOut:
    """Check the uploaded MP4 (multipart field `file`): its manifest and the job its watermark names."""
    with tempfile.TemporaryDirectory(prefix="kinema-verify-") as tmp:
        path = Path(tmp) / "upload.mp4"
        size = 0
        with path.open("wb") as out:
            while chunk := await file.read(_CHUNK):
                size += len(chunk)
                if size > settings.verify_max_bytes:
                    raise FileTooLarge(
                        f"The file is larger than {settings.verify_max_bytes} bytes.", param="file"
                    )
                out.write(chunk)
        if size == 0:
            raise InvalidRequest("The file is empty.", param="file", code="invalid_file")
        try:
            # Decoding and hashing take CPU time: keep them off the event loop.
            return await run_in_threadpool(service.verify_file, session, settings, path)
        except ValueError as exc:
            raise InvalidRequest(
                f"The file is not a readable MP4: {exc}", param="file", code="invalid_file"
            ) from exc
