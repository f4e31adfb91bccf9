"""The CLI's long waits, with progress bars on stderr: a job until it finishes, and a download.

A job is followed on its Server-Sent Events stream (`GET /jobs/{id}/events`): one event per step and
no polling. If the stream cannot be read (a proxy that buffers it, a dropped connection that does not
come back), the job is polled instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from app.api_client import ApiClient, CommandFailed, ExitCode, err

FINISHED = ("succeeded", "failed", "canceled")
# Reconnects to the event stream before falling back to polling.
STREAM_ATTEMPTS = 3
# The server sends a comment every 15 s: a longer silence means the stream is dead.
STREAM_READ_TIMEOUT_S = 45


def describe_progress(job: dict[str, Any]) -> str:
    """A short label for the bar: the status or phase, the step, the queue position."""
    if job["status"] in FINISHED:
        return str(job["status"])
    if job.get("cancel_requested_at"):
        return "canceling"
    if job["status"] == "queued":
        ahead = job.get("queue_position")
        return f"queued ({ahead} ahead)" if ahead is not None else "queued"
    if job.get("total_steps"):
        return f"{job['phase']} {job['step']}/{job['total_steps']}"
    return str(job["phase"])


def _eta(job: dict[str, Any]) -> str:
    seconds = job.get("eta_seconds")
    if seconds is None or job["status"] in FINISHED:
        return ""
    return f"ETA {seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"ETA {seconds}s"


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """`(event, data)` pairs from the lines of a `text/event-stream` body."""
    event = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)


def _stream(client: ApiClient, job_id: str, show: Callable[[dict[str, Any]], None]) -> dict[str, Any] | None:
    """The finished job from the event stream, or None if the stream ended or broke first."""
    timeout = httpx.Timeout(30, read=STREAM_READ_TIMEOUT_S)
    job: dict[str, Any] | None = None
    try:
        with client.stream(
            f"/jobs/{job_id}/events", headers={"Accept": "text/event-stream"}, timeout=timeout
        ) as response:
            for _, data in sse_events(response.iter_lines()):
                job = json.loads(data)
                show(job)
                if job["status"] in FINISHED:
                    return job
    except (httpx.HTTPError, json.JSONDecodeError):
        return None
    except CommandFailed as exc:
        # Not found or not allowed is final; an unreachable server may come back.
        if exc.exit_code != ExitCode.UNAVAILABLE:
            raise
    return None


def _poll(
    client: ApiClient, job_id: str, show: Callable[[dict[str, Any]], None], interval: float
) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = client.get(f"/jobs/{job_id}")
        show(job)
        if job["status"] in FINISHED:
            return job
        time.sleep(interval)


def follow(client: ApiClient, job: dict[str, Any], *, poll_interval: float = 0.5) -> dict[str, Any]:
    """Show the job's progress until it is finished, and return it as it finished."""
    columns = (
        TextColumn("{task.fields[job_id]}", style="dim"),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[eta]}"),
    )
    with Progress(*columns, console=err) as bar:
        task: TaskID = bar.add_task(describe_progress(job), total=100, job_id=job["id"], eta=_eta(job))

        def show(now: dict[str, Any]) -> None:
            done = 100 if now["status"] == "succeeded" else now["progress"]
            bar.update(task, completed=done, description=describe_progress(now), eta=_eta(now))

        show(job)
        if job["status"] in FINISHED:
            return job
        for _ in range(STREAM_ATTEMPTS):
            finished = _stream(client, job["id"], show)
            if finished is not None:
                return finished
            time.sleep(poll_interval)
        return _poll(client, job["id"], show, poll_interval)


def download(client: ApiClient, path: str, output: Path) -> int:
    """Download `path` to `output` with a byte progress bar; the file appears only when complete."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.part")
    written = 0
    try:
        with client.stream(path) as response:
            total = int(response.headers.get("content-length") or 0) or None
            columns = (
                TextColumn(f"{output.name}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
            )
            with Progress(*columns, console=err) as bar, tmp.open("wb") as out:
                task = bar.add_task("download", total=total)
                for chunk in response.iter_bytes(1024 * 1024):
                    out.write(chunk)
                    written += len(chunk)
                    bar.update(task, advance=len(chunk))
        tmp.replace(output)
    except httpx.HTTPError as exc:
        raise client.unreachable(exc) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return written
