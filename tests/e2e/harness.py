"""Running Kinema for real in tests: the `kinema` console script as API and worker processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

KINEMA = str(Path(sys.executable).with_name("kinema"))


def clean_env(overrides: dict[str, str]) -> dict[str, str]:
    """This process's environment without any KINEMA_* setting, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KINEMA_")}
    env.update(overrides)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def kinema(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `kinema ARGS` to completion."""
    return subprocess.run(
        [KINEMA, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def create_key(env: dict[str, str], name: str = "e2e") -> str:
    """A new API key, made with `kinema keys create`."""
    result = kinema(["keys", "create", "--name", name, "--json"], env)
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["key"])


@dataclass
class Process:
    """A child process in its own session, its output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is not None:
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def start(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Process:
    """Start `kinema ARGS` in the background."""
    log = log_dir / f"{name}.log"
    handle = log.open("wb")
    popen = subprocess.Popen(
        [KINEMA, *args], env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    return Process(name, popen, log)


@dataclass
class Service:
    """A running API (and the processes behind it) that tests talk to over HTTP."""

    base_url: str
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def logs(self) -> str:
        return "\n".join(f"----- {p.name} -----\n{p.output()[-6000:]}" for p in self.processes)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()


def wait_ready(base_url: str, processes: list[Process], timeout: float = 90) -> None:
    """Wait until GET /readyz answers 200, failing early if a process died."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        for process in processes:
            if process.popen.poll() is not None:
                raise AssertionError(
                    f"{process.name} exited with {process.popen.returncode}:\n{process.output()}"
                )
        try:
            response = httpx.get(f"{base_url}/readyz", timeout=5)
            if response.status_code == 200:
                return
            last = response.text
        except httpx.TransportError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise AssertionError(f"{base_url} not ready after {timeout} s: {last}")


@dataclass
class Finished:
    """A job's last state, and every (status, progress) seen while polling."""

    job: dict[str, Any]
    seen: list[tuple[str, int]]


def wait_for_job(
    client: httpx.Client,
    job_id: str,
    *,
    timeout: float = 180,
    interval: float = 0.05,
    on_poll: Callable[[dict[str, Any]], None] | None = None,
) -> Finished:
    """Poll GET /jobs/{id} until the job is finished."""
    deadline = time.monotonic() + timeout
    seen: list[tuple[str, int]] = []
    while time.monotonic() < deadline:
        response = client.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        seen.append((job["status"], job["progress"]))
        if on_poll is not None:
            on_poll(job)
        if job["status"] in ("succeeded", "failed", "canceled"):
            return Finished(job, seen)
        time.sleep(interval)
    raise AssertionError(f"job {job_id} not finished after {timeout} s; last seen {seen[-1:]}")


@dataclass(frozen=True)
class Probe:
    width: int
    height: int
    fps: float
    frames: int
    duration: float
    codec: str
    pix_fmt: str


def probe_mp4(path: Path) -> Probe:
    """What PyAV reads back from an MP4: the facts a user's player sees."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        duration = float(container.duration / 1_000_000) if container.duration else 0.0
        return Probe(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            fps=float(stream.average_rate or 0),
            frames=frames,
            duration=duration,
            codec=stream.codec_context.name,
            pix_fmt=str(stream.codec_context.pix_fmt),
        )
