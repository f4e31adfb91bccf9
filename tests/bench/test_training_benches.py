"""The training benchmarks' own code, run end to end on a few steps: bench/vae_layout.py and the VAE-only
mode of bench/adherence.py (how a VAE stage is checked before a flow run is spent on it)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import adherence, vae_layout


def test_vae_layout_trains_both_layouts_and_scores_held_out_frames(tmp_path: Path) -> None:
    output = tmp_path / "vae_layout.json"
    argv = ["--steps", "2", "--batch", "2", "--clips", "2", "--threads", "1", "--output", str(output)]
    assert vae_layout.main(argv) == 0
    results = json.loads(output.read_text())["results"]
    assert [(r["spatial"], r["latent"]) for r in results] == [(8, "8x8"), (4, "16x16")]
    for result in results:
        assert result["frames_scored"] == 4
        assert 0.0 <= result["shape"] <= 1.0
        assert 5.0 < result["psnr_db"] < 60.0


def test_adherence_with_no_prompts_scores_the_vae_alone(tmp_path: Path) -> None:
    output = tmp_path / "adherence.json"
    argv = ["--prompts", "0", "--reconstructions", "2", "--threads", "1", "--output", str(output)]
    argv += ["--strip", str(tmp_path / "strip.png")]
    assert adherence.main(argv) == 0
    results = json.loads(output.read_text())["results"]
    assert list(results) == ["vae reconstruction"]
    assert results["vae reconstruction"]["summary"]["clips"] == 2
    assert not (tmp_path / "strip.png").exists()  # nothing was generated, so no strip
