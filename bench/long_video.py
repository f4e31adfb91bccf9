"""Long-video benchmark: peak memory of a 60 s request on the built-in model, against single-pass clips.

Each row is one request run end to end in a fresh process (the model layer as the worker runs it:
`load_pipeline`, then `generate` streaming into `render_mp4` and a temporary MP4) at builtin:tiny-wan's
default size, frame rate, steps and guidance:

- `2 s`: a short single-pass clip (17 frames), the baseline;
- `20 s`: the longest single pass of the model (161 frames);
- `40 s` and `60 s` (321 and 481 frames): chained segments, the longest request last.

Per row: RSS once the model is loaded (and warmed up by a 1-frame generation), the peak RSS while the
request ran (the kernel's high-water mark, reset after the warm-up: /proc/self/clear_refs), their
difference, and the process's lifetime peak (`ru_maxrss`, loading included), with seconds and the MP4's
frames and duration as read back. Bounded memory means the 60 s row's peak is not above the 40 s row's.

    .venv/bin/python bench/long_video.py [--rows 2,20,40,60] [--quiet-wait 120]

Prints a table and writes bench/results/long_video.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from itertools import islice
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: find the bench package
from bench.machine import machine_info, table, wait_for_quiet  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PROMPT = "a red ball rolling across a wooden table"
SEED = 1234
MIB = 1 << 20


def _status_bytes(field: str) -> int:
    """A `kB` field of /proc/self/status (VmRSS, VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def run_one(duration_s: float, cache_dir: Path) -> dict[str, Any]:
    """In this process: load the model, warm up, then generate + encode one request; its figures."""
    import diffusers
    import transformers

    from model.config import GenerationRequest
    from model.export import probe_mp4, render_mp4
    from model.generate import generate
    from model.pipeline import load_pipeline
    from model.registry import TINY_WAN

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    spec = TINY_WAN
    fps = spec.default_fps
    loaded = load_pipeline(spec.id, cache_dir=cache_dir)
    warmup = GenerationRequest(
        prompt=PROMPT,
        width=64,
        height=64,
        num_frames=1,
        fps=fps,
        num_inference_steps=1,
        guidance_scale=spec.default_guidance,
        seed=SEED,
        model_id=spec.id,
    )
    for _ in generate(warmup, model=loaded):
        pass
    request = GenerationRequest(
        prompt=PROMPT,
        width=spec.default_width,
        height=spec.default_height,
        num_frames=spec.num_frames_for(duration_s, fps),
        fps=fps,
        num_inference_steps=spec.default_steps,
        guidance_scale=spec.default_guidance,
        seed=SEED,
        model_id=spec.id,
    )
    kept = round(duration_s * fps)
    rss_loaded = _status_bytes("VmRSS")
    reset = _reset_peak_rss()
    with tempfile.TemporaryDirectory(prefix="kinema-bench-long-") as tmp:
        path = Path(tmp) / "video.mp4"
        start = time.perf_counter()
        frames = generate(request, model=loaded)
        try:
            render_mp4(islice(frames, kept), path, fps=fps)
        finally:
            frames.close()
        seconds = time.perf_counter() - start
        probe = probe_mp4(path)
    peak = _status_bytes("VmHWM")
    return {
        "duration_s": duration_s,
        "frames_generated": request.num_frames,
        "single_pass": request.num_frames <= spec.max_frames_per_pass,
        "width": request.width,
        "height": request.height,
        "fps": fps,
        "num_inference_steps": request.num_inference_steps,
        "seconds": seconds,
        "rss_loaded_bytes": rss_loaded,
        "peak_rss_bytes": peak if reset else None,
        "peak_over_loaded_bytes": peak - rss_loaded if reset else None,
        "lifetime_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "mp4": {"frames": probe.frames, "duration_s": probe.duration, "bytes": probe.bytes},
    }


def run_row(duration_s: float, cache_dir: Path) -> dict[str, Any]:
    """`run_one` in a fresh Python process, so each row's peak is its own."""
    command = [sys.executable, __file__, "--one", str(duration_s), "--cache-dir", str(cache_dir)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {duration_s} s row failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:.0f}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", default="2,20,40,60", help="request durations in seconds, comma-separated")
    parser.add_argument(
        "--quiet-wait", type=float, default=120.0, help="wait at most S s for a quiet machine"
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "long_video.json")
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)  # a child process: one row
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.cache_dir)))
        return 0
    machine = machine_info(("torch", "diffusers", "transformers", "av", "numpy"))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kinema-bench-long-models-") as cache_dir:
        for duration in (float(d) for d in args.rows.split(",")):
            machine_busy = wait_for_quiet(args.quiet_wait)
            print(f"{duration:g} s request in a fresh process ...", file=sys.stderr)
            row = run_row(duration, Path(cache_dir))
            row["machine_busy_before"] = machine_busy
            rows.append(row)
    machine["loadavg_at_end"] = list(os.getloadavg())

    baseline = rows[0]
    print()
    print(
        f"builtin:tiny-wan at {baseline['width']}x{baseline['height']}, {baseline['fps']} fps, "
        f"{baseline['num_inference_steps']} steps; generate + render_mp4 in a fresh process per row; "
        f"{machine['cpu_count']} x {machine['cpu_model']}"
    )
    print(
        table(
            [
                "request",
                "frames",
                "passes",
                "seconds",
                "RSS loaded MiB",
                "peak RSS MiB",
                "peak - loaded MiB",
                "lifetime peak MiB",
                "MP4 frames",
                "MP4 s",
            ],
            [
                [
                    f"{row['duration_s']:g} s",
                    str(row["frames_generated"]),
                    "1" if row["single_pass"] else "chained",
                    f"{row['seconds']:.1f}",
                    mib(row["rss_loaded_bytes"]),
                    mib(row["peak_rss_bytes"]),
                    mib(row["peak_over_loaded_bytes"]),
                    mib(row["lifetime_peak_rss_bytes"]),
                    str(row["mp4"]["frames"]),
                    f"{row['mp4']['duration_s']:.2f}",
                ]
                for row in rows
            ],
        )
    )
    report = {
        "benchmark": "long_video",
        "machine": machine,
        "config": {"rows_s": args.rows, "prompt": PROMPT, "seed": SEED},
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
