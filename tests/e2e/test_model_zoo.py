"""Two served models over real HTTP: each job goes to its model's queue and the worker holding that model.

The default model (the built-in tiny Wan) and a tiny random-weight Mochi checkpoint saved in a temporary
directory and served as `tiny-mochi` (KINEMA_MODELS); one `kinema worker --model ID` each.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.harness import Service, clean_env, create_key, probe_mp4, start, wait_for_job, wait_ready
from tests.model.tiny_families import save_tiny

pytestmark = pytest.mark.e2e

MOCHI = "tiny-mochi"


@pytest.fixture(scope="module")
def zoo(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    mochi = save_tiny("mochi", tmp_path_factory.mktemp("zoo") / "mochi")
    logs = tmp_path_factory.mktemp("zoo-logs")
    port = free_port()
    env = clean_env(
        {
            **service_env,
            "KINEMA_QUEUE_NAME": f"kinema.zoo.{uuid.uuid4().hex[:8]}",
            "KINEMA_WEBHOOK_QUEUE_NAME": f"kinema.zoo.webhooks.{uuid.uuid4().hex[:8]}",
            "KINEMA_MODELS": json.dumps({MOCHI: str(mochi)}),
        }
    )
    wan_worker = start("wan-worker", ["worker", "--concurrency", "1"], env, logs)
    mochi_worker = start("mochi-worker", ["worker", "--queues", "generate", "--model", MOCHI], env, logs)
    api = start("api", ["serve", "--port", str(port), "--log-level", "warning"], env, logs)
    service = Service(base_url=f"http://127.0.0.1:{port}", env=env, processes=[wan_worker, mochi_worker, api])
    try:
        wait_ready(service.base_url, service.processes)
        yield service
    finally:
        service.stop()


def test_each_job_runs_on_the_worker_of_its_model(zoo: Service, tmp_path: Path) -> None:
    key = create_key(zoo.env)
    requests = {
        "builtin:tiny-wan": {"resolution": "64x64", "fps": 8, "duration": 1},
        # Mochi makes 6k+1 frames on a 16 px grid: 7 made at 96x80, the video keeps 6 at 96x72.
        MOCHI: {"model": MOCHI, "resolution": "96x72", "fps": 6, "duration": 1},
    }
    with zoo.client(key) as client:
        listed = [model["id"] for model in client.get("/v1/models").json()["data"]]
        assert listed == ["builtin:tiny-wan", MOCHI]
        ids = {}
        for model, extra in requests.items():
            body = {"prompt": "a paper boat on a pond", "seed": 3, "num_inference_steps": 2, **extra}
            submitted = client.post("/generate", json=body)
            assert submitted.status_code == 202, submitted.text
            ids[model] = submitted.json()["id"]
        for model, job_id in ids.items():
            job = wait_for_job(client, job_id, timeout=240).job
            assert job["status"] == "succeeded", (job, zoo.logs())
            assert job["model"] == model
            video = client.get(f"/jobs/{job_id}/video", follow_redirects=True)
            path = tmp_path / f"{job_id}.mp4"
            path.write_bytes(video.content)
            probe = probe_mp4(path)
            width, height = (int(side) for side in str(requests[model]["resolution"]).split("x"))
            assert (probe.width, probe.height) == (width, height)
            assert probe.frames == requests[model]["fps"]
    # Each worker ran only its own model's job (its log lines carry the job id).
    wan_log, mochi_log = zoo.processes[0].output(), zoo.processes[1].output()
    assert ids["builtin:tiny-wan"] in wan_log and ids["builtin:tiny-wan"] not in mochi_log
    assert ids[MOCHI] in mochi_log and ids[MOCHI] not in wan_log
