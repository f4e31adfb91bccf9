"""The model zoo over real HTTP: a tiny checkpoint of every family, each job on a worker holding its model.

The default model (the built-in tiny Wan) and tiny random-weight checkpoints of every other family, saved
in a temporary directory and served under their own ids (KINEMA_MODELS: Mochi as `id=path`, the others
as JSON with options). Wan and Mochi have a `kinema worker --model ID` each, the production shape. The
other families share one Celery worker that takes all their queues: a worker process for each, each
importing torch, would not fit the 2 cores these tests run on, and a worker loads whichever model a job
names (worker/runtime.py), so the jobs run exactly as on their own workers.

Every checkpoint of `tests/model/tiny_families.py` runs a job here but Wan 2.2 A14B text to video
(`wan2.2-t2v`): it is a `WanPipeline` like the built-in tiny Wan, and what it adds (two experts) is
checked at the model layer, where the experts' calls can be counted (`tests/model/test_families.py`).
VACE's and LTX condition's image and extension modes, too, are checked there (what each pipeline is
given): here they run text to video, which goes through the same worker path as every other family.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from app.config import Settings
from app.served_models import queue_for
from tests.conftest import free_port
from tests.e2e.harness import (
    Process,
    Service,
    clean_env,
    create_key,
    probe_mp4,
    start,
    wait_for_job,
    wait_ready,
)
from tests.inputs import samples
from tests.model.tiny_families import save_tiny

pytestmark = pytest.mark.e2e

MOCHI = "tiny-mochi"
TEXT_FAMILIES = ("hunyuanvideo", "modelscope", "wan2.2-ti2v", "wan-vace", "ltx", "ltx-condition", "cogvideox")
IMAGE_FAMILIES = ("wan-i2v", "wan2.2-i2v", "ltx-i2v", "cogvideox-i2v", "cogvideox-5b-i2v")
EDIT_FAMILIES = ("cogvideox-v2v",)
# KINEMA_MODELS options for the zoo's models: what a request that names no steps or fps gets.
ZOO_OPTIONS = {"default_steps": 2, "default_fps": 8}
IMAGE_COLOUR = (30, 160, 150)


def start_worker_for(name: str, queues: list[str], env: dict[str, str], log_dir: Path) -> Process:
    """A Celery worker taking `queues` (the command `kinema worker` runs, with several model queues)."""
    log = log_dir / f"{name}.log"
    command = [
        sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker",
        "--queues", ",".join(queues),
        "--concurrency", "1",
        "--pool", "prefork",
        "--prefetch-multiplier", "1",
        "--loglevel", "INFO",
        "--hostname", f"{name}-{uuid.uuid4().hex[:6]}@%h",
    ]  # fmt: skip
    popen = subprocess.Popen(
        command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    return Process(name, popen, log)


@pytest.fixture(scope="module")
def zoo(service_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("zoo")
    mochi = save_tiny("mochi", root / "mochi")
    models: dict[str, object] = {MOCHI: str(mochi)}
    for family in (*TEXT_FAMILIES, *IMAGE_FAMILIES, *EDIT_FAMILIES):
        models[f"tiny-{family}"] = {"path": str(save_tiny(family, root / family)), "options": ZOO_OPTIONS}
    logs = tmp_path_factory.mktemp("zoo-logs")
    port = free_port()
    queue_name = f"kinema.zoo.{uuid.uuid4().hex[:8]}"
    env = clean_env(
        {
            **service_env,
            "KINEMA_QUEUE_NAME": queue_name,
            "KINEMA_WEBHOOK_QUEUE_NAME": f"kinema.zoo.webhooks.{uuid.uuid4().hex[:8]}",
            "KINEMA_MODELS": json.dumps(models),
        }
    )
    queues = Settings(_env_file=None, queue_name=queue_name)
    zoo_queues = [queue_for(model_id, queues) for model_id in models if model_id != MOCHI]
    wan_worker = start("wan-worker", ["worker", "--concurrency", "1"], env, logs)
    mochi_worker = start("mochi-worker", ["worker", "--queues", "generate", "--model", MOCHI], env, logs)
    zoo_worker = start_worker_for("zoo-worker", zoo_queues, env, logs)
    api = start("api", ["serve", "--port", str(port), "--log-level", "warning"], env, logs)
    service = Service(
        base_url=f"http://127.0.0.1:{port}", env=env, processes=[wan_worker, mochi_worker, zoo_worker, api]
    )
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
        assert listed[:2] == ["builtin:tiny-wan", MOCHI]
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


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (144, 128), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _first_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        frame = next(container.decode(container.streams.video[0]))
        return np.asarray(frame.to_ndarray(format="rgb24"))


def test_every_family_makes_a_video_by_its_rules(zoo: Service, tmp_path: Path) -> None:
    """A job per family, text or image to video or an edit; the MP4 has the size and frames asked for.

    72x64 is off every family's latent grid but LTX's too (Wan, HunyuanVideo, CogVideoX: 16 px, LTX and
    Wan 2.2 TI2V-5B: 32 px), and 1.25 s at 8 fps is 10 frames, which no 4k+1, 6k+1 or 8k+1 rule makes:
    each pipeline runs at its rounded-up size and frame count (80x64 x 13 frames for Wan, 96x64 x 17 for
    LTX ...; CogVideoX-5b-I2V at its one size, 80x64 in the tiny checkpoint) and the worker crops the
    frames back and keeps the first 10. An edit takes the size and length of its source video: a 72x64
    clip of 10 frames at 8 fps.
    """
    key = create_key(zoo.env)
    # No steps or fps: the KINEMA_MODELS options (2 steps, 8 fps) fill them in.
    body = {"prompt": "a paper boat on a pond", "seed": 3, "resolution": "72x64", "duration": 1.25}
    form = {name: str(value) for name, value in body.items()}  # the same fields, as a multipart form
    clip = ("source.mp4", samples.video_bytes(tmp_path, size=(72, 64), fps=8, frames=10), "video/mp4")
    with zoo.client(key) as client:
        listed = {model["id"]: model["capabilities"] for model in client.get("/v1/models").json()["data"]}
        ids: dict[str, str] = {}
        for family in (*TEXT_FAMILIES, *IMAGE_FAMILIES, *EDIT_FAMILIES):
            model = f"tiny-{family}"
            assert (listed[model]["default_steps"], listed[model]["fps"]) == (2, 8)
            if family in IMAGE_FAMILIES:
                assert listed[model]["modes"] == ["image", "extend"]
                image = ("start.png", _png(IMAGE_COLOUR), "image/png")
                submitted = client.post("/generate", data={**form, "model": model}, files={"image": image})
            elif family in EDIT_FAMILIES:
                assert listed[model]["modes"] == ["edit", "remix"]
                data = {"prompt": "the same pond in winter", "seed": "3", "model": model}
                submitted = client.post("/generate", data=data, files={"video": clip})
            else:
                assert "text" in listed[model]["modes"]
                submitted = client.post("/generate", json={**body, "model": model})
            assert submitted.status_code == 202, (family, submitted.text)
            params = submitted.json()["parameters"]
            assert (params["num_inference_steps"], params["fps"], params["num_frames"]) == (2, 8, 10)
            ids[family] = submitted.json()["id"]
        for family, job_id in ids.items():
            job = wait_for_job(client, job_id, timeout=240).job
            assert job["status"] == "succeeded", (family, job, zoo.logs())
            assert job["model"] == f"tiny-{family}"
            path = tmp_path / f"{family}.mp4"
            path.write_bytes(client.get(f"/jobs/{job_id}/video", follow_redirects=True).content)
            probe = probe_mp4(path)
            assert (probe.width, probe.height, probe.frames, probe.fps) == (72, 64, 10, 8), family
            if family in IMAGE_FAMILIES:
                # The video starts with the uploaded image (H.264 keeps a flat colour within a few levels;
                # the visible watermark sits in a corner, away from the middle).
                middle = _first_frame(path)[16:48, 16:56].reshape(-1, 3).mean(axis=0)
                assert np.abs(middle - IMAGE_COLOUR).max() < 8, (family, middle)
    assert all(job_id in zoo.processes[2].output() for job_id in ids.values())
