"""Load benchmark: 1000 jobs through the whole service, none lost or duplicated; and the gateway alone.

Starts `kinema serve` and two `kinema worker` processes (concurrency 1 each, the production shape) on a
fresh Postgres database, a Redis queue of its own and local storage in a temporary directory, then:

1. gateway alone (no worker yet): POST /generate open-loop at each `--gateway-rates` (default 200 and 500
   req/s), as bench/gateway.py measures it; the queue is purged and the rows canceled after each rate;
2. the load: `--jobs` (1000) small jobs submitted open-loop at `--rate` (100/s) while the two workers run
   them; then waits until every job is finished;
3. checks: every submitted job succeeded, each exactly once (one `video.completed` event row per job, from
   a webhook endpoint registered for the key, and one MP4 per job in storage), and reports submit
   p50/p99, queue wait (`started_at - created_at`) and the drain time (first submit to last finish).

    .venv/bin/python bench/load.py [--jobs 1000] [--rate 100] [--gateway-rates 200,500]

Prints tables and writes bench/results/load.json. Localhost only; bounded by `--timeout`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: find the bench package
from bench.gateway import (  # noqa: E402
    POSTGRES_ADMIN_URL,
    REDIS_URL,
    SMALL_JOB,
    LoadResult,
    Process,
    cancel_queued,
    create_key,
    drop_bench_redis_keys,
    kinema,
    load_table,
    measure,
    percentile,
    purge_queue,
    run_loop,
    start,
    start_api,
    wait_ready,
)
from bench.machine import machine_info, table, wait_for_quiet  # noqa: E402
from bench.rawhttp import ConnectionPool, HttpError, build_request  # noqa: E402

RESULTS = ROOT / "bench" / "results"
PACKAGES = ("fastapi", "uvicorn", "sqlalchemy", "psycopg", "celery", "kombu", "torch", "diffusers")
# The smallest job: one 64x64 frame, one step (what is measured is the service, not the model).
JOB = SMALL_JOB


async def submit_all(
    base_url: str, key: str, *, jobs: int, rate: float, connections: int
) -> tuple[list[str], list[float], Counter[str]]:
    """POST `jobs` jobs on a fixed schedule; (job ids, latencies ms from the scheduled time, errors)."""
    url = httpx.URL(base_url)
    host, port = str(url.host), int(url.port or 80)
    request = build_request(
        "POST", "/generate", f"{host}:{port}", headers={"Authorization": f"Bearer {key}"}, body=JOB
    )
    pool = ConnectionPool(host, port, connections)
    loop = asyncio.get_running_loop()
    start_at = loop.time() + 0.05
    ids: list[str] = []
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def one(scheduled: float) -> None:
        try:
            status, body = await pool.request(request)
        except HttpError as exc:
            errors[str(exc).split(":")[0]] += 1
            return
        if status != 202:
            errors[f"http_{status}"] += 1
            return
        latencies.append((loop.time() - scheduled) * 1000)
        ids.append(json.loads(body)["id"])

    tasks = []
    try:
        for i in range(jobs):
            scheduled = start_at + i / rate
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
    finally:
        pool.close()
    return ids, latencies, errors


def wait_drained(
    database_url: str, ids: Sequence[str], processes: Sequence[Process], timeout: float
) -> float:
    """Wait until every job is finished; returns the seconds waited."""
    started = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            for process in processes:
                process.check_alive()
            left = conn.execute(
                "SELECT count(*) FROM jobs WHERE id = ANY(%s) AND status IN ('queued', 'in_progress')",
                (list(ids),),
            ).fetchone()
            if left is not None and left[0] == 0:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{left[0] if left else '?'} jobs unfinished after {timeout} s")
            time.sleep(0.5)


def check_outcome(database_url: str, ids: Sequence[str], storage: Path) -> dict[str, Any]:
    """What became of each submitted job: statuses, runs, completion events, stored MP4s, timings."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT id, status, attempts, created_at, started_at, finished_at FROM jobs WHERE id = ANY(%s)",
            (list(ids),),
        ).fetchall()
        events: dict[str, int] = dict(
            conn.execute(
                "SELECT job_id, count(*) FROM webhook_deliveries WHERE event_type = 'video.completed' "
                "AND job_id = ANY(%s) GROUP BY job_id",
                (list(ids),),
            ).fetchall()
        )
    videos = Counter(path.stem for path in storage.rglob("*.mp4"))
    statuses = Counter(status for _, status, *_ in rows)
    queue_wait = [
        (started - created).total_seconds() * 1000 for _, _, _, created, started, _ in rows if started
    ]
    first_created = min(created for *_, created, _, _ in rows)
    last_finished = max(finished for *_, finished in rows if finished is not None)
    return {
        "submitted": len(ids),
        "rows": len(rows),
        "statuses": dict(statuses),
        "lost": len(ids) - len(rows) + sum(n for s, n in statuses.items() if s != "succeeded"),
        "completed_events": {
            "jobs_with_one": sum(1 for n in events.values() if n == 1),
            "more_than_one": sum(1 for n in events.values() if n > 1),
        },
        "mp4_per_job": {
            "one": sum(1 for job_id in ids if videos[job_id] == 1),
            "missing": sum(1 for job_id in ids if videos[job_id] == 0),
        },
        "runs_per_job": dict(Counter(attempts for _, _, attempts, *_ in rows)),
        "duplicated": sum(1 for n in events.values() if n > 1) + sum(1 for n in videos.values() if n > 1),
        "queue_wait_ms": {
            "p50": percentile(queue_wait, 50),
            "p99": percentile(queue_wait, 99),
            "max": max(queue_wait) if queue_wait else None,
        },
        "drain_s": (last_finished - first_created).total_seconds(),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="Jobs to run through the service.")
    parser.add_argument("--rate", type=float, default=100.0, help="Submits per second (open loop).")
    parser.add_argument("--workers", type=int, default=2, help="`kinema worker` processes.")
    parser.add_argument("--gateway-rates", default="200,500", help="Gateway-alone rates; empty skips.")
    parser.add_argument("--gateway-duration", type=float, default=10.0, help="Seconds per gateway rate.")
    parser.add_argument("--server-workers", type=int, default=2, help="`kinema serve --workers`.")
    parser.add_argument("--connections", type=int, default=64, help="Client connections.")
    parser.add_argument("--quiet-wait", type=float, default=120.0, help="Wait this long for a quiet machine.")
    parser.add_argument("--timeout", type=float, default=900.0, help="Give up draining after this long.")
    parser.add_argument("--output", type=Path, default=RESULTS / "load.json")
    args = parser.parse_args(argv)
    args.gateway_rates = [float(r) for r in str(args.gateway_rates).split(",") if r.strip()]
    if not 1 <= args.jobs <= 10_000 or not 0 < args.rate <= 1000:
        parser.error("--jobs must be 1..10000 and --rate in (0, 1000]")
    return args


def _terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    machine = machine_info(PACKAGES)
    machine["busy_before_start"] = wait_for_quiet(args.quiet_wait)
    suffix = uuid.uuid4().hex[:10]
    db_name, queue = f"kinema_load_{suffix}", f"kinema.load.{suffix}"
    database_url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{db_name}"
    processes: list[Process] = []
    ids: list[str] = []
    key_ids: list[str] = []
    gateway: list[LoadResult] = []
    with tempfile.TemporaryDirectory(prefix="kinema-load-") as tmp:
        home = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("KINEMA_")}
        env.update(
            KINEMA_DATABASE_URL=database_url.replace("postgresql://", "postgresql+psycopg://", 1),
            KINEMA_BROKER_URL=REDIS_URL,
            KINEMA_REDIS_URL=REDIS_URL,
            KINEMA_QUEUE_NAME=queue,
            KINEMA_WEBHOOK_QUEUE_NAME=f"{queue}.webhooks",  # no webhook worker: deliveries stay recorded
            KINEMA_WEBHOOK_ALLOW_PRIVATE_TARGETS="true",
            KINEMA_STORAGE_BACKEND="local",
            KINEMA_HOME=str(home),
            KINEMA_MODEL_CACHE_DIR=str(home / "models"),
            KINEMA_DEFAULT_RATE_LIMIT_RPM="0",
            KINEMA_DEFAULT_MAX_CONCURRENT_JOBS="0",
            KINEMA_LOG_FORMAT="json",
            PYTHONUNBUFFERED="1",
        )
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db_name}"')
        try:
            kinema(["migrate"], env)
            key, key_id = create_key(env, "load")
            key_ids = [key_id]
            api, base_url = start_api(env, home, workers=args.server_workers)
            processes.append(api)
            wait_ready(base_url, processes)
            # One `video.completed` row per job and endpoint: the count of succeeded transitions.
            httpx.post(
                f"{base_url}/v1/webhooks",
                headers={"Authorization": f"Bearer {key}"},
                json={"url": "http://127.0.0.1:9/hook", "events": ["video.completed"]},
                timeout=10,
            ).raise_for_status()
            for rate in args.gateway_rates:
                wait_for_quiet(args.quiet_wait)
                print(f"gateway alone: POST /generate at {rate:g}/s ...", file=sys.stderr)
                result = run_loop(
                    measure(
                        base_url,
                        [key],
                        "POST",
                        "/generate",
                        JOB,
                        expect=202,
                        rate=rate,
                        warmup_s=2,
                        duration_s=args.gateway_duration,
                        connections=args.connections,
                        api_pid=api.popen.pid,
                    )
                )
                purge_queue(queue)
                cancel_queued(database_url)
                gateway.append(result)
            for i in range(args.workers):
                processes.append(
                    start(f"worker-{i}", ["worker", "--concurrency", "1", "--loglevel", "WARNING"], env, home)
                )
            time.sleep(5)  # workers load the model
            wait_for_quiet(args.quiet_wait)
            print(f"load: {args.jobs} jobs at {args.rate:g}/s, {args.workers} workers ...", file=sys.stderr)
            submitted, latencies, errors = run_loop(
                submit_all(base_url, key, jobs=args.jobs, rate=args.rate, connections=args.connections)
            )
            ids.extend(submitted)
            waited = wait_drained(database_url, ids, processes, args.timeout)
            outcome = check_outcome(database_url, ids, home / "storage")
        except BaseException:
            for process in processes:
                print(f"----- {process.name} log (tail) -----\n{process.tail()}", file=sys.stderr)
            raise
        finally:
            for process in reversed(processes):
                process.stop()
            drop_bench_redis_keys(queue, ids, key_ids)
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    outcome["submit_errors"] = dict(errors)
    outcome["submit_ms"] = {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": max(latencies) if latencies else None,
    }
    outcome["waited_after_last_submit_s"] = waited
    report = {
        "benchmark": "load",
        "machine": machine,
        "config": {
            "jobs": args.jobs,
            "rate": args.rate,
            "workers": args.workers,
            "server_workers": args.server_workers,
            "job": JOB,
        },
        "gateway": [{k: v for k, v in vars(r).items() if k != "latencies_ms"} for r in gateway],
        "load": outcome,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if gateway:
        print(load_table(gateway))
    print(
        table(
            [
                "jobs",
                "succeeded",
                "lost",
                "duplicated",
                "submit p50/p99 ms",
                "queue wait p50/p99 ms",
                "drain s",
            ],
            [
                [
                    str(outcome["submitted"]),
                    str(outcome["statuses"].get("succeeded", 0)),
                    str(outcome["lost"]),
                    str(outcome["duplicated"]),
                    f"{outcome['submit_ms']['p50']:.1f} / {outcome['submit_ms']['p99']:.1f}",
                    f"{outcome['queue_wait_ms']['p50']:.0f} / {outcome['queue_wait_ms']['p99']:.0f}",
                    f"{outcome['drain_s']:.1f}",
                ]
            ],
        )
    )
    print(f"\nwrote {args.output}")
    return 0 if outcome["lost"] == 0 and outcome["duplicated"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
