"""A small HTTP server on 127.0.0.1 for URL inputs: files, huge and slow answers, redirects, errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Served:
    """The server's base URL, the files it serves under /files/<name>, and the paths it was asked for."""

    base_url: str
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


def _handler(served: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            served.requests.append(self.path)
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            try:
                if parts.path.startswith("/files/"):
                    self._send(served.files[parts.path.removeprefix("/files/")])
                elif parts.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", query["to"][0])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif parts.path == "/endless":  # chunked, no length: as much as the client takes
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    block = b"\x89PNG\r\n\x1a\n" + b"\x00" * (64 * 1024 - 8)
                    for _ in range(2000):
                        self.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
                elif parts.path == "/huge":  # declares a huge length up front
                    self.send_response(200)
                    self.send_header("Content-Length", str(10**10))
                    self.end_headers()
                    self.wfile.write(b"\x89PNG\r\n\x1a\n")
                elif parts.path == "/slow":  # a byte every 0.2 s
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    for _ in range(1000):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.2)
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client hung up: what the limits are for

        def _send(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")  # never trusted anyway
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def serving(files: dict[str, bytes] | None = None) -> Iterator[Served]:
    """The server on a free port of 127.0.0.1 while the block runs."""
    served = Served(base_url="", files=dict(files or {}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(served))
    server.daemon_threads = True
    served.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="input-server", daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
