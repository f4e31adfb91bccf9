"""A deployment for fault tests: the API, generation workers and a webhook worker running beat (the
sweepers), as `kinema` processes on the test's own Redis, S3 endpoint and database."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
from psycopg.rows import dict_row

from tests.conftest import free_port
from tests.e2e.harness import Process, clean_env, start, wait_ready
from tests.faults.servers import FaultProxy, RedisServer

T = TypeVar("T")

# Five frames at 64x64 in 12 steps: quick, yet denoising long enough for a test polling every 20 ms to hit.
JOB = {"prompt": "a red ball", "duration": 1, "resolution": "64x64", "fps": 4, "num_inference_steps": 12}

# What every fault deployment runs with: a short lease, sweeps every second, quick webhook retries.
SETTINGS = {
    # The fast random-weight model (the shipped default, builtin:kinema-shapes, refuses 256x256).
    "KINEMA_MODEL_ID": "builtin:tiny-wan",
    "KINEMA_JOB_LEASE_S": "3",
    "KINEMA_JOB_SWEEP_INTERVAL_S": "1",
    "KINEMA_JOB_REDISPATCH_AFTER_S": "2",
    "KINEMA_DEFAULT_RATE_LIMIT_RPM": "0",
    "KINEMA_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true",
    "KINEMA_WEBHOOK_RETRY_SCHEDULE_S": "0.2,0.2,0.2",
    "KINEMA_WEBHOOK_SWEEP_INTERVAL_S": "1",
    "KINEMA_WEBHOOK_REDISPATCH_AFTER_S": "2",
    "KINEMA_STORAGE_BACKEND": "s3",
    "KINEMA_S3_ACCESS_KEY_ID": "testing",
    "KINEMA_S3_SECRET_ACCESS_KEY": "testing",
    "KINEMA_S3_MAX_ATTEMPTS": "1",
    "KINEMA_STORAGE_RETRY_ATTEMPTS": "4",
    "KINEMA_STORAGE_RETRY_BACKOFF_S": "0.5",
    "KINEMA_STORAGE_RETRY_DEADLINE_S": "30",
    "KINEMA_DB_RETRY_DEADLINE_S": "20",
}


def wait_until(check: Callable[[], T | None], *, timeout: float, interval: float = 0.05, what: str = "") -> T:
    """Poll `check` until it returns something other than None (or False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value is not None and value is not False:
            return value
        time.sleep(interval)
    raise AssertionError(f"not after {timeout} s: {what}")


@dataclass
class Deployment:
    """Processes by name (a restarted one gets a new name: `gpu-a`, `gpu-a.2`, ...), logs in `log_dir`."""

    env: dict[str, str]
    log_dir: Path
    processes: dict[str, Process] = field(default_factory=dict)
    base_url: str = ""

    @classmethod
    def create(
        cls, *, database_url: str, redis_url: str, s3_url: str, home: Path, model_cache: Path, **settings: str
    ) -> Deployment:
        env = clean_env(
            {
                **SETTINGS,
                "KINEMA_HOME": str(home),
                "KINEMA_DATABASE_URL": database_url,
                "KINEMA_BROKER_URL": redis_url,
                "KINEMA_REDIS_URL": redis_url,
                "KINEMA_S3_ENDPOINT_URL": s3_url,
                "KINEMA_S3_BUCKET": f"faults-{home.name.lower()}"[:60],
                "KINEMA_MODEL_CACHE_DIR": str(model_cache),
                **settings,
            }
        )
        log_dir = home / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        return cls(env=env, log_dir=log_dir)

    def start(self, name: str, args: list[str], **env: str) -> Process:
        """Start `kinema ARGS` as `name` (or `name.N` when restarted)."""
        label, n = name, 1
        while label in self.processes:
            n += 1
            label = f"{name}.{n}"
        process = start(label, args, {**self.env, **env}, self.log_dir)
        self.processes[label] = process
        return process

    def gpu_worker(self, name: str, **env: str) -> Process:
        """A generation worker: prefork, one pool process (the production shape)."""
        return self.start(name, ["worker", "--queues", "generate", "--concurrency", "1"], **env)

    def beat_worker(self) -> Process:
        """The webhook worker with beat: it runs the job and webhook sweepers."""
        return self.start("webhooks", ["worker", "--queues", "webhooks", "--concurrency", "2", "--beat"])

    def api(self) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        api = self.start("api", ["serve", "--port", str(port), "--log-level", "warning"])
        wait_ready(self.base_url, [api])

    def new_key(self, name: str) -> str:
        """A new API key (through the service, on the deployment's database)."""
        from sqlalchemy.orm import Session

        from app.api_keys import service
        from app.db import make_engine

        engine = make_engine(self.env["KINEMA_DATABASE_URL"])
        try:
            with Session(engine) as session:
                return service.create_key(session, name).key
        finally:
            engine.dispose()

    def client(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def live(self) -> list[Process]:
        return [p for p in self.processes.values() if p.popen.poll() is None]

    def kill(self, process: Process) -> None:
        """SIGKILL the process and everything it started (a host that dies)."""
        if process.popen.poll() is None:
            os.killpg(process.popen.pid, signal.SIGKILL)
            process.popen.wait()

    def owner_of(self, pid: int) -> Process:
        """The started process whose group `pid` (e.g. a Celery pool process) belongs to."""
        group = os.getpgid(pid)
        return next(p for p in self.live() if p.popen.pid == group)

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop(timeout=10)

    def logs(self, prefix: str = "") -> str:
        """Every process's log whose name starts with `prefix`, whole."""
        return "\n".join(
            f"----- {name} -----\n{p.output()}"
            for name, p in self.processes.items()
            if name.startswith(prefix)
        )

    def tail(self) -> str:
        """The end of each log, for assertion messages."""
        return "\n".join(f"----- {name} -----\n{p.output()[-3000:]}" for name, p in self.processes.items())

    def query(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        """Rows from the deployment's database, on a connection of the test's own."""
        url = self.env["KINEMA_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            return list(conn.execute(sql, params).fetchall())

    def execute(self, sql: str, *params: Any) -> None:
        """A statement on the deployment's database (no rows back)."""
        url = self.env["KINEMA_DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql, params)

    def job(self, job_id: str) -> dict[str, Any]:
        [row] = self.query("SELECT * FROM jobs WHERE id = %s", job_id)
        return row

    def events(self, job_id: str, event_type: str) -> int:
        """How many `event_type` events the job's state changes wrote to the webhook outbox (one endpoint)."""
        rows = self.query(
            "SELECT count(*) AS n FROM webhook_deliveries WHERE job_id = %s AND event_type = %s",
            job_id,
            event_type,
        )
        return int(rows[0]["n"])


def object_keys(s3: Any, bucket: str, job_id: str) -> list[str]:
    """The stored objects of a job (video, thumbnail, spritesheet)."""
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="videos/")
    return sorted(o["Key"] for o in listing.get("Contents", []) if job_id in o["Key"])


def restore(deployment: Deployment, redis_server: RedisServer, s3: FaultProxy) -> None:
    """Servers up again, requests no longer cut, unfinished jobs canceled."""
    s3.cut(None)
    s3.stop()
    s3.start()
    redis_server.start_if_down()
    deployment.execute(
        "UPDATE jobs SET status = 'canceled', finished_at = now() WHERE status IN ('queued', 'in_progress')"
    )
