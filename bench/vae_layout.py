"""Which VAE layout keeps a shape's outline: 8x spatial compression (Wan 2.1's, the shipped model's) or 4x.

Each layout (`model.training.components.build_vae` with `ModelSizes(vae_spatial=...)`) is trained from
the same seed for the same number of frame steps (`model.training.vae.train_vae_stage`, the training
script's own frames stage), then scored on frames of held-out clips encoded and decoded: PSNR, and the
share whose shape `model.training.detector` still reads right (the ceiling a VAE sets on every prompt).
Equal steps, not equal seconds: on a GPU these small networks take about the same time a step whatever
their width, and the steps are what a GPU run's time cap buys.

    .venv/bin/python bench/vae_layout.py [--steps 500] [--batch 16] [--layouts 8,4] [--threads 2]

Prints a table and writes bench/results/vae_layout.json (`--output`).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: find the bench and model packages
from bench.machine import machine_info, table  # noqa: E402
from model.training.components import ModelSizes, build_vae  # noqa: E402
from model.training.data import SHAPES, ClipConfig, make_clip  # noqa: E402
from model.training.detector import detect  # noqa: E402
from model.training.vae import EVAL_SEED_BASE, frame_batch, psnr, reconstruct, train_vae_stage  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def score(vae: Any, clips: int) -> dict[str, Any]:
    """PSNR and shape share over the first and middle frames of `clips` held-out one-shape clips."""
    single = ClipConfig(two_shape_share=0.0)
    psnrs, right = [], {shape: [0, 0] for shape in SHAPES}
    for i in range(clips):
        clip = make_clip(EVAL_SEED_BASE + i, single, held_out=True)
        for t in (0, single.num_frames // 2):
            frame = clip.frames[t : t + 1]
            pixels = reconstruct(vae, frame, torch.device("cpu"))
            psnrs.append(psnr(pixels, frame))
            shape = clip.shapes[0].shape
            right[shape][0] += detect(pixels).shape == shape
            right[shape][1] += 1
    total = sum(n for _, n in right.values())
    return {
        "psnr_db": float(np.mean(psnrs)),
        "shape": sum(ok for ok, _ in right.values()) / total,
        "per_shape": {shape: ok / max(n, 1) for shape, (ok, n) in right.items()},
        "frames_scored": total,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=500, help="frame steps per layout (default 500)")
    parser.add_argument("--batch", type=int, default=16, help="frames per step (default 16)")
    parser.add_argument("--lr", type=float, default=1e-3, help="the VAE rate (default 1e-3)")
    parser.add_argument("--layouts", default="8,4", help="spatial compressions to compare (default 8,4)")
    parser.add_argument("--clips", type=int, default=64, help="held-out clips scored, 2 frames each")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS / "vae_layout.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    machine = machine_info(("torch", "diffusers"))
    results = []
    for spatial in (int(s) for s in args.layouts.split(",")):
        torch.manual_seed(args.seed)
        vae = build_vae(ModelSizes(vae_spatial=spatial))
        print(f"{spatial}x: {args.steps} steps of {args.batch} frames ...", file=sys.stderr)
        started = time.perf_counter()
        losses = train_vae_stage(
            vae,
            steps=args.steps,
            batch=args.batch,
            lr=args.lr,
            make_batch=functools.partial(frame_batch, config=ClipConfig()),
            device=torch.device("cpu"),
            seed=args.seed,
        )
        seconds = time.perf_counter() - started
        results.append(
            {
                "spatial": spatial,
                "latent": f"{64 // spatial}x{64 // spatial}",
                "parameters": sum(p.numel() for p in vae.parameters()),
                "train_s": seconds,
                "final_loss": float(np.mean(losses[-50:])),
                **score(vae, args.clips),
            }
        )
    headers = ["layout", "latent", "params", "s/step", "loss", "PSNR dB", "shape", *SHAPES]
    body = [
        [
            f"{r['spatial']}x",
            r["latent"],
            f"{r['parameters'] / 1e6:.2f} M",
            f"{r['train_s'] / args.steps:.2f}",
            f"{r['final_loss']:.3f}",
            f"{r['psnr_db']:.1f}",
            f"{r['shape']:.0%}",
            *(f"{r['per_shape'][s]:.0%}" for s in SHAPES),
        ]
        for r in results
    ]
    print(
        f"\n{args.steps} frame steps of {args.batch} at lr {args.lr}, seed {args.seed}; scored on "
        f"{results[0]['frames_scored']} held-out frames; {machine['cpu_count']} x {machine['cpu_model']}, "
        f"{args.threads} torch threads"
    )
    print(table(headers, body))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    config = {**vars(args), "output": str(args.output)}
    report = {"benchmark": "vae_layout", "machine": machine, "config": config, "results": results}
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
