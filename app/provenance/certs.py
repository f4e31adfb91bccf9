"""`kinema certs init`: a development CA and a C2PA signing certificate issued by it."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from app.config import Settings


@dataclass(frozen=True, slots=True)
class CertPaths:
    """Where the signing chain (leaf first, then the CA) and its private key live."""

    cert: Path
    key: Path


def signing_paths(settings: Settings) -> CertPaths:
    """The configured certificate chain and key, or the development pair under `$KINEMA_HOME/certs`."""
    certs_dir = settings.home / "certs"
    return CertPaths(
        cert=settings.c2pa_cert_path or certs_dir / "signing-chain.pem",
        key=settings.c2pa_key_path or certs_dir / "signing-key.pem",
    )


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )


def create_dev_chain(paths: CertPaths, organization: str = "Kinema development", days: int = 3650) -> None:
    """Write a new CA, an ES256 signing certificate it issued (PEM chain: leaf, CA) and the leaf's key.

    C2PA refuses self-signed leaves; it wants digitalSignature and an extended key usage on the leaf.
    """
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"{organization} CA", organization)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"{organization} signer", organization))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths.cert.parent.mkdir(parents=True, exist_ok=True)
    paths.key.parent.mkdir(parents=True, exist_ok=True)
    chain = leaf_cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(
        serialization.Encoding.PEM
    )
    key_pem = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Each file appears whole (written aside, then renamed), the key readable by its owner only.
    _write(paths.key, key_pem, mode=0o600)
    _write(paths.cert.parent / "ca.pem", ca_cert.public_bytes(serialization.Encoding.PEM))
    _write(paths.cert, chain)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(partial, path)


def ensure_signing_chain(settings: Settings) -> CertPaths:
    """The signing paths; creates the development chain when neither path was configured and it is missing.

    A configured path that does not exist is an error (FileNotFoundError), never silently replaced.
    """
    paths = signing_paths(settings)
    configured = settings.c2pa_cert_path is not None or settings.c2pa_key_path is not None
    if paths.cert.exists() and paths.key.exists():
        return paths
    if configured:
        missing = paths.cert if not paths.cert.exists() else paths.key
        raise FileNotFoundError(f"C2PA signing file not found: {missing}")
    paths.cert.parent.mkdir(parents=True, exist_ok=True)
    # Workers starting together must not each write half a pair: one creates, the others wait and reuse.
    with open(paths.cert.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (paths.cert.exists() and paths.key.exists()):
            create_dev_chain(paths)
    return paths
