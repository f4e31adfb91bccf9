"""bench/gpu.py --small: the GPU benchmark's own code, run end to end on the CPU with a tiny config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import gpu


def test_small_run_measures_every_variant_and_writes_json_and_the_doc_table(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text(
        "# Performance\n\nhand-written text\n\n<!-- bench/gpu.py gpu: start -->\nGPU rows\n"
        "<!-- bench/gpu.py gpu: end -->\n"
    )
    output = tmp_path / "gpu-small.json"
    argv = [
        "--small",
        "--steps",
        "4",
        "--warmup-steps",
        "1",
        "--output",
        str(output),
        "--doc",
        str(doc),
        "--weights",
        str(tmp_path / "w"),
    ]
    assert gpu.main(argv) == 0

    report = json.loads(output.read_text())
    assert report["machine"]["device_type"] == "cpu"
    rows = {r["variant"]: r for r in report["results"]}
    assert list(rows) == ["diffusers", "kinema", "kinema+cache"]
    for row in rows.values():
        assert row["steps"] == 4
        assert 0 < row["s_per_step"] < row["denoise_s"] < row["total_s"]
        assert row["decode_s"] > 0 and row["encode_s"] > 0
        assert row["achieved_tflops"] > 0 and row["mfu"] is None  # no peak figure for a CPU
    assert rows["kinema"]["options"]["cfg_batch"] is True
    # Kinema's path (batched guidance, streamed decode) makes the baseline's frames to float rounding.
    assert rows["kinema"]["vs_diffusers"]["psnr_db"] is None or rows["kinema"]["vs_diffusers"]["psnr_db"] > 60
    cache = rows["kinema+cache"]["step_cache"]
    assert cache["passes"] == 4 and 0 <= cache["skipped"] <= 3
    assert "cache_error_vs_kinema" in rows["kinema+cache"]

    text = doc.read_text()
    assert "hand-written text" in text and "GPU rows" in text  # other blocks are kept
    assert "<!-- bench/gpu.py cpu --small: start -->" in text
    assert "| small | kinema |" in text and "CPU: the `--small` check, not a GPU figure" in text


def test_the_doc_block_is_replaced_not_repeated(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    gpu.write_doc(doc, "gpu", "first")
    gpu.write_doc(doc, "cpu --small", "cpu figures")
    gpu.write_doc(doc, "gpu", "second")
    text = doc.read_text()
    assert text.count("<!-- bench/gpu.py gpu: start -->") == 1
    assert "second" in text and "first" not in text and "cpu figures" in text


def test_flop_count_for_the_real_workload() -> None:
    flops = gpu.transformer_flops(gpu.WAN_1_3B.transformer, 832, 480, 81)
    # 21 latent frames x 30 x 52 patches.
    assert flops["tokens"] == 21 * 30 * 52
    # Per pass about 2.8e14 FLOPs, attention (L^2 terms) the larger share at 32,760 tokens.
    assert flops["pass"] == pytest.approx(2.8e14, rel=0.05)
    assert 0.6 < flops["attention_share"] < 0.8


def test_unknown_rows_and_variants_are_refused() -> None:
    with pytest.raises(SystemExit):
        gpu.parse_args(["--rows", "4k"])
    with pytest.raises(SystemExit):
        gpu.parse_args(["--variants", "tensorrt"])
