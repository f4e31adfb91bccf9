"""Prompt adherence of a model trained on shape clips (`model.training`), scored by a classical detector.

For held-out prompts (colour-shape-motion triples no training clip showed) and seen prompts, each with
`--seeds` seeds, it generates a clip through Kinema's own `generate` and has `model.training.detector`
read it: colour right, shape right, motion right (all three, and each alone), and temporal
consistency (one object of stable or steadily changing size, no jumps). A third set, image to video,
gives the first frame of a held-out clip as the image and asks the prompt to carry on: the shape and
colour must stay and the motion must follow the prompt. A last row, `vae reconstruction`, runs held-out
data clips through the VAE alone (encode, decode: no generation), the ceiling the VAE sets on every other
row. It also reports seconds per clip.

    .venv/bin/python bench/adherence.py --model builtin:kinema-shapes [--seeds 4] [--prompts 16]
        [--steps N] [--guidance G] [--reconstructions 64] [--strip docs/kinema-shapes.png]

Prints a table and writes bench/results/adherence.json (`--output`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: find the bench and model packages
from bench.machine import machine_busy, machine_info, table  # noqa: E402
from model.training.data import ClipConfig, ShapeSpec, describe, evaluation_prompts, render  # noqa: E402
from model.training.detector import detect  # noqa: E402

RESULTS = ROOT / "bench" / "results"
GOAL_HELD_OUT = 0.9
Prompt = tuple[str, str, str, str]  # colour, shape, motion, background


def first_frame(prompt: Prompt, size: int, seed: int) -> np.ndarray:
    """The first frame of a data clip showing `prompt`'s shape, for image to video."""
    colour, shape, motion, background = prompt
    rng = np.random.default_rng(seed)
    # Start where the motion has room, as the training clips do.
    margin = 0.3 * size
    x = {"left": size - margin, "right": margin}.get(motion, float(rng.uniform(0.4, 0.6)) * size)
    y = {"up": size - margin, "down": margin}.get(motion, float(rng.uniform(0.4, 0.6)) * size)
    r = 0.16 * size if motion != "growing" else 0.11 * size
    spec = ShapeSpec(colour=colour, shape=shape, motion="still", x=x, y=y, size=r, travel=0.0)
    return render(background, (spec,), ClipConfig(width=size, height=size, num_frames=1))[0]


def score(frames: np.ndarray, prompt: Prompt) -> dict[str, Any]:
    """The detector's reading of one clip against the prompt it was made for."""
    colour, shape, motion, _ = prompt
    found = detect(frames)
    return {
        "colour": found.colour,
        "shape": found.shape,
        "motion": found.motion,
        "colour_ok": found.colour == colour,
        "shape_ok": found.shape == shape,
        "motion_ok": found.motion == motion,
        "all_ok": (found.colour, found.shape, found.motion) == (colour, shape, motion),
        "consistent": bool(found.consistent),  # the detector's checks give numpy booleans
    }


def run_set(
    loaded: Any, prompts: Sequence[Prompt], seeds: Sequence[int], args: argparse.Namespace, *, image: bool
) -> tuple[list[dict[str, Any]], list[np.ndarray]]:
    """Generate and score every prompt x seed; returns the rows and the clips (for the strip)."""
    from model.config import GenerationRequest
    from model.generate import generate

    rows, clips = [], []
    for prompt in prompts:
        for seed in seeds:
            request = GenerationRequest(
                prompt=describe(*prompt),
                width=args.size,
                height=args.size,
                num_frames=args.frames,
                fps=8,
                num_inference_steps=args.steps,
                guidance_scale=args.guidance,
                seed=seed,
                model_id=loaded.spec.id,
                image=first_frame(prompt, args.size, seed) if image else None,
            )
            started = time.perf_counter()
            frames = np.stack(list(generate(request, model=loaded)))
            seconds = time.perf_counter() - started
            rows.append({"prompt": request.prompt, "seed": seed, "seconds": seconds, **score(frames, prompt)})
            clips.append(frames)
    return rows, clips


def reconstruction_set(loaded: Any, count: int) -> list[dict[str, Any]]:
    """The ceiling the VAE sets: held-out data clips (one shape) encoded and decoded, no generation.

    Whatever the detector cannot read here, no prompt can get right either.
    """
    from model.training.data import make_clip
    from model.training.vae import EVAL_SEED_BASE, reconstruct

    single = ClipConfig(two_shape_share=0.0)
    rows = []
    for i in range(count):
        clip = make_clip(EVAL_SEED_BASE + i, single, held_out=True)
        started = time.perf_counter()
        frames = reconstruct(loaded.pipe.vae, clip.frames, loaded.device)
        spec = clip.shapes[0]
        prompt = (spec.colour, spec.shape, spec.motion, clip.background)
        rows.append(
            {
                "prompt": clip.caption,
                "seed": i,
                "seconds": time.perf_counter() - started,
                **score(frames, prompt),
            }
        )
    return rows


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Shares of clips with each attribute right, all three right, consistent; seconds per clip."""
    if not rows:
        return {}
    share = {key: float(np.mean([r[key] for r in rows])) for key in ("all_ok", "colour_ok", "shape_ok")}
    share.update(
        motion_ok=float(np.mean([r["motion_ok"] for r in rows])),
        consistent=float(np.mean([r["consistent"] for r in rows])),
    )
    seconds = [r["seconds"] for r in rows]
    return {"clips": len(rows), **share, "seconds_mean": float(np.mean(seconds)), "seconds_max": max(seconds)}


def write_strip(path: Path, captions: Sequence[str], clips: Sequence[np.ndarray], scale: int = 2) -> None:
    """A PNG: one row per clip (every fourth frame, enlarged `scale` times) under its caption."""
    from PIL import Image, ImageDraw

    rows = []
    for caption, clip in zip(captions, clips, strict=True):
        strip = np.concatenate(list(clip[::4]), axis=1)
        image = Image.fromarray(strip).resize(
            (strip.shape[1] * scale, strip.shape[0] * scale), Image.Resampling.NEAREST
        )
        canvas = Image.new("RGB", (image.width, image.height + 16), (255, 255, 255))
        canvas.paste(image, (0, 16))
        ImageDraw.Draw(canvas).text((4, 2), caption, fill=(0, 0, 0))
        rows.append(np.asarray(canvas))
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(padded)).save(path, optimize=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", default="builtin:kinema-shapes", help="a model id or a pipeline folder")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per prompt (default 4)")
    parser.add_argument(
        "--prompts", type=int, default=16, help="prompts per set (default 16; 0: the VAE row alone)"
    )
    parser.add_argument("--size", type=int, default=64, help="width and height (default 64)")
    parser.add_argument("--frames", type=int, default=17, help="frames per clip (default 17: 2 s at 8 fps)")
    parser.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    parser.add_argument("--guidance", type=float, help="guidance scale (default: the model's)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--skip-image", action="store_true", help="leave out the image-to-video set")
    parser.add_argument(
        "--reconstructions",
        type=int,
        default=64,
        help="held-out data clips encoded and decoded by the VAE alone: the ceiling it sets (0: skip)",
    )
    parser.add_argument("--strip", type=Path, help="also write a PNG strip of a few generations here")
    parser.add_argument("--output", type=Path, default=RESULTS / "adherence.json", help="where the JSON goes")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from model.generate import default_cache_dir
    from model.pipeline import load_pipeline

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_pipeline(args.model, cache_dir=default_cache_dir(), device="cpu")
    args.steps = args.steps or loaded.spec.default_steps
    args.guidance = args.guidance if args.guidance is not None else loaded.spec.default_guidance
    machine = machine_info(("torch", "diffusers", "transformers", "numpy"))
    seeds = list(range(args.seeds))
    sets: dict[str, tuple[list[Prompt], bool]] = {}
    if args.prompts:  # none: the VAE reconstruction row alone (a VAE stage checked before its flow run)
        sets["held-out"] = (evaluation_prompts(held_out=True, count=args.prompts), False)
        sets["seen"] = (evaluation_prompts(held_out=False, count=args.prompts), False)
    if args.prompts and not args.skip_image:
        sets["image, held-out"] = (evaluation_prompts(held_out=True, count=args.prompts, seed=1), True)

    results: dict[str, Any] = {}
    strip_captions: list[str] = []
    strip_clips: list[np.ndarray] = []
    busy0, total0 = machine_busy()
    for name, (prompts, image) in sets.items():
        print(f"{name}: {len(prompts)} prompts x {len(seeds)} seeds ...", file=sys.stderr)
        rows, clips = run_set(loaded, prompts, seeds, args, image=image)
        results[name] = {"summary": summary(rows), "rows": rows}
        # The first seed of the first few prompts of each set.
        for row, clip in list(zip(rows, clips, strict=True))[:: len(seeds)][:3]:
            strip_captions.append(f"{row['prompt']} ({name}, seed {row['seed']})")
            strip_clips.append(clip)
    if args.reconstructions:
        print(f"vae reconstructions: {args.reconstructions} held-out clips ...", file=sys.stderr)
        rows = reconstruction_set(loaded, args.reconstructions)
        results["vae reconstruction"] = {"summary": summary(rows), "rows": rows}
    busy1, total1 = machine_busy()
    machine["machine_busy_share"] = (busy1 - busy0) / max(total1 - total0, 1e-9)
    machine["torch_threads"] = torch.get_num_threads()

    headers = ["set", "clips", "all 3", "colour", "shape", "motion", "consistent", "s/clip"]
    body = [
        [name, str(s["clips"])]
        + [f"{s[k]:.0%}" for k in ("all_ok", "colour_ok", "shape_ok", "motion_ok", "consistent")]
        + [f"{s['seconds_mean']:.2f}"]
        for name, s in ((name, r["summary"]) for name, r in results.items())
    ]
    print(
        f"\n{args.model}: {args.size}x{args.size}, {args.frames} frames, {args.steps} steps, "
        f"guidance {args.guidance}, seeds {seeds}; {machine['cpu_count']} x {machine['cpu_model']}, "
        f"{machine['torch_threads']} torch threads, machine {machine['machine_busy_share']:.0%} busy"
    )
    print(table(headers, body))
    if "held-out" in results:
        held_out = results["held-out"]["summary"]["all_ok"]
        verdict = "met" if held_out >= GOAL_HELD_OUT else "MISSED"
        print(f"goal held-out all-3 >= {GOAL_HELD_OUT:.0%}: {held_out:.0%} -> {verdict}")

    if args.strip and strip_clips:
        write_strip(args.strip, strip_captions, strip_clips)
        print(f"wrote {args.strip}")
    report = {
        "benchmark": "adherence",
        "machine": machine,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "goal_held_out_all": GOAL_HELD_OUT,
        "results": results,
        "loadavg_at_end": list(os.getloadavg()),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
