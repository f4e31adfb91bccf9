"""Servers the fault tests kill and bring back: a Redis of their own, and a TCP proxy in front of moto.

Redis is the real `redis-server` on a free port, keeping nothing on disk (`--save "" --appendonly
no`): killed with SIGKILL and started again on the same port, it comes back empty, as a production
Redis without persistence does.

S3 is moto's server behind `FaultProxy`, the endpoint the deployment is given. Stopping moto itself
would not do: its threads keep serving the keep-alive connections clients already hold. The proxy's
`stop()` closes its port and every open connection, which is what a client sees when the server dies;
`start()` listens on the same port again, with moto's objects intact (a restarted S3 keeps its data).
`cut(pattern)` drops just the requests whose HTTP request line matches, e.g. the upload of an MP4.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import redis


class RedisServer:
    """`redis-server` on `port`, its log in `log`."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.url = f"redis://127.0.0.1:{port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    client.close()
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server on {self.port} did not start: {self.log.read_text()[-2000:]}")

    def start_if_down(self) -> None:
        if self._process is None or self._process.poll() is not None:
            self.start()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save; every connection drops at once."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._process = None


class FaultProxy:
    """A TCP proxy on `port` to `upstream_port` on 127.0.0.1 that tests can stop, start and make cut."""

    def __init__(self, port: int, upstream_port: int) -> None:
        self.port = port
        self.upstream_port = upstream_port
        self.cut_count = 0
        self._cut: re.Pattern[bytes] | None = None
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Close the port and every connection through it."""
        if self._listener is not None:
            _close(self._listener)  # shutdown() first: a bare close() leaves a blocked accept() accepting
            self._listener = None
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            _close(sock)

    def cut(self, pattern: bytes | None) -> None:
        """Drop (close both sides of) each request whose bytes match `pattern`; None: pass everything."""
        self._cut = re.compile(pattern) if pattern is not None else None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_client and self._cut is not None and self._cut.search(data):
                    self.cut_count += 1
                    break
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            _close(sock)
            with self._lock:
                self._open.discard(sock)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
