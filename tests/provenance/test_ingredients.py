"""C2PA ingredients: a video made from another names it, with the parent's own manifest, and verify
lists it; an input image is an ingredient the video was made from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import c2pa
import numpy as np
from PIL import Image

from app.config import get_settings
from model.export import VideoInfo, render_mp4
from model.provenance import read_manifest
from worker.provenance import sign_video

COMPOSITE = "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"


def made_video(
    path: Path, *, seed: int, job_id: str, parent_id: str | None = None, parent: Path | None = None
) -> Path:
    """What the worker does after encoding: sign the MP4, naming the file it started from."""
    rng = np.random.default_rng(seed)
    frames = (rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(6))
    info: VideoInfo = render_mp4(frames, path, fps=8)
    sign_video(
        path,
        info,
        get_settings(),
        job_id=job_id,
        model_id="builtin:tiny-wan",
        parent_id=parent_id,
        parent_video=parent,
    )
    return path


def store_of(path: Path) -> dict[str, Any]:
    """The manifest store as c2pa's own Reader reads and validates it."""
    with open(path, "rb") as stream, c2pa.Reader("video/mp4", stream) as reader:
        return dict(json.loads(reader.json()))


def actions_of(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        action
        for assertion in manifest["assertions"]
        if assertion["label"].startswith("c2pa.actions")
        for action in assertion["data"]["actions"]
    ]


def test_an_edit_names_its_parent_video_with_the_parents_own_manifest(
    settings_env: Any, tmp_path: Path
) -> None:
    parent = made_video(tmp_path / "parent.mp4", seed=1, job_id="video_parent01")
    child = made_video(
        tmp_path / "child.mp4", seed=2, job_id="video_child01", parent_id="video_parent01", parent=parent
    )

    store = store_of(child)
    assert store["validation_state"] == "Valid"
    active = store["manifests"][store["active_manifest"]]
    [ingredient] = active["ingredients"]
    assert ingredient["relationship"] == "parentOf"
    assert ingredient["title"] == "video_parent01.mp4" and ingredient["format"] == "video/mp4"
    # The parent's manifest travels inside the child's store, and names the parent's job.
    parent_manifest = store["manifests"][ingredient["active_manifest"]]
    [generation] = [a["data"] for a in parent_manifest["assertions"] if a["label"] == "org.kinema.generation"]
    assert generation["job_id"] == "video_parent01"
    opened, edited = actions_of(active)
    assert opened["action"] == "c2pa.opened"
    assert opened["parameters"]["ingredients"][0]["url"].endswith("c2pa.ingredient.v3")
    assert edited["action"] == "c2pa.edited" and edited["digitalSourceType"] == COMPOSITE
    assert edited["parameters"]["parent_job_id"] == "video_parent01"

    report = read_manifest(child)
    assert report.valid and report.job_id == "video_child01" and report.parent_job_id == "video_parent01"
    [listed] = report.ingredients
    assert (listed.relationship, listed.title, listed.job_id) == (
        "parentOf",
        "video_parent01.mp4",
        "video_parent01",
    )
    assert listed.has_manifest and listed.valid and (listed.claim_generator or "").startswith("Kinema")


def test_a_parent_changed_after_signing_is_listed_as_invalid(settings_env: Any, tmp_path: Path) -> None:
    parent = made_video(tmp_path / "parent.mp4", seed=1, job_id="video_parent02")
    data = bytearray(parent.read_bytes())
    data[data.index(b"mdat") + 64] ^= 0x01
    parent.write_bytes(bytes(data))
    child = made_video(
        tmp_path / "child.mp4", seed=2, job_id="video_child02", parent_id="video_parent02", parent=parent
    )
    report = read_manifest(child)
    assert report.valid  # the child's own claim is intact
    [listed] = report.ingredients
    assert listed.has_manifest and listed.valid is False
    assert any("bmffHash.mismatch" in problem for problem in listed.problems)


def test_an_uploaded_source_without_a_manifest_and_an_input_image(settings_env: Any, tmp_path: Path) -> None:
    upload = tmp_path / "holiday.mov"
    render_mp4((np.full((64, 96, 3), v, np.uint8) for v in range(0, 60, 10)), upload, fps=8)
    edited = made_video(tmp_path / "edit.mp4", seed=3, job_id="video_edit03", parent=upload)
    [listed] = read_manifest(edited).ingredients
    assert (listed.title, listed.format, listed.relationship) == (
        "holiday.mov",
        "video/quicktime",
        "parentOf",
    )
    assert not listed.has_manifest and listed.valid is None and listed.job_id is None

    image = tmp_path / "first-frame.png"
    Image.fromarray(np.full((64, 96, 3), 90, np.uint8)).save(image)
    animated = made_video(tmp_path / "i2v.mp4", seed=4, job_id="video_i2v04", parent=image)
    store = store_of(animated)
    assert store["validation_state"] == "Valid"
    active = store["manifests"][store["active_manifest"]]
    [created] = actions_of(active)
    assert created["action"] == "c2pa.created" and created["digitalSourceType"].endswith(
        "/trainedAlgorithmicMedia"
    )
    assert created["parameters"]["ingredients"][0]["url"].endswith("c2pa.ingredient.v3")
    [listed] = read_manifest(animated).ingredients
    assert (listed.title, listed.format, listed.relationship) == ("first-frame.png", "image/png", "inputTo")


def test_verify_lists_the_ingredient_and_its_job(client: Any, make_key: Any, tmp_path: Path) -> None:
    _, key = make_key()
    parent = made_video(tmp_path / "parent.mp4", seed=5, job_id="video_parent05")
    child = made_video(
        tmp_path / "child.mp4", seed=6, job_id="video_child05", parent_id="video_parent05", parent=parent
    )
    response = client.post(
        "/v1/provenance/verify",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": ("child.mp4", child.read_bytes(), "video/mp4")},
    )
    assert response.status_code == 200, response.text
    manifest = response.json()["c2pa"]
    assert manifest["valid"] and manifest["parent_job_id"] == "video_parent05"
    assert [action["action"] for action in manifest["actions"]] == ["c2pa.opened", "c2pa.edited"]
    [ingredient] = manifest["ingredients"]
    assert ingredient["job_id"] == "video_parent05" and ingredient["relationship"] == "parentOf"
    assert ingredient["has_manifest"] and ingredient["valid"]
