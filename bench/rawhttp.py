"""A minimal HTTP/1.1 keep-alive client for load generation: pre-built request bytes, a pool of
connections, status and body back. About a tenth of httpx's CPU per request, so on a small machine
the load generator takes less of the CPU the server under test needs (the benchmark reports both).

It speaks only what the benchmark needs: requests with a Content-Length body (or none) and responses
with a Content-Length (what uvicorn sends for JSON); anything else is an error.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any


class HttpError(Exception):
    """The connection failed or the response was not one this client reads."""

    def __init__(self, message: str, *, closed_before_reply: bool = False) -> None:
        super().__init__(message)
        # The server closed the connection without a byte of reply: the request was not processed.
        self.closed_before_reply = closed_before_reply


def build_request(
    method: str, path: str, host: str, *, headers: dict[str, str], body: dict[str, Any] | None
) -> bytes:
    """The bytes of one HTTP/1.1 request, JSON body included."""
    payload = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].split(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length = None
        for line in header_lines:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
                break
        if length is None:
            raise HttpError(f"response {status} without Content-Length")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


class ConnectionPool:
    """Up to `size` keep-alive connections to one host; a request waits for a free one."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(size)

    async def request(self, request: bytes, timeout: float = 30) -> tuple[int, bytes]:
        """Send pre-built request bytes; (status, body). A failed connection is dropped, not reused; a
        kept-alive one the server closed while idle is replaced once, as HTTP clients do."""
        async with self._slots:
            reused = self._idle.pop() if self._idle else None
            if reused is not None:
                try:
                    return await self._exchange(reused, request, timeout)
                except HttpError as exc:
                    if not exc.closed_before_reply:
                        raise
                    # Closed by the server's keep-alive timeout: the same request on a fresh connection.
            return await self._exchange(None, request, timeout)

    async def _exchange(
        self, connection: _Connection | None, request: bytes, timeout: float
    ) -> tuple[int, bytes]:
        try:
            if connection is None:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                connection = _Connection(reader, writer)
            result = await asyncio.wait_for(connection.exchange(request), timeout)
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ValueError,
            IndexError,
        ) as exc:
            if connection is not None:
                connection.close()
            closed = isinstance(exc, ConnectionResetError | BrokenPipeError) or (
                isinstance(exc, asyncio.IncompleteReadError) and not exc.partial
            )
            raise HttpError(f"{type(exc).__name__}: {exc}", closed_before_reply=closed) from exc
        self._idle.append(connection)
        return result

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
