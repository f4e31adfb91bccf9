"""C2PA: a signed MP4's manifest reads back valid with c2pa's Reader, and invalid after one changed byte."""

from __future__ import annotations

import json
from pathlib import Path

import c2pa
import numpy as np
import pytest

from app.config import Settings
from app.provenance.certs import CertPaths, create_dev_chain, ensure_signing_chain, signing_paths
from model.export import render_mp4
from model.provenance import TRAINED_ALGORITHMIC_MEDIA, Creation, read_manifest, sign_mp4

CREATION = Creation(
    generator_version="0.1.0",
    model_id="builtin:tiny-wan",
    job_id="video_0123456789abcdef0123456789abcdef",
    created_at="2026-11-25T12:00:00Z",
)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> CertPaths:
    certs = tmp_path_factory.mktemp("certs")
    paths = CertPaths(cert=certs / "chain.pem", key=certs / "key.pem")
    create_dev_chain(paths)
    return paths


def signed_video(tmp_path: Path, chain: CertPaths) -> Path:
    frames = (np.full((64, 96, 3), 10 * i, np.uint8) for i in range(8))
    render_mp4(frames, tmp_path / "plain.mp4", fps=8)
    sign_mp4(
        tmp_path / "plain.mp4",
        tmp_path / "signed.mp4",
        CREATION,
        cert_pem=chain.cert.read_bytes(),
        key_pem=chain.key.read_bytes(),
    )
    return tmp_path / "signed.mp4"


def test_manifest_reads_back_valid_with_c2pa_reader(tmp_path: Path, chain: CertPaths) -> None:
    path = signed_video(tmp_path, chain)
    with open(path, "rb") as stream, c2pa.Reader("video/mp4", stream) as reader:
        store = json.loads(reader.json())
    assert store["validation_state"] == "Valid"
    active = store["manifests"][store["active_manifest"]]
    generator = active["claim_generator_info"][0]
    assert (generator["name"], generator["version"]) == ("Kinema", "0.1.0")
    actions = next(a for a in active["assertions"] if a["label"].startswith("c2pa.actions"))["data"][
        "actions"
    ]
    assert actions[0]["action"] == "c2pa.created"
    assert actions[0]["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert actions[0]["parameters"] == {"model": "builtin:tiny-wan", "job_id": CREATION.job_id}
    assert actions[0]["when"] == CREATION.created_at

    report = read_manifest(path)
    assert report.present and report.valid
    assert report.issuer == "Kinema development"
    assert report.claim_generator == "Kinema 0.1.0"
    assert report.job_id == CREATION.job_id and report.model == "builtin:tiny-wan"
    # No trust list is configured: the dev CA is reported as untrusted, the signature still checks.
    assert all("bmffHash" not in problem for problem in report.problems)


def test_one_changed_byte_of_video_data_makes_it_invalid(tmp_path: Path, chain: CertPaths) -> None:
    data = bytearray(signed_video(tmp_path, chain).read_bytes())
    data[data.index(b"mdat") + 64] ^= 0x01
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(data)

    with open(tampered, "rb") as stream, c2pa.Reader("video/mp4", stream) as reader:
        assert reader.get_validation_state() == "Invalid"
    report = read_manifest(tampered)
    assert report.present and not report.valid
    assert any(problem.startswith("assertion.bmffHash.mismatch") for problem in report.problems)


def test_unsigned_video_has_no_manifest(tmp_path: Path) -> None:
    render_mp4(iter([np.zeros((32, 32, 3), np.uint8)] * 2), tmp_path / "plain.mp4", fps=8)
    report = read_manifest(tmp_path / "plain.mp4")
    assert not report.present and not report.valid


def test_self_signed_leaf_is_refused(tmp_path: Path, chain: CertPaths) -> None:
    ca_only = chain.cert.read_bytes().split(b"-----END CERTIFICATE-----")[1] + b"-----END CERTIFICATE-----\n"
    render_mp4(iter([np.zeros((32, 32, 3), np.uint8)] * 2), tmp_path / "plain.mp4", fps=8)
    with pytest.raises(c2pa.C2paError):
        # The CA certificate does not match the leaf's key, and is no signing certificate.
        sign_mp4(
            tmp_path / "plain.mp4",
            tmp_path / "x.mp4",
            CREATION,
            cert_pem=ca_only,
            key_pem=chain.key.read_bytes(),
        )


def test_dev_chain_is_created_once_and_a_configured_missing_path_is_an_error(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    paths = ensure_signing_chain(settings)
    assert paths == signing_paths(settings) and paths.cert.exists() and paths.key.exists()
    assert paths.key.stat().st_mode & 0o077 == 0
    first = paths.cert.read_bytes()
    ensure_signing_chain(settings)
    assert paths.cert.read_bytes() == first
    with pytest.raises(FileNotFoundError, match=r"missing\.pem"):
        ensure_signing_chain(Settings(home=tmp_path, c2pa_cert_path=tmp_path / "missing.pem"))
