"""Train Kinema's small Wan-format model from scratch: `python -m model.training.train --out DIR --seed N`.

Stages: the VAE on single frames, then on whole clips; the training clips encoded once to latents;
then the text encoder and transformer with flow matching. Each finished stage is kept in a work folder
(`--work`, default `DIR.work`) and a run started again resumes from it; during the last stage the
pipeline is written to `DIR` every `--checkpoint-every` steps, so a run stopped early still leaves a
usable model. `DIR` is a stock diffusers folder (fp16 safetensors): `WanPipeline.from_pretrained(DIR)`.
While the file `--pause-file` exists the run waits (checked at every step), so timing benchmarks on a
shared machine are not disturbed.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from diffusers.models.autoencoders.autoencoder_kl_wan import AutoencoderKLWan
from diffusers.pipelines.wan.pipeline_wan import WanPipeline
from diffusers.utils import logging as diffusers_logging

from model.training.components import (
    ModelSizes,
    build_scheduler,
    build_text_encoder,
    build_tokenizer,
    build_transformer,
    build_vae,
)
from model.training.data import ClipConfig
from model.training.flow import FlowTrainer, LatentSet, encode_clips, latent_statistics
from model.training.vae import EVAL_SEED_BASE, clip_batch, frame_batch, reconstruction_psnr, train_vae_stage
from model.training.warm import warm_start

logger = logging.getLogger("kinema.train")
DEFAULT_PAUSE_FILE = Path("/tmp/kinema-bench.lock")


@dataclass(frozen=True, slots=True)
class Schedule:
    """How long each stage trains, and on what."""

    vae_frame_steps: int = 1200
    vae_frame_batch: int = 16
    vae_clip_steps: int = 600
    vae_clip_batch: int = 3
    vae_lr: float = 1e-3
    clips: int = 6000  # training clips encoded for the flow stage
    steps: int = 20000
    batch: int = 32
    lr: float = 5e-4
    checkpoint_every: int = 500
    eval_clips: int = 16  # held-back clips for the VAE's reconstruction PSNR
    vae_minutes: float | None = None  # a cap on both VAE stages' time (frames 60%, clips 40%)
    data_workers: int = 0  # loader processes drawing clips (0: drawn in the training process)


# A few steps of everything at toy sizes: for tests and for checking the script end to end.
TINY_SIZES = ModelSizes(vae_base_dim=4, text_dim=16, text_layers=1, dim=32, head_dim=16, layers=1, ffn_dim=32)
TINY_SCHEDULE = Schedule(
    vae_frame_steps=2,
    vae_frame_batch=2,
    vae_clip_steps=1,
    vae_clip_batch=1,
    clips=4,
    steps=3,
    batch=2,
    checkpoint_every=2,
    eval_clips=1,
)
TINY_CLIPS = ClipConfig(width=32, height=32, num_frames=5, supersample=2)


def pick_device(name: str) -> torch.device:
    """`auto`: CUDA when present, else the CPU; anything else as torch names it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class Pauser:
    """Waits while the pause file exists; counts the seconds waited so timings can leave them out."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.paused_s = 0.0

    def __call__(self, *_: object) -> None:
        if self.path is None or not self.path.exists():
            return
        logger.info("paused while %s exists", self.path)
        started = time.monotonic()
        while self.path.exists():
            time.sleep(1.0)
        self.paused_s += time.monotonic() - started
        logger.info("resumed after %.0f s", time.monotonic() - started)


def save_pipeline(
    out: Path,
    *,
    tokenizer: Any,
    text_encoder: torch.nn.Module,
    vae: torch.nn.Module,
    transformer: torch.nn.Module,
    sizes: ModelSizes,
    report: dict[str, Any],
) -> None:
    """Write the pipeline (fp16 safetensors) and `training.json` to `out`, replacing it in one rename."""
    parts = {
        name: copy.deepcopy(m).to("cpu", torch.float16)
        for name, m in (("text_encoder", text_encoder), ("vae", vae), ("transformer", transformer))
    }
    pipe = WanPipeline(tokenizer=tokenizer, scheduler=build_scheduler(sizes), **parts)  # type: ignore[arg-type]
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    pipe.save_pretrained(partial, safe_serialization=True)
    (partial / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    # transformers 5 names the fast tokenizer class TokenizersBackend; 4.x knows only the old name (an alias).
    index_file = partial / "model_index.json"
    index = json.loads(index_file.read_text())
    index["tokenizer"] = ["transformers", "PreTrainedTokenizerFast"]
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    swap_in(partial, out)


def swap_in(partial: Path, target: Path) -> None:
    """Replace the folder `target` with the finished folder `partial`, a reader never seeing half of it."""
    for path in partial.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)  # safetensors writes 0600 files
    old = target.parent / f".{target.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.rename(target, old)
    os.rename(partial, target)
    shutil.rmtree(old, ignore_errors=True)


def train_vae(
    sizes: ModelSizes, schedule: Schedule, clips: ClipConfig, device: torch.device, seed: int, pause: Pauser
) -> tuple[AutoencoderKLWan, dict[str, Any]]:
    """Both VAE stages; returns the VAE (eval mode) and the stage's figures.

    Frames first, at the full learning rate; then short clips (9 frames: two temporal groups, each of
    the same shape as every later one) at a tenth of it, so the time axis is learnt without undoing
    the frames.
    """
    vae = build_vae(sizes)
    torch.nn.Module.to(vae, device)  # ModelMixin's `to` is typed for pipelines only
    figures: dict[str, Any] = {"device": str(device)}
    started = time.monotonic()
    eval_seeds = [EVAL_SEED_BASE + i for i in range(schedule.eval_clips)]
    short_clips = replace(clips, num_frames=min(clips.num_frames, 9))

    def log(stage: str, every: int) -> Any:
        every = max(1, min(every, 250))

        def hook(step: int, loss: float) -> None:
            pause()
            if step % every == 0:
                elapsed = time.monotonic() - started
                psnr = reconstruction_psnr(vae, eval_seeds[:4], clips, device)
                vae.train()
                logger.info(
                    "vae %s step %d loss %.4f psnr %.2f dB (%.0f s)", stage, step, loss, psnr, elapsed
                )

        return hook

    for stage, steps, batch, lr, make, config, share in (
        (
            "frames",
            schedule.vae_frame_steps,
            schedule.vae_frame_batch,
            schedule.vae_lr,
            frame_batch,
            clips,
            0.6,
        ),
        (
            "clips",
            schedule.vae_clip_steps,
            schedule.vae_clip_batch,
            schedule.vae_lr / 10,
            clip_batch,
            short_clips,
            0.4,
        ),
    ):
        pause_before = pause.paused_s
        stage_started = time.monotonic()
        deadline = stage_started + share * schedule.vae_minutes * 60 if schedule.vae_minutes else None
        losses = train_vae_stage(
            vae,
            steps=steps,
            batch=batch,
            lr=lr,
            make_batch=functools.partial(make, config=config),
            device=device,
            seed=seed + (0 if stage == "frames" else 1),
            on_step=log(stage, max(1, steps // 10)),
            workers=schedule.data_workers,
            deadline=deadline,
        )
        figures[f"{stage}_steps"] = len(losses)
        figures[f"{stage}_batch"] = batch
        figures[f"{stage}_s"] = time.monotonic() - stage_started - (pause.paused_s - pause_before)
        figures[f"{stage}_final_loss"] = sum(losses[-20:]) / max(1, len(losses[-20:]))
        figures[f"psnr_db_after_{stage}"] = reconstruction_psnr(vae, eval_seeds, clips, device)
        logger.info("vae %s done: psnr %.2f dB", stage, figures[f"psnr_db_after_{stage}"])
    figures["psnr_db"] = figures["psnr_db_after_clips"]
    half = copy.deepcopy(vae).half().float()  # as shipped: fp16 weights, computed in fp32
    figures["psnr_fp16_weights_db"] = reconstruction_psnr(half, eval_seeds, clips, device)
    logger.info("vae psnr %.2f dB (fp16 weights: %.2f)", figures["psnr_db"], figures["psnr_fp16_weights_db"])
    return vae, figures


def save_vae(path: Path, vae: AutoencoderKLWan, figures: dict[str, Any]) -> None:
    """Write the VAE's weights and figures to `path` in one rename (a flow run may be reading it)."""
    partial = path.with_suffix(".partial")
    torch.save({"state": vae.state_dict(), "figures": figures}, partial)
    os.replace(partial, path)


def load_vae(path: Path, vae: AutoencoderKLWan, device: torch.device) -> dict[str, Any]:
    """Load weights saved by `save_vae` into `vae`; returns their figures."""
    saved = torch.load(path, map_location=device)
    vae.load_state_dict(saved["state"])
    vae.eval()
    return dict(saved["figures"])


def finetune_decoder(
    vae: AutoencoderKLWan,
    vae_file: Path,
    *,
    steps: int,
    lr: float,
    deadline: float | None,
    schedule: Schedule,
    clips: ClipConfig,
    device: torch.device,
    seed: int,
    pause: Pauser,
    figures: dict[str, Any],
) -> None:
    """Train the decoder alone on short clips, saving to `vae_file` every 200 steps and at the end.

    The encoder is frozen, so the latents a flow run trains on stay valid: this can run beside one
    (a flow run picks the new decoder up at its next checkpoint), or after one (`ship_decoder`).
    Short clips (9 frames: a first frame and two groups of four) train every path a longer clip takes.
    """
    started, paused_before = time.monotonic(), pause.paused_s
    done, spent = int(figures.get("decoder_steps", 0)), float(figures.get("decoder_s", 0.0))
    figures.setdefault("psnr_db_before_decoder", figures.get("psnr_db"))
    eval_seeds = [EVAL_SEED_BASE + i for i in range(schedule.eval_clips)]

    def save(steps_now: int) -> None:
        figures["decoder_steps"] = done + steps_now
        figures["decoder_s"] = spent + time.monotonic() - started - (pause.paused_s - paused_before)
        figures["psnr_db"] = reconstruction_psnr(vae, eval_seeds, clips, device)
        save_vae(vae_file, vae, figures)
        logger.info("decoder: %d steps, psnr %.2f dB", figures["decoder_steps"], figures["psnr_db"])

    def hook(step: int, loss: float) -> None:
        pause()
        if step % 25 == 0:
            logger.info("decoder step %d loss %.4f", done + step, loss)
        if (step + 1) % 200 == 0:
            save(step + 1)
            vae.train()

    losses = train_vae_stage(
        vae,
        steps=steps,
        batch=schedule.vae_clip_batch,
        lr=lr,
        make_batch=functools.partial(clip_batch, config=replace(clips, num_frames=min(clips.num_frames, 9))),
        device=device,
        seed=seed + 2 + done,
        decoder_only=True,
        on_step=hook,
        workers=schedule.data_workers,
        deadline=deadline,
    )
    save(len(losses))


def ship_decoder(out: Path, vae: AutoencoderKLWan, figures: dict[str, Any]) -> None:
    """Put `vae`'s weights (fp16) into the pipeline at `out`, keeping its latent statistics."""
    shipped = AutoencoderKLWan.from_pretrained(out / "vae", dtype=torch.float32)
    shipped.load_state_dict({k: v.to("cpu") for k, v in vae.state_dict().items()})
    partial = out / ".vae.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shipped.to(torch.float16).save_pretrained(partial, safe_serialization=True)
    swap_in(partial, out / "vae")
    report_file = out / "training.json"
    if report_file.is_file():
        report = json.loads(report_file.read_text())
        report["vae"] = figures
        report_file.write_text(json.dumps(report, indent=2) + "\n")
    logger.info("decoder shipped in %s", out / "vae")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = Schedule()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, required=True, help="the pipeline folder to write")
    parser.add_argument("--work", type=Path, help="stage results for resuming (default: OUT.work)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1 ...")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes and a few steps (tests)")
    parser.add_argument(
        "--vae-spatial",
        type=int,
        choices=(4, 8),
        help="the VAE's spatial compression (default 4; the shipped checkpoint's is 8)",
    )
    parser.add_argument("--pause-file", type=Path, default=DEFAULT_PAUSE_FILE)
    int_options = (
        "vae_frame_steps",
        "vae_frame_batch",
        "vae_clip_steps",
        "vae_clip_batch",
        "clips",
        "steps",
        "batch",
        "checkpoint_every",
    )
    for name in int_options:
        flag = f"--{name.replace('_', '-')}"
        parser.add_argument(flag, type=int, help=f"default {getattr(defaults, name)}")
    parser.add_argument("--lr", type=float, help=f"transformer learning rate, default {defaults.lr}")
    parser.add_argument("--vae-minutes", type=float, help="stop the VAE stages after this long (frames 60%%)")
    parser.add_argument(
        "--data-workers",
        type=int,
        help="processes drawing training clips (default: 0 on the CPU, up to 12 beside a GPU)",
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        help="start the flow stage from this pipeline's text encoder and transformer (its VAE may differ)",
    )
    parser.add_argument("--max-hours", type=float, help="stop the flow stage (with a checkpoint) after this")
    parser.add_argument(
        "--decoder-steps",
        type=int,
        help="only fine-tune the trained VAE's decoder on clips, this many steps (may run beside a flow run)",
    )
    parser.add_argument("--decoder-lr", type=float, help="decoder fine-tune learning rate (default VAE's/10)")
    parser.add_argument("--decoder-minutes", type=float, help="stop the decoder fine-tune after this long")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    diffusers_logging.set_verbosity_error()  # the fp16 cast warns about fp32 layers; loading restores them
    args = parse_args(argv)
    sizes, schedule, clips = (
        (TINY_SIZES, TINY_SCHEDULE, TINY_CLIPS) if args.tiny else (ModelSizes(), Schedule(), ClipConfig())
    )
    options = (
        "vae_frame_steps",
        "vae_frame_batch",
        "vae_clip_steps",
        "vae_clip_batch",
        "clips",
        "steps",
        "batch",
        "checkpoint_every",
        "lr",
        "vae_minutes",
        "data_workers",
    )
    overrides = {k: getattr(args, k) for k in options if getattr(args, k) is not None}
    device = pick_device(args.device)
    if device.type == "cuda":
        overrides.setdefault("data_workers", max(0, min(12, (os.cpu_count() or 1) - 2)))
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True  # the shapes never change
    schedule = replace(schedule, **overrides)
    if args.vae_spatial:
        sizes = replace(sizes, vae_spatial=args.vae_spatial)
    if args.threads:
        torch.set_num_threads(args.threads)
    out: Path = args.out
    work: Path = args.work or out.with_name(out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    pause = Pauser(args.pause_file)
    torch.manual_seed(args.seed)
    report: dict[str, Any] = {
        "seed": args.seed,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "sizes": sizes.as_dict(),
        "schedule": asdict(schedule),
        "clips": asdict(clips),
    }

    vae_file = work / "vae.pt"
    vae = build_vae(sizes)
    torch.nn.Module.to(vae, device)  # ModelMixin's `to` is typed for pipelines only
    if vae_file.is_file():
        report["vae"] = load_vae(vae_file, vae, device)
        logger.info("vae: resumed from %s", vae_file)
    else:
        vae, report["vae"] = train_vae(sizes, schedule, clips, device, args.seed, pause)
        save_vae(vae_file, vae, report["vae"])
    if args.decoder_steps:
        finetune_decoder(
            vae,
            vae_file,
            steps=args.decoder_steps,
            lr=args.decoder_lr or schedule.vae_lr / 10,
            deadline=time.monotonic() + args.decoder_minutes * 60 if args.decoder_minutes else None,
            schedule=schedule,
            clips=clips,
            device=device,
            seed=args.seed,
            pause=pause,
            figures=report["vae"],
        )
        if (out / "model_index.json").is_file():
            ship_decoder(out, vae, report["vae"])
        return 0
    data = load_or_encode(work, vae, schedule, clips, device, args.seed, pause, report)
    run_flow(args, out, work, vae, data, sizes, schedule, clips, device, pause, report)
    return 0


def load_or_encode(
    work: Path,
    vae: AutoencoderKLWan,
    schedule: Schedule,
    clips: ClipConfig,
    device: torch.device,
    seed: int,
    pause: Pauser,
    report: dict[str, Any],
) -> LatentSet:
    """The training clips' latents: from the work folder, or encoded now (and kept there)."""
    latents_file = work / "latents.pt"
    if latents_file.is_file():
        report["encode_s"] = json.loads((work / "encode.json").read_text())["encode_s"]
        data: LatentSet = torch.load(latents_file, weights_only=False)
        return data
    started = time.monotonic()
    paused_before = pause.paused_s
    seeds = [seed * 1_000_003 % EVAL_SEED_BASE + i for i in range(schedule.clips)]

    logged = 0

    def encoded(done: int) -> None:
        nonlocal logged
        pause()
        if done - logged >= 1000 or done == len(seeds):
            logged = done
            logger.info("encoded %d/%d clips (%.0f s)", done, len(seeds), time.monotonic() - started)

    batch = 64 if device.type == "cuda" else 8
    data = encode_clips(
        vae, seeds, clips, device, batch=batch, on_batch=encoded, workers=schedule.data_workers
    )
    report["encode_s"] = time.monotonic() - started - (pause.paused_s - paused_before)
    torch.save(data, latents_file)
    (work / "encode.json").write_text(json.dumps({"encode_s": report["encode_s"]}))
    return data


def run_flow(
    args: argparse.Namespace,
    out: Path,
    work: Path,
    vae: AutoencoderKLWan,
    data: LatentSet,
    sizes: ModelSizes,
    schedule: Schedule,
    clips: ClipConfig,
    device: torch.device,
    pause: Pauser,
    report: dict[str, Any],
) -> None:
    """The flow stage: train (or resume), writing the pipeline to `out` at every checkpoint."""
    mean, std = latent_statistics(data.latents)
    vae.register_to_config(latents_mean=mean, latents_std=std)
    tokenizer = build_tokenizer()
    transformer, text_encoder = build_transformer(sizes), build_text_encoder(sizes, len(tokenizer))
    flow_file, warm_file = work / "flow.pt", work / "warm.json"
    if flow_file.is_file():
        if warm_file.is_file():  # the run this resumes started from another pipeline
            report["warm_start"] = json.loads(warm_file.read_text())
    elif not args.init_from:
        warm_file.unlink(missing_ok=True)  # a new flow stage from random weights
    else:
        report["warm_start"] = asdict(
            warm_start(
                args.init_from,
                transformer=transformer,
                text_encoder=text_encoder,
                tokenizer=tokenizer,
                vae=vae,
                data=data,
                clips=clips,
                device=device,
                seed=args.seed,
                shift=sizes.shift,
            )
        )
        warm_file.write_text(json.dumps(report["warm_start"]))
    trainer = FlowTrainer(
        transformer=transformer,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        data=data,
        mean=torch.tensor(mean).view(1, -1, 1, 1, 1),
        std=torch.tensor(std).view(1, -1, 1, 1, 1),
        shift=sizes.shift,
        lr=schedule.lr,
        device=device,
        seed=args.seed,
    )
    vae_file = work / "vae.pt"
    vae_mtime = vae_file.stat().st_mtime
    flow_s = 0.0
    if flow_file.is_file():
        state = torch.load(flow_file, map_location=device, weights_only=False)
        trainer.load_state_dict(state)
        flow_s = float(state.get("flow_s", 0.0))
        logger.info("flow: resumed at step %d", trainer.step)
    losses: list[float] = []

    def checkpoint() -> None:
        nonlocal vae_mtime
        if vae_file.stat().st_mtime != vae_mtime:  # a decoder fine-tune beside this run saved a new one
            vae_mtime = vae_file.stat().st_mtime
            report["vae"] = load_vae(vae_file, vae, device)
            logger.info("picked up the VAE saved at %s", time.ctime(vae_mtime))
        recent = losses[-50:]
        report["flow"] = {
            "steps": trainer.step,
            "flow_s": flow_s,
            "recent_loss": sum(recent) / max(1, len(recent)),
        }
        torch.save({**trainer.state_dict(), "flow_s": flow_s}, flow_file)
        save_pipeline(
            out,
            tokenizer=tokenizer,
            text_encoder=trainer.ema_text_encoder.shadow,
            vae=vae,
            transformer=trainer.ema_transformer.shadow,
            sizes=sizes,
            report=report,
        )
        logger.info("checkpoint at step %d -> %s", trainer.step, out)

    budget_s = args.max_hours * 3600 if args.max_hours else None
    deadline = time.monotonic() + budget_s if budget_s else None
    run_s = 0.0  # this run's training time (flow_s also counts the runs it resumed)
    while trainer.step < schedule.steps:
        pause()
        last = time.monotonic()
        trainer.done = trainer.step / schedule.steps
        if budget_s:  # a time-capped run decays over its time (a resumed run restarts its own decay)
            trainer.done = max(trainer.done, run_s / budget_s)
        losses.append(trainer.train_step(schedule.batch))
        flow_s += time.monotonic() - last
        run_s += time.monotonic() - last
        if trainer.step % 50 == 0 or trainer.step == schedule.steps:
            recent_loss = sum(losses[-50:]) / len(losses[-50:])
            per_step = run_s / len(losses)
            logger.info("flow step %d loss %.4f (%.2f s/step)", trainer.step, recent_loss, per_step)
        if trainer.step % schedule.checkpoint_every == 0:
            checkpoint()
        if deadline is not None and time.monotonic() > deadline:
            logger.info("--max-hours reached at step %d", trainer.step)
            break
    checkpoint()


if __name__ == "__main__":
    raise SystemExit(main())
