"""The `kinema` console script as an API client against a live server and worker.

`generate -o`, `jobs list|show|wait|cancel|download`, `webhooks ...`, `--json` for scripts, and the
documented exit codes: 0 ok, 1 job failed/canceled (or finished already), 2 usage or a refused
request, 3 auth, 4 not found, 5 unreachable or server error.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.harness import Service, kinema, probe_mp4, wait_for_job

pytestmark = pytest.mark.e2e

SMALL = ["--duration", "1", "--size", "64x64", "--steps", "4"]


def _env(live: Service, key: str, **extra: str) -> dict[str, str]:
    # A wide terminal, so rich does not fold ids in tables.
    return {**live.env, "KINEMA_API_KEY": key, "KINEMA_BASE_URL": live.base_url, "COLUMNS": "250", **extra}


def test_generate_json_then_jobs_list_show_and_download(live: Service, live_key: str, tmp_path: Path) -> None:
    env = _env(live, live_key)
    out = tmp_path / "made.mp4"
    made = kinema(
        ["generate", "a purple cone", *SMALL, "--seed", "5", "-o", str(out), "--json"], env, timeout=180
    )
    assert made.returncode == 0, made.stderr
    job = json.loads(made.stdout)
    assert job["status"] == "succeeded" and job["parameters"]["seed"] == 5
    assert probe_mp4(out).frames == 8
    assert hashlib.sha256(out.read_bytes()).hexdigest() == job["output"]["sha256"]
    assert "100%" in made.stderr  # the progress bar reached the end

    listed = kinema(["jobs", "list", "--json", "--limit", "100"], env)
    assert listed.returncode == 0, listed.stderr
    assert job["id"] in [j["id"] for j in json.loads(listed.stdout)]
    succeeded = json.loads(kinema(["jobs", "list", "--json", "--status", "succeeded"], env).stdout)
    assert {j["status"] for j in succeeded} == {"succeeded"}
    table = kinema(["jobs", "list"], env)
    assert table.returncode == 0 and job["id"] in table.stdout and "a purple cone" in table.stdout

    shown = kinema(["jobs", "show", job["id"], "--json"], env)
    assert shown.returncode == 0 and json.loads(shown.stdout)["output"]["sha256"] == job["output"]["sha256"]
    described = kinema(["jobs", "show", job["id"]], env).stdout
    assert job["output"]["sha256"] in described and "succeeded" in described

    again = tmp_path / "again.mp4"
    downloaded = kinema(["jobs", "download", job["id"], "-o", str(again)], env)
    assert downloaded.returncode == 0, downloaded.stderr
    assert again.read_bytes() == out.read_bytes()
    thumb = tmp_path / "thumb.jpg"
    assert kinema(["jobs", "download", job["id"], "--thumbnail", "-o", str(thumb)], env).returncode == 0
    assert thumb.read_bytes()[:2] == b"\xff\xd8"
    waited = kinema(["jobs", "wait", job["id"], "--json"], env)
    assert waited.returncode == 0 and json.loads(waited.stdout)["status"] == "succeeded"
    # A finished job cannot be canceled: exit 1, the API's reason on stderr.
    finished = kinema(["jobs", "cancel", job["id"]], env)
    assert finished.returncode == 1 and "job_already_finished" in finished.stderr


def test_cancel_a_running_job(live: Service, live_key: str) -> None:
    env = _env(live, live_key)
    queued = kinema(
        ["generate", "a slow cube", "--size", "160x96", "--duration", "2", "--steps", "100", "--no-wait"], env
    )
    assert queued.returncode == 0, queued.stderr
    job_id = queued.stdout.strip()
    with live.client(live_key) as client:
        deadline = time.monotonic() + 120
        while client.get(f"/jobs/{job_id}").json()["phase"] != "denoising":
            assert time.monotonic() < deadline, live.logs()
            time.sleep(0.1)
    canceled = kinema(["jobs", "cancel", job_id, "--wait", "--json"], env, timeout=60)
    assert canceled.returncode == 0, canceled.stderr
    assert json.loads(canceled.stdout)["status"] == "canceled"
    assert kinema(["jobs", "cancel", job_id], env).returncode == 0  # canceling twice is safe
    # Waiting for or downloading a canceled job: exit 1.
    waited = kinema(["jobs", "wait", job_id], env)
    assert waited.returncode == 1 and "canceled" in waited.stderr
    assert kinema(["jobs", "download", job_id], env).returncode == 1


def test_exit_codes(live: Service, live_key: str, tmp_path: Path) -> None:
    env = _env(live, live_key)
    bad_key = kinema(["jobs", "list"], _env(live, "kn_AAAAAAAAAA_" + "B" * 32))
    assert bad_key.returncode == 3 and "Incorrect API key" in bad_key.stderr
    no_key = kinema(["jobs", "list"], _env(live, ""))
    assert no_key.returncode == 3 and "KINEMA_API_KEY" in no_key.stderr
    unknown = kinema(["jobs", "show", "video_doesnotexist"], env)
    assert unknown.returncode == 4 and "not_found" in unknown.stderr
    assert kinema(["jobs", "download", "video_doesnotexist"], env).returncode == 4
    gone = kinema(["jobs", "list", "--base-url", f"http://127.0.0.1:{free_port()}"], env)
    assert gone.returncode == 5 and "Cannot reach" in gone.stderr
    both = kinema(["generate", "a cat", "--image", str(tmp_path / "x.png"), "--extend", "video_x"], env)
    assert both.returncode == 2 and "--image and --extend" in both.stderr
    missing = kinema(["generate", "a cat", "--image", str(tmp_path / "nothing.png")], env)
    assert missing.returncode == 2 and "no file" in missing.stderr
    assert kinema(["jobs", "list", "--limit", "0"], env).returncode == 2  # typer's own usage error
    assert kinema(["generate", "a cat", "--remix", "video_x", "--duration", "2"], env).returncode == 2


def test_webhooks_commands(live: Service, live_key: str) -> None:
    env = _env(live, live_key)
    created = kinema(
        ["webhooks", "create", "http://127.0.0.1:9/hook", "--event", "video.completed", "--json"], env
    )
    assert created.returncode == 0, created.stderr
    endpoint = json.loads(created.stdout)
    assert endpoint["secret"].startswith("whsec_") and endpoint["events"] == ["video.completed"]
    listed = json.loads(kinema(["webhooks", "list", "--json"], env).stdout)
    assert endpoint["id"] in [e["id"] for e in listed]
    assert all("secret" not in e for e in listed)  # the secret is shown only once

    updated = kinema(["webhooks", "update", endpoint["id"], "--disable", "--json"], env)
    assert updated.returncode == 0 and json.loads(updated.stdout)["enabled"] is False
    rotated = json.loads(kinema(["webhooks", "rotate-secret", endpoint["id"], "--json"], env).stdout)
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != endpoint["secret"]
    deliveries = kinema(["webhooks", "deliveries", endpoint["id"], "--json"], env)
    assert deliveries.returncode == 0 and json.loads(deliveries.stdout) == []
    secret = kinema(["webhooks", "secret"], env)
    assert secret.returncode == 0 and secret.stdout.strip().startswith("whsec_")

    assert kinema(["webhooks", "delete", endpoint["id"]], env).returncode == 0
    assert kinema(["webhooks", "show", endpoint["id"]], env).returncode == 4
    bad = kinema(["webhooks", "create", "http://127.0.0.1:9/hook", "--event", "video.exploded"], env)
    assert bad.returncode == 2 and "events" in bad.stderr


def test_generate_no_wait_then_wait_for_it(live: Service, live_key: str) -> None:
    env = _env(live, live_key)
    queued = kinema(["generate", "a yellow disc", *SMALL, "--no-wait", "--json"], env)
    assert queued.returncode == 0, queued.stderr
    job = json.loads(queued.stdout)
    assert job["status"] in ("queued", "in_progress", "succeeded")
    waited = kinema(["jobs", "wait", job["id"]], env, timeout=180)
    assert waited.returncode == 0 and f"{job['id']} succeeded" in waited.stdout
    with live.client(live_key) as client:
        assert wait_for_job(client, job["id"]).job["status"] == "succeeded"


def test_generate_modes_submit_the_right_jobs(live: Service, live_key: str, tmp_path: Path) -> None:
    """--extend, --remix, --image and --video make the jobs the API documents (the worker runs them)."""
    from PIL import Image

    env = _env(live, live_key)
    source = tmp_path / "source.mp4"
    made = kinema(["generate", "a teal ring", *SMALL, "-o", str(source), "--json"], env, timeout=180)
    assert made.returncode == 0, made.stderr
    parent = json.loads(made.stdout)
    image = tmp_path / "start.png"
    Image.new("RGB", (64, 64), (30, 160, 150)).save(image)

    def submit(*args: str) -> dict[str, object]:
        result = kinema(["generate", *args, "--no-wait", "--json"], env)
        assert result.returncode == 0, result.stderr
        job: dict[str, object] = json.loads(result.stdout)
        with live.client(live_key) as client:
            client.post(f"/jobs/{job['id']}/cancel")  # only the submit is under test here
        return job

    extension = submit("the ring rolls away", "--extend", parent["id"], "--duration", "1")
    assert (extension["kind"], extension["parent_id"]) == ("extend", parent["id"])
    remix = submit("a teal ring, pixel art", "--remix", parent["id"], "--strength", "0.4")
    assert (remix["kind"], remix["parent_id"], remix["strength"]) == ("remix", parent["id"], 0.4)
    started = submit("the ring spins", "--image", str(image), "--size", "64x64", "--duration", "1")
    assert (started["kind"], started["input"]) == ("image", {"type": "image"})
    edited = submit("the ring glows", "--video", str(source), "--strength", "0.7")
    assert (edited["kind"], edited["input"], edited["strength"]) == ("edit", {"type": "video"}, 0.7)
    # A parent that has not succeeded: the API's 409 parent_not_ready is exit 1.
    not_ready = kinema(["generate", "more", "--extend", str(extension["id"]), "--no-wait"], env)
    assert not_ready.returncode == 1 and "parent_not_ready" in not_ready.stderr
    assert kinema(["generate", "more", "--remix", "video_doesnotexist", "--no-wait"], env).returncode == 4
