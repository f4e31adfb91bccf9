"""POST /v1/provenance/verify: the C2PA manifest and the job the invisible watermark names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from app.config import get_settings
from app.provenance.certs import ensure_signing_chain
from model.export import render_mp4
from model.invisible_watermark import InvisibleWatermark, Payload
from model.provenance import Creation, sign_mp4


def frames(count: int = 12, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:96, 0:160]
    return [
        np.clip(
            (120 + 70 * np.sin(xx / 17 + t) * np.cos(yy / 13))[:, :, None] + rng.normal(0, 6, (96, 160, 3)),
            0,
            255,
        ).astype(np.uint8)
        for t in range(count)
    ]


def issued_video(path: Path, issuer: str, key_id: str, job_id: str) -> Path:
    """What the worker makes for a job: marked frames, encoded, signed with the deployment's chain."""
    mark = InvisibleWatermark(Payload.for_job(issuer, key_id, job_id))
    plain = path.with_name("plain.mp4")
    render_mp4((mark.apply(f) for f in frames()), plain, fps=8)
    chain = ensure_signing_chain(get_settings())
    creation = Creation("0.1.0", "builtin:tiny-wan", job_id, "2026-11-25T12:00:00Z")
    sign_mp4(plain, path, creation, cert_pem=chain.cert.read_bytes(), key_pem=chain.key.read_bytes())
    return path


def post(client: Any, key: str, data: bytes) -> Any:
    return client.post(
        "/v1/provenance/verify",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": ("video.mp4", data, "video/mp4")},
    )


def test_verify_names_the_job_and_key_that_made_the_video(
    client: Any, make_key: Any, make_job: Any, tmp_path: Path
) -> None:
    owner, _ = make_key("owner")
    other_row, _ = make_key("other")
    make_job(other_row)
    job = make_job(owner)
    make_job(owner)
    _, caller = make_key("verifier")
    video = issued_video(tmp_path / "job.mp4", get_settings().watermark_issuer, owner.id, job.id)

    response = post(client, caller, video.read_bytes())
    assert response.status_code == 200, response.text
    body = response.json()
    mark = body["watermark"]
    assert mark["found"] and mark["issued_here"]
    assert (mark["job_id"], mark["api_key_id"]) == (job.id, owner.id)
    assert mark["payload"] == Payload.for_job(get_settings().watermark_issuer, owner.id, job.id).hex
    manifest = body["c2pa"]
    assert manifest["present"] and manifest["valid"] and manifest["validation_state"] == "Valid"
    assert manifest["job_id"] == job.id
    assert manifest["actions"][0]["action"] == "c2pa.created"
    assert manifest["issuer"] == "Kinema development"


def test_another_deployments_mark_is_found_but_names_no_job(
    client: Any, make_key: Any, make_job: Any, tmp_path: Path
) -> None:
    row, key = make_key()
    job = make_job(row)
    video = issued_video(tmp_path / "job.mp4", "someone-else", row.id, job.id)
    mark = post(client, key, video.read_bytes()).json()["watermark"]
    assert mark["found"] and not mark["issued_here"]
    assert mark["job_id"] is None and mark["api_key_id"] is None


def test_clean_video_reports_no_watermark_and_no_manifest(client: Any, make_key: Any, tmp_path: Path) -> None:
    _, key = make_key()
    render_mp4(iter(frames(seed=5)), tmp_path / "clean.mp4", fps=8)
    response = post(client, key, (tmp_path / "clean.mp4").read_bytes())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["watermark"]["found"] is False and body["watermark"]["payload"] is None
    assert body["watermark"]["frames"] == 12
    assert body["c2pa"]["present"] is False and body["c2pa"]["valid"] is False


def test_tampered_video_reports_an_invalid_manifest(
    client: Any, make_key: Any, make_job: Any, tmp_path: Path
) -> None:
    row, key = make_key()
    job = make_job(row)
    data = bytearray(issued_video(tmp_path / "job.mp4", "kinema", row.id, job.id).read_bytes())
    data[data.index(b"mdat") + 64] ^= 0x01
    manifest = post(client, key, bytes(data)).json()["c2pa"]
    assert manifest["present"] and not manifest["valid"]
    assert manifest["validation_state"] == "Invalid"
    assert any("bmffHash.mismatch" in problem for problem in manifest["problems"])


def test_refuses_non_video_oversized_and_missing_files(client: Any, make_key: Any, monkeypatch: Any) -> None:
    _, key = make_key()
    response = post(client, key, b"not a video at all")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_file" and response.json()["error"]["param"] == "file"

    missing = client.post("/v1/provenance/verify", headers={"Authorization": f"Bearer {key}"})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "file"

    monkeypatch.setenv("KINEMA_VERIFY_MAX_BYTES", "2048")
    get_settings.cache_clear()
    large = post(client, key, b"\0" * 4096)
    assert large.status_code == 413
    assert large.json()["error"] == {
        "message": "The file is larger than 2048 bytes.",
        "type": "invalid_request_error",
        "param": "file",
        "code": "file_too_large",
    }


def test_needs_the_read_scope(client: Any, make_key: Any) -> None:
    _, key = make_key(scopes=["generate"])
    response = post(client, key, b"x")
    assert response.status_code == 403
