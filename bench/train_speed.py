"""Seconds per training step of each stage of `model.training.train`, at the shipped run's batch sizes.

The shipped model's flow stage was trained on a GPU (`scripts/train_on_gpu.sh`), its VAE stage on
this machine's CPU; this measures what the same steps cost here, so the CPU time of the whole schedule
can be stated from measurement rather than guessed (the last column: each stage as recorded in the
shipped `training.json`, on the device it ran on):

    .venv/bin/python bench/train_speed.py [--threads 2] [--steps 3] [--device cpu]

Prints a table (seconds per step, and the shipped run's step counts at that speed) and writes
bench/results/train_speed.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: find the bench and model packages
from bench.machine import machine_info, table  # noqa: E402
from model.training.components import (  # noqa: E402
    ModelSizes,
    build_text_encoder,
    build_tokenizer,
    build_transformer,
    build_vae,
)
from model.training.data import ClipConfig, plan_clip  # noqa: E402
from model.training.flow import FlowTrainer, LatentSet  # noqa: E402
from model.training.vae import clip_batch, frame_batch, reconstruction_loss  # noqa: E402

SHIPPED = ROOT / "model" / "checkpoints" / "kinema-shapes" / "training.json"


def shipped_sizes() -> ModelSizes:
    """The shipped run's sizes (a report that predates `vae_spatial` is of an 8x VAE)."""
    sizes = json.loads(SHIPPED.read_text())["sizes"]
    return ModelSizes(**{"vae_spatial": 8, **sizes})


def time_vae(make: Any, batch: int, steps: int, device: torch.device) -> float:
    """Median seconds of one AdamW step of the VAE on batches from `make`, after one warm-up step."""
    vae = build_vae(shipped_sizes())
    torch.nn.Module.to(vae, device)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        loss = reconstruction_loss(vae, make(rng, batch).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:]))


def time_flow(batch: int, steps: int, device: torch.device) -> float:
    """Median seconds of one flow-matching step (text encoder + transformer + EMA) on random latents."""
    sizes, config = shipped_sizes(), ClipConfig()
    plans = [plan_clip(seed, config) for seed in range(64)]
    side = config.width // sizes.vae_spatial
    latents = torch.randn(64, sizes.vae_z_dim, 5, side, side).half()
    tokenizer = build_tokenizer()
    trainer = FlowTrainer(
        transformer=build_transformer(sizes),
        text_encoder=build_text_encoder(sizes, len(tokenizer)),
        tokenizer=tokenizer,
        data=LatentSet(latents=latents, plans=plans, seeds=list(range(64))),
        mean=torch.zeros(1, sizes.vae_z_dim, 1, 1, 1),
        std=torch.ones(1, sizes.vae_z_dim, 1, 1, 1),
        shift=sizes.shift,
        lr=5e-4,
        device=device,
        seed=0,
    )
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        trainer.train_step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return float(np.median(times[1:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per stage (after one warm-up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "train_speed.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shipped = json.loads(SHIPPED.read_text())
    schedule, vae, flow = shipped["schedule"], shipped["vae"], shipped["flow"]
    # The VAE stage may have run elsewhere, at other batches (recorded with it since they differ).
    frame_batch_size = vae.get("frames_batch", schedule["vae_frame_batch"])
    clip_batch_size = vae.get("clips_batch", schedule["vae_clip_batch"])
    vae_device = vae.get("device", shipped["device"])
    config = ClipConfig()
    short = replace(config, num_frames=9)
    stages = [
        (
            "vae frames",
            frame_batch_size,
            vae["frames_steps"],
            vae["frames_s"],
            vae_device,
            lambda: time_vae(
                functools.partial(frame_batch, config=config), frame_batch_size, args.steps, device
            ),
        ),
        (
            "vae clips",
            clip_batch_size,
            vae["clips_steps"],
            vae["clips_s"],
            vae_device,
            lambda: time_vae(
                functools.partial(clip_batch, config=short), clip_batch_size, args.steps, device
            ),
        ),
        (
            "flow",
            schedule["batch"],
            flow["steps"],
            flow["flow_s"],
            shipped["device"],
            lambda: time_flow(schedule["batch"], args.steps, device),
        ),
    ]
    rows, results = [], []
    for name, batch, steps, recorded_s, recorded_on, measure in stages:
        per_step = measure()
        total_h = per_step * steps / 3600
        results.append(
            {
                "stage": name,
                "batch": batch,
                "s_per_step": per_step,
                "shipped_steps": steps,
                "hours": total_h,
                "shipped_s": recorded_s,
                "shipped_device": recorded_on,
            }
        )
        rows.append(
            [
                name,
                str(batch),
                f"{per_step:.2f}",
                str(steps),
                f"{total_h:.1f}",
                f"{recorded_s / steps:.3f} ({recorded_on})",
            ]
        )
        print(f"{name}: {per_step:.2f} s/step", file=sys.stderr)
    total = sum(r["hours"] for r in results)
    machine = machine_info(("torch", "diffusers"))
    print(f"\n{args.device}, {args.threads} torch threads; {machine['cpu_count']} x {machine['cpu_model']}")
    headers = ["stage", "batch", "s/step", "shipped steps", "hours here", "recorded s/step"]
    print(table(headers, rows))
    print(f"the shipped schedule here: {total:.1f} h (plus encoding 20 000 clips)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "train_speed",
        "machine": machine,
        "device": args.device,
        "threads": args.threads,
        "stages": results,
        "total_hours": total,
    }
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
