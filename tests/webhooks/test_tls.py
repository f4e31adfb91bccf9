"""HTTPS targets: the attempt connects to the checked address, yet TLS verifies the URL's host name."""

from __future__ import annotations

import datetime
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from app.webhooks import delivery
from app.webhooks.targets import check_target


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for `name` (also its own CA), as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def https_receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, list[str]]]:
    """An HTTPS server on 127.0.0.1 with a certificate for `localhost`, which the deliverer trusts."""
    cert, key = _certificate(tmp_path, "localhost")
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["content-length"]))
            hosts.append(self.headers["host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    # The test's CA instead of the public ones: the one boundary faked here.
    monkeypatch.setattr(delivery, "_tls_context", lambda: ssl.create_default_context(cafile=str(cert)))
    yield server.server_address[1], hosts
    server.shutdown()
    server.server_close()


def test_https_delivery_verifies_the_host_name_not_the_address(https_receiver: tuple[int, list[str]]) -> None:
    port, hosts = https_receiver
    target = check_target(f"https://localhost:{port}/hook", allow_private=True)
    assert target.addresses[0] == "127.0.0.1"  # the connection goes to the checked address...
    result = delivery.post(target, "{}", {}, timeout_s=5)
    assert (result.status_code, result.error) == (204, None)
    assert hosts == [f"localhost:{port}"]  # ... and the request and certificate are for the name

    # The same server reached by its address has no certificate for that name: refused.
    by_address = check_target(f"https://127.0.0.1:{port}/hook", allow_private=True)
    refused = delivery.post(by_address, "{}", {}, timeout_s=5)
    assert refused.status_code is None and "CERTIFICATE_VERIFY_FAILED" in (refused.error or "")
