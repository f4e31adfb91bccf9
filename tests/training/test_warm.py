"""`train.py --init-from`: the flow stage starts from a trained pipeline whose VAE has another layout."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from diffusers import WanPipeline
from safetensors.torch import load_file

from model.training.components import build_transformer
from model.training.train import TINY_SIZES
from model.training.warm import least_squares, token_patches, token_targets
from tests.training.test_train import run_training


def test_token_patches_are_what_the_patch_embedding_multiplies() -> None:
    conv = torch.nn.Conv3d(4, 5, kernel_size=(1, 4, 4), stride=(1, 4, 4))
    assert conv.bias is not None
    latents = torch.randn(2, 4, 3, 8, 12)
    tokens = conv(latents).flatten(2).transpose(1, 2).reshape(-1, 5)
    by_rows = token_patches(latents, (1, 4, 4)) @ conv.weight.reshape(5, -1).T + conv.bias
    torch.testing.assert_close(by_rows, tokens)


def test_token_targets_are_in_the_order_the_transformer_unpatchifies() -> None:
    model = build_transformer(replace(TINY_SIZES, vae_spatial=8)).eval()  # patches of 2x2 latents
    rows: list[torch.Tensor] = []
    model.proj_out.register_forward_hook(lambda _m, _a, out: rows.append(out))
    with torch.no_grad():
        output = model(
            torch.randn(2, 16, 3, 4, 6), torch.tensor([10, 500]), torch.randn(2, 7, 16), return_dict=False
        )[0]
    torch.testing.assert_close(token_targets(output, (1, 2, 2)), rows[0].reshape(-1, 2 * 2 * 16))


def test_least_squares_recovers_a_linear_map() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(500, 6, generator=generator)
    weight, bias = torch.randn(3, 6, generator=generator), torch.randn(3, generator=generator)
    fitted_weight, fitted_bias, r2 = least_squares(x, x @ weight.T + bias, ridge=0.0)
    torch.testing.assert_close(fitted_weight, weight, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fitted_bias, bias, rtol=1e-4, atol=1e-4)
    assert r2 == pytest.approx(1.0)
    _, _, noise_r2 = least_squares(x, torch.randn(500, 3, generator=generator))
    assert noise_r2 < 0.1


def test_a_4x_model_starts_from_an_8x_pipeline(tmp_path: Path) -> None:
    source = tmp_path / "source"
    run_training(source, "--seed", "1", "--vae-spatial", "8")
    out = tmp_path / "warm"
    run_training(out, "--seed", "2", "--init-from", str(source), "--steps", "0")

    report = json.loads((out / "training.json").read_text())["warm_start"]
    assert report["source"] == str(source)
    assert -1.0 < report["proj_out_r2"] <= 1.0 and -1.0 < report["patch_embedding_r2"] <= 1.0
    old = load_file(next((source / "transformer").glob("*.safetensors")))
    new = load_file(next((out / "transformer").glob("*.safetensors")))
    assert old["patch_embedding.weight"].shape[-2:] == (2, 2)
    assert new["patch_embedding.weight"].shape[-2:] == (4, 4)  # the 4x VAE's latents, 16 px a token
    kept = [name for name in old if not name.startswith(("patch_embedding.", "proj_out."))]
    assert report["copied"] >= len(kept)
    for name in kept:  # steps 0: what was saved is the warm start itself
        assert torch.equal(old[name], new[name]), name
    old_text = load_file(next((source / "text_encoder").glob("*.safetensors")))
    new_text = load_file(next((out / "text_encoder").glob("*.safetensors")))
    assert all(torch.equal(old_text[k], new_text[k]) for k in old_text)
    pipe = WanPipeline.from_pretrained(out, dtype=torch.float32)
    assert pipe.vae_scale_factor_spatial == 4

    # Resuming does not warm-start again: the flow stage's own state wins.
    resumed = run_training(out, "--seed", "2", "--init-from", str(source), "--steps", "2")
    assert "warm start from" not in resumed.stderr and "flow: resumed at step 0" in resumed.stderr
    assert json.loads((out / "training.json").read_text())["warm_start"] == report

    # A new flow stage from random weights (its state removed, no --init-from) claims no warm start.
    (tmp_path / "warm.work" / "flow.pt").unlink()
    run_training(out, "--seed", "2", "--steps", "1")
    assert "warm_start" not in json.loads((out / "training.json").read_text())


def test_a_source_with_the_same_encoder_is_continued_with_every_weight(tmp_path: Path) -> None:
    source = tmp_path / "source"
    run_training(source, "--seed", "1", "--steps", "2")
    out = tmp_path / "continued"
    work = tmp_path / "continued.work"
    work.mkdir()
    shutil.copy(tmp_path / "source.work" / "vae.pt", work / "vae.pt")  # the same VAE stage
    result = run_training(out, "--seed", "2", "--init-from", str(source), "--steps", "0")
    assert "same encoder" in result.stderr
    report = json.loads((out / "training.json").read_text())["warm_start"]
    assert report["patch_embedding_r2"] is None and report["proj_out_r2"] is None
    old = load_file(next((source / "transformer").glob("*.safetensors")))
    new = load_file(next((out / "transformer").glob("*.safetensors")))
    assert report["copied"] >= len(old)
    assert all(torch.equal(old[name], new[name]) for name in old)
