"""What an input is, from its first bytes: never from its name or the content type it was sent with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

InputType = Literal["image", "video"]
HEAD_BYTES = 64  # enough for every signature below (WebM's DocType sits in the EBML header)


@dataclass(frozen=True, slots=True)
class MediaFormat:
    """An accepted format: its type, the extension it is stored under, and its MIME type."""

    type: InputType
    ext: str
    mime: str


PNG = MediaFormat("image", "png", "image/png")
JPEG = MediaFormat("image", "jpg", "image/jpeg")
WEBP = MediaFormat("image", "webp", "image/webp")
MP4 = MediaFormat("video", "mp4", "video/mp4")
MOV = MediaFormat("video", "mov", "video/quicktime")
WEBM = MediaFormat("video", "webm", "video/webm")

# QuickTime files made before the `ftyp` atom existed start straight with one of these atoms.
_LEGACY_QUICKTIME_ATOMS = (b"moov", b"mdat", b"wide", b"free", b"skip")
# Formats people send that are refused, named so the refusal can say what was received.
_REFUSED = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
)


def recognise(head: bytes) -> MediaFormat | None:
    """The accepted format whose signature `head` (the first bytes) carries, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[4:8] == b"ftyp":
        return MOV if head[8:12] == b"qt  " else MP4
    if head[4:8] in _LEGACY_QUICKTIME_ATOMS:
        return MOV
    # EBML: Matroska and WebM share it; only the DocType element (0x4282) says which.
    if head.startswith(b"\x1a\x45\xdf\xa3") and b"\x42\x82" in head and b"webm" in head:
        return WEBM
    return None


def describe(head: bytes) -> str:
    """A short name for what `head` looks like, for refusals ("GIF", "SVG", "text", "unknown data")."""
    for signature, name in _REFUSED:
        if head.startswith(signature):
            return name
    if head[4:8] == b"ftyp":
        return f"an ISO media file of brand {head[8:12].decode('latin-1').strip()!r}"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "Matroska"
    if head[:4] == b"RIFF":
        return f"RIFF {head[8:12].decode('latin-1').strip()!r}"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<svg", b"<?xml")) and b"svg" in head.lower():
        return "SVG"
    if text.startswith(b"<"):
        return "HTML or XML"
    return "text" if _is_text(head) else "unknown data"


def _is_text(head: bytes) -> bool:
    """UTF-8 without control characters (the cut at HEAD_BYTES may split the last character)."""
    for cut in range(4):
        try:
            text = head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return not any(char < "\t" or "\x0e" <= char < " " for char in text)
    return False
