"""`kinema generate` and `kinema jobs list|show|wait|cancel|download`: the jobs API from a shell."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from app.api_client import (
    DEFAULT_BASE_URL,
    ApiClient,
    ApiKeyOption,
    BaseUrlOption,
    CommandFailed,
    ExitCode,
    JsonOption,
    err,
    print_json,
    reporting,
)
from app.jobs.watch import FINISHED, download, follow

jobs_cli = typer.Typer(
    help="Your jobs: list, show, wait for, cancel and download them.", no_args_is_help=True
)
out = Console()

PollOption = Annotated[
    float, typer.Option(help="Seconds between polls, when the event stream is not usable.")
]


@dataclass
class Submission:
    """One POST: its path, and its fields as JSON or, with a local file, as a multipart form."""

    path: str
    fields: dict[str, Any]
    file: tuple[str, Path] | None = None  # (form field, local file)

    def send(self, client: ApiClient) -> dict[str, Any]:
        if self.file is None:
            return dict(client.post(self.path, expect=(202,), json=self.fields))
        name, path = self.file
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        data = {key: str(value) for key, value in self.fields.items()}
        with path.open("rb") as handle:
            return dict(
                client.post(
                    self.path, expect=(202,), data=data, files={name: (path.name, handle, media_type)}
                )
            )


def _usage(message: str) -> CommandFailed:
    return CommandFailed(message, ExitCode.USAGE)


def _is_url(value: str) -> bool:
    return value.lower().startswith(("http://", "https://"))


def _source(option: str, value: str) -> tuple[str, Path] | str:
    """An http(s) URL as it is, or a local file that must exist."""
    if _is_url(value):
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise _usage(f"{option}: no file {value!r} (give a file or an http(s) URL).")
    return option.removeprefix("--"), path


def build_submission(
    prompt: str,
    *,
    options: dict[str, Any],
    image: str | None,
    video: str | None,
    extend: str | None,
    remix: str | None,
    strength: float | None,
) -> Submission:
    """The request `kinema generate` sends for its options; conflicting options are a usage error."""
    given = [name for name, value in (("--image", image), ("--video", video), ("--extend", extend),
                                      ("--remix", remix)) if value]  # fmt: skip
    if len(given) > 1:
        raise _usage(f"Use one of --image, --video, --extend and --remix, not {' and '.join(given)}.")
    if strength is not None and not (video or remix):
        raise _usage("--strength goes with --video or --remix.")
    common = (
        "seed", "num_inference_steps", "guidance_scale", "negative_prompt", "webhook_url", "audio",
        "audio_prompt",
    )  # fmt: skip
    fields: dict[str, Any] = {"prompt": prompt}
    fields.update({name: options[name] for name in common if options.get(name) is not None})
    if extend or remix:
        fixed = [
            name for name in ("resolution", "aspect_ratio", "fps", "model") if options.get(name) is not None
        ]
        if fixed:
            names = ", ".join("--" + ("size" if n == "resolution" else n.replace("_", "-")) for n in fixed)
            raise _usage(f"{names}: an extension or remix keeps its source's size, frame rate and model.")
        if extend:
            if options.get("duration") is not None:
                fields["duration"] = options["duration"]
            return Submission(f"/jobs/{extend}/extend", fields)
        if options.get("duration") is not None:
            raise _usage("--duration: a remix keeps its source's length.")
        if strength is not None:
            fields["strength"] = strength
        return Submission(f"/jobs/{remix}/remix", fields)
    own = ("duration", "resolution", "aspect_ratio", "fps", "model")
    fields.update({name: options[name] for name in own if options.get(name) is not None})
    if strength is not None:
        fields["strength"] = strength
    for option, value in (("--image", image), ("--video", video)):
        if value:
            source = _source(option, value)
            if isinstance(source, str):
                fields[f"{option.removeprefix('--')}_url"] = source
            else:
                return Submission("/generate", fields, file=source)
    return Submission("/generate", fields)


def generate(
    prompt: Annotated[str, typer.Argument(help="What the video shows.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the MP4.")] = Path("out.mp4"),
    duration: Annotated[
        float | None, typer.Option(help="Seconds (with --extend: seconds to add). Default: the server's, 4.")
    ] = None,
    size: Annotated[
        str | None, typer.Option("--size", "--resolution", help="480p, 720p, 1080p or WxH, e.g. 832x480.")
    ] = None,
    aspect_ratio: Annotated[
        str | None, typer.Option(help="With a preset size: 16:9, 9:16, 1:1, 4:3 or 3:4.")
    ] = None,
    fps: Annotated[int | None, typer.Option(help="Frames per second.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (the job reports the one it used).")] = None,
    steps: Annotated[int | None, typer.Option(help="Denoising steps.")] = None,
    guidance_scale: Annotated[float | None, typer.Option(help="Classifier-free guidance.")] = None,
    negative_prompt: Annotated[str | None, typer.Option(help="What the video should not show.")] = None,
    model: Annotated[str | None, typer.Option(help="Model id. Default: the deployment's.")] = None,
    image: Annotated[
        str | None, typer.Option(help="Image to video: the first frame, a file or an http(s) URL.")
    ] = None,
    video: Annotated[
        str | None, typer.Option(help="Edit this video (a file or an http(s) URL) to match the prompt.")
    ] = None,
    extend: Annotated[
        str | None, typer.Option(metavar="JOB_ID", help="Continue this finished job's video.")
    ] = None,
    remix: Annotated[
        str | None, typer.Option(metavar="JOB_ID", help="Remake this finished job's video with the prompt.")
    ] = None,
    strength: Annotated[
        float | None, typer.Option(help="With --video or --remix: how much of the source changes, 0-1.")
    ] = None,
    webhook_url: Annotated[str | None, typer.Option(help="Receives the job's webhook events.")] = None,
    audio: Annotated[
        bool, typer.Option("--audio", help="Add a soundtrack made from the prompt (AAC in the MP4).")
    ] = False,
    audio_prompt: Annotated[
        str | None, typer.Option(help="What the soundtrack sounds like (implies --audio).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait and download; --no-wait prints the queued job.")
    ] = True,
    as_json: JsonOption = False,
    base_url: BaseUrlOption = DEFAULT_BASE_URL,
    api_key: ApiKeyOption = "",
    poll_interval: PollOption = 0.5,
) -> None:
    """Submit a job, show its progress, and download the MP4 (exit 1 if the job fails or is canceled)."""
    options = {
        "duration": duration, "resolution": size, "aspect_ratio": aspect_ratio, "fps": fps, "seed": seed,
        "num_inference_steps": steps, "guidance_scale": guidance_scale, "negative_prompt": negative_prompt,
        "model": model, "webhook_url": webhook_url, "audio": audio or None, "audio_prompt": audio_prompt,
    }  # fmt: skip
    with reporting():
        submission = build_submission(
            prompt, options=options, image=image, video=video, extend=extend, remix=remix, strength=strength
        )
        with ApiClient(base_url, api_key) as client:
            job = submission.send(client)
            err.print(f"job {job['id']} queued ({job.get('kind', 'text')})")
            if not wait:
                if as_json:
                    print_json(job)
                else:
                    typer.echo(job["id"])
                return
            job = follow(client, job, poll_interval=poll_interval)
            _finished_or_fail(job, as_json)
            download(client, f"/jobs/{job['id']}/video", output)
    if as_json:
        print_json(job)
        return
    result = job["output"]
    sound = f", {result['audio_codec']} audio" if result.get("audio") else ""
    typer.echo(
        f"{output} ({result['width']}x{result['height']}, {result['frames']} frames at {result['fps']} fps"
        f"{sound}, {result['bytes']} bytes)"
    )


def _finished_or_fail(job: dict[str, Any], as_json: bool) -> None:
    """Nothing if the job succeeded; else its JSON (if asked) and a CommandFailed with exit code 1."""
    if job["status"] == "succeeded":
        return
    if as_json:
        print_json(job)
    error = job.get("error") or {}
    detail = f": {error.get('code')}: {error.get('message')}" if error else ""
    raise CommandFailed(f"Job {job['id']} {job['status']}{detail}", ExitCode.JOB_FAILED)


def _when(value: str | None) -> str:
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@jobs_cli.command("list")
def list_jobs(
    status: Annotated[
        str | None, typer.Option(help="Only jobs in this status: queued, in_progress, succeeded, ...")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many jobs, newest first.")] = 20,
    as_json: JsonOption = False,
    base_url: BaseUrlOption = DEFAULT_BASE_URL,
    api_key: ApiKeyOption = "",
) -> None:
    """Your jobs, newest first (--json: a JSON array of job objects)."""
    jobs: list[dict[str, Any]] = []
    with reporting(), ApiClient(base_url, api_key) as client:
        after: str | None = None
        while len(jobs) < limit:
            params: dict[str, Any] = {"limit": min(100, limit - len(jobs))}
            if status:
                params["status"] = status
            if after:
                params["after"] = after
            page = client.get("/jobs", params=params)
            jobs.extend(page["data"])
            after = page.get("next_cursor")
            if not page.get("has_more") or not after:
                break
    if as_json:
        print_json(jobs)
        return
    table = Table("id", "status", "kind", "progress", "size", "length", "created", "prompt")
    for job in jobs:
        p = job["parameters"]
        table.add_row(
            job["id"],
            job["status"],
            job.get("kind", "text"),
            f"{100 if job['status'] == 'succeeded' else job['progress']}%",
            f"{p['width']}x{p['height']}",
            f"{p['duration']:g} s",
            _when(job["created_at"]),
            _short(p["prompt"], 40),
        )
    out.print(table if jobs else "no jobs")


@jobs_cli.command("show")
def show(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    as_json: JsonOption = False,
    base_url: BaseUrlOption = DEFAULT_BASE_URL,
    api_key: ApiKeyOption = "",
) -> None:
    """One job: status, progress, parameters, output or error."""
    with reporting(), ApiClient(base_url, api_key) as client:
        job = client.get(f"/jobs/{job_id}")
    if as_json:
        print_json(job)
        return
    out.print(describe_job(job))


def describe_job(job: dict[str, Any]) -> Table:
    """A two-column table of what a person wants to know about a job."""
    p = job["parameters"]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows: list[tuple[str, Any]] = [
        ("id", job["id"]),
        ("status", job["status"] + (" (cancel requested)" if job.get("cancel_requested_at") else "")),
        (
            "phase",
            f"{job['phase']} {job['step']}/{job['total_steps']}" if job["total_steps"] else job["phase"],
        ),
        ("progress", f"{100 if job['status'] == 'succeeded' else job['progress']}%"),
        ("queue position", job.get("queue_position")),
        ("eta", f"{job['eta_seconds']} s" if job.get("eta_seconds") is not None else None),
        ("kind", job.get("kind")),
        ("parent", job.get("parent_id")),
        ("model", job["model"]),
        ("prompt", p["prompt"]),
        ("negative prompt", p.get("negative_prompt") or None),
        (
            "size",
            f"{p['width']}x{p['height']} at {p['fps']} fps, {p['num_frames']} frames, {p['duration']:g} s",
        ),
        ("seed", p["seed"]),
        ("steps", p["num_inference_steps"]),
        ("guidance", p["guidance_scale"]),
        ("created", _when(job["created_at"])),
        ("started", _when(job.get("started_at")) or None),
        ("finished", _when(job.get("finished_at")) or None),
    ]
    if job.get("error"):
        rows.append(("error", f"{job['error']['code']}: {job['error']['message']}"))
    if job.get("output"):
        o = job["output"]
        rows += [
            ("video", f"{o['width']}x{o['height']}, {o['frames']} frames, {o['bytes']} bytes"),
            ("sha256", o["sha256"]),
            ("video url", o["video_url"]),
        ]
    for name, value in rows:
        if value is not None and value != "":
            table.add_row(name, str(value))
    return table


@jobs_cli.command("wait")
def wait_for(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    as_json: JsonOption = False,
    base_url: BaseUrlOption = DEFAULT_BASE_URL,
    api_key: ApiKeyOption = "",
    poll_interval: PollOption = 0.5,
) -> None:
    """Show a job's progress until it finishes; exit 0 if it succeeded, 1 if it failed or was canceled."""
    with reporting(), ApiClient(base_url, api_key) as client:
        job = follow(client, client.get(f"/jobs/{job_id}"), poll_interval=poll_interval)
        _finished_or_fail(job, as_json)
    if as_json:
        print_json(job)
    else:
        typer.echo(f"{job['id']} {job['status']}")


@jobs_cli.command("cancel")
def cancel(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Wait until the job has stopped (a running one stops at its next step)."),
    ] = False,
    as_json: JsonOption = False,
    base_url: BaseUrlOption = DEFAULT_BASE_URL,
    api_key: ApiKeyOption = "",
    poll_interval: PollOption = 0.5,
) -> None:
    """Cancel a queued or running job (exit 1 if it had already finished)."""
    with reporting(), ApiClient(base_url, api_key) as client:
        job = client.post(f"/jobs/{job_id}/cancel")
        if wait and job["status"] not in FINISHED:
            job = follow(client, job, poll_interval=poll_interval)
        if wait and job["status"] != "canceled":
            if as_json:
                print_json(job)
            raise CommandFailed(
                f"Job {job_id} {job['status']} before the cancel took effect.", ExitCode.JOB_FAILED
            )
    if as_json:
        print_json(job)
    elif job["status"] == "canceled":
        typer.echo(f"{job['id']} canceled")
    else:
        typer.echo(f"{job['id']} cancel requested (it stops at its next step)")


@jobs_cli.command("download")
def download_job(
    job_id: Annotated[str, typer.Argument(help="The job's id.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write it. Default: <id>.mp4 (or .jpg).")
    ] = None,
    thumbnail: Annotated[
        bool, typer.Option("--thumbnail", help="The JPEG thumbnail instead of the MP4.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait for a job still running (--no-wait: exit 1).")
    ] = True,
    base_url: BaseUrlOption = DEFAULT_BASE_URL,
    api_key: ApiKeyOption = "",
    poll_interval: PollOption = 0.5,
) -> None:
    """Download a finished job's MP4 (or thumbnail), waiting for it first if it is still running."""
    variant = "thumbnail" if thumbnail else "video"
    target = output or Path(f"{job_id}.{'jpg' if thumbnail else 'mp4'}")
    with reporting(), ApiClient(base_url, api_key) as client:
        job = client.get(f"/jobs/{job_id}")
        if job["status"] not in FINISHED and wait:
            job = follow(client, job, poll_interval=poll_interval)
        if job["status"] not in FINISHED:
            raise CommandFailed(
                f"Job {job_id} is {job['status']}: its video is not ready.", ExitCode.JOB_FAILED
            )
        _finished_or_fail(job, as_json=False)
        size = download(client, f"/jobs/{job_id}/{variant}", target)
    typer.echo(f"{target} ({size} bytes)")
