"""`python -m model.training.train --tiny`: a few real steps of every stage, written as a stock pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from diffusers import WanPipeline
from safetensors import safe_open

from model.registry import get_spec
from model.training.components import ModelSizes, build_transformer, build_vae
from model.training.flow import PaddedContextProcessor, encode_text
from model.training.train import Pauser

ROOT = Path(__file__).resolve().parents[2]


def run_training(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The training script as a user runs it, at toy sizes; no pause file, so nothing can hold it."""
    command = [sys.executable, "-m", "model.training.train", "--out", str(out), "--tiny", "--threads", "1"]
    command += ["--pause-file", str(out.parent / "no-such.lock"), *extra]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240, check=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "model"
    run_training(out, "--seed", "3")
    return out


def test_training_writes_a_pipeline_that_stock_diffusers_loads_and_runs(trained: Path) -> None:
    pipe = WanPipeline.from_pretrained(trained, dtype=torch.float32)
    frames = pipe(
        "a red circle moving to the left on a black background",
        height=32,
        width=32,
        num_frames=5,
        num_inference_steps=2,
        generator=torch.Generator("cpu").manual_seed(0),
        output_type="np",
    ).frames
    assert frames.shape == (1, 5, 32, 32, 3)
    assert frames.min() >= 0.0 and frames.max() <= 1.0


def test_the_vae_compresses_space_4x_and_kinema_reads_the_grid_from_the_folder(trained: Path) -> None:
    pipe = WanPipeline.from_pretrained(trained, dtype=torch.float32)
    assert (pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal) == (4, 4)
    assert tuple(pipe.transformer.config.patch_size) == (1, 4, 4)
    with torch.no_grad():
        latents = pipe.vae.encode(torch.zeros(1, 3, 5, 32, 32)).latent_dist.mode()
    assert latents.shape == (1, 16, 2, 8, 8)
    spec = get_spec(str(trained))
    # A token still covers 16x16 pixels: the size grid and frame step are those of Wan 2.1's 8x VAE.
    assert (spec.spatial_multiple, spec.frame_step) == (16, 4)


def test_the_default_layout_is_the_shipped_checkpoints() -> None:
    """The training script's default layout (a 4x VAE) is the shipped checkpoint's architecture;
    `--vae-spatial 8` builds the earlier one (Wan 2.1's 8x compression), which is another."""
    shipped = ROOT / "model" / "checkpoints" / "kinema-shapes"
    for part, module in (("vae", build_vae(ModelSizes())), ("transformer", build_transformer(ModelSizes()))):
        (weights,) = (shipped / part).glob("*.safetensors")
        with safe_open(str(weights), framework="pt") as tensors:
            shapes = {key: tuple(tensors.get_slice(key).get_shape()) for key in tensors.keys()}  # noqa: SIM118
        assert shapes == {key: tuple(value.shape) for key, value in module.state_dict().items()}
    assert set(build_vae(ModelSizes()).state_dict()) != set(build_vae(ModelSizes(vae_spatial=8)).state_dict())
    with pytest.raises(ValueError, match="vae_spatial"):
        build_vae(ModelSizes(vae_spatial=16))


def test_weights_are_fp16_safetensors_and_the_tokenizer_needs_no_download(trained: Path) -> None:
    for part in ("transformer", "vae", "text_encoder"):
        (weights,) = (trained / part).glob("*.safetensors")
        with safe_open(str(weights), framework="pt") as tensors:
            assert {tensors.get_tensor(k).dtype for k in tensors.keys()} == {torch.float16}  # noqa: SIM118
    index = json.loads((trained / "model_index.json").read_text())
    assert index["tokenizer"] == ["transformers", "PreTrainedTokenizerFast"]
    assert (trained / "tokenizer" / "tokenizer.json").is_file()


def test_training_report_and_latent_statistics_are_saved(trained: Path) -> None:
    report = json.loads((trained / "training.json").read_text())
    assert report["seed"] == 3
    assert report["flow"]["steps"] == 3
    assert report["vae"]["psnr_db"] > 0
    vae_config = json.loads((trained / "vae" / "config.json").read_text())
    assert vae_config["latents_std"] != [1.0] * len(vae_config["latents_std"])  # measured, not the defaults


def test_a_second_run_resumes_from_the_work_folder(trained: Path, tmp_path: Path) -> None:
    result = run_training(trained, "--seed", "3", "--steps", "5")
    assert "vae: resumed" in result.stderr
    assert "flow: resumed at step 3" in result.stderr
    assert json.loads((trained / "training.json").read_text())["flow"]["steps"] == 5


def test_decoder_finetune_changes_only_the_decoder_and_the_next_checkpoint_ships_it(trained: Path) -> None:
    vae_file = trained.with_name(trained.name + ".work") / "vae.pt"
    before = torch.load(vae_file)["state"]
    run_training(trained, "--seed", "3", "--decoder-steps", "2")
    saved = torch.load(vae_file)
    after = saved["state"]
    assert saved["figures"]["decoder_steps"] == 2
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("encoder.", "quant_conv.")))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    # Shipped into the pipeline folder at once, its latent statistics kept.
    (weights,) = (trained / "vae").glob("*.safetensors")
    with safe_open(str(weights), framework="pt") as shipped:
        assert torch.equal(
            shipped.get_tensor("decoder.conv_out.weight"), after["decoder.conv_out.weight"].half()
        )
    vae_config = json.loads((trained / "vae" / "config.json").read_text())
    assert vae_config["latents_std"] != [1.0] * len(vae_config["latents_std"])
    assert json.loads((trained / "training.json").read_text())["vae"]["decoder_steps"] == 2
    run_training(trained, "--seed", "3", "--steps", "6")
    assert json.loads((trained / "training.json").read_text())["vae"]["decoder_steps"] == 2
    (weights,) = (trained / "vae").glob("*.safetensors")
    with safe_open(str(weights), framework="pt") as shipped:
        for key in ("decoder.conv_out.weight", "encoder.conv_in.weight"):
            assert torch.equal(shipped.get_tensor(key), after[key].half())


def test_training_text_encoding_matches_the_pipeline(trained: Path) -> None:
    pipe = WanPipeline.from_pretrained(trained, dtype=torch.float32)
    prompts = ["a blue star rising on a white background", "", "red box"]
    expected, _ = pipe.encode_prompt(prompts, do_classifier_free_guidance=False, max_sequence_length=512)
    with torch.no_grad():
        full, bias = encode_text(pipe.tokenizer, pipe.text_encoder, prompts, torch.device("cpu"))
        short, short_bias = encode_text(
            pipe.tokenizer, pipe.text_encoder, prompts, torch.device("cpu"), full_length=False
        )
    assert bias is None and short_bias is not None
    torch.testing.assert_close(full, expected)
    # The short context with its bias gives the transformer's output for the full one.
    latents = torch.randn(3, 16, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    timestep = torch.tensor([900.0, 500.0, 10.0])
    with torch.no_grad():
        reference = pipe.transformer(latents, timestep, full, return_dict=False)[0]
        processor = PaddedContextProcessor()
        processor.bias = short_bias
        for block in pipe.transformer.blocks:
            block.attn2.set_processor(processor)
        shortcut = pipe.transformer(latents, timestep, short, return_dict=False)[0]
    torch.testing.assert_close(shortcut, reference, atol=1e-5, rtol=1e-4)


def test_training_waits_while_the_pause_file_exists(tmp_path: Path) -> None:
    lock = tmp_path / "bench.lock"
    pauser = Pauser(lock)
    started = time.monotonic()
    pauser()
    assert time.monotonic() - started < 0.5  # no file: no wait
    lock.touch()
    threading.Timer(1.5, lock.unlink).start()
    started = time.monotonic()
    pauser()
    assert time.monotonic() - started >= 1.4
    assert pauser.paused_s >= 1.4


def test_the_cpu_trained_vae_stage_resumes_into_the_default_layout() -> None:
    """model/training/stages/vae-4x.pt (`KINEMA_VAE_STAGE` for scripts/train_on_gpu.sh) fits `build_vae`."""
    saved = torch.load(ROOT / "model" / "training" / "stages" / "vae-4x.pt")
    vae = build_vae(ModelSizes())
    vae.load_state_dict(saved["state"])  # strict: every weight of the 4x layout, nothing else
    assert saved["figures"]["psnr_db"] > 30  # as the stage's own held-back clips measured it
