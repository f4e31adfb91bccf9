"""The playground in headless Chromium against the live API and worker, on a phone-sized screen.

A person signs in with a key, writes a prompt, presses Enter, watches the progress rise, plays the
finished video and checks its provenance; another job is canceled while it runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import Service, create_key, wait_for_job

pytestmark = pytest.mark.e2e

# Each change of the progress figure, recorded in the page as it happens.
RECORD_PROGRESS = """() => {
  window.__progress = [];
  const target = document.getElementById("progress-percent");
  new MutationObserver(() => window.__progress.push(target.textContent))
    .observe(target, {childList: true, characterData: true, subtree: true});
}"""


def _sign_in(page: Any, live: Service, key: str) -> None:
    page.goto(f"{live.base_url}/")
    assert page.url == f"{live.base_url}/playground"
    page.get_by_label("API key").fill(key)
    page.get_by_label("API key").press("Enter")
    page.locator("#app").wait_for(state="visible")


def _fill(page: Any, prompt: str, *, size: str, duration: str, steps: str, seed: str) -> None:
    page.get_by_label("Prompt", exact=True).fill(prompt)
    page.get_by_label("Resolution").select_option("custom")
    page.get_by_label("Size (WxH)").fill(size)
    page.get_by_label("Duration (s)").fill(duration)
    page.get_by_label("Steps").fill(steps)
    page.get_by_label("Seed").fill(seed)


def test_sign_in_generate_watch_progress_and_play(
    phone: Any, live: Service, live_key: str, artifacts_dir: Path
) -> None:
    page = phone
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    _sign_in(page, live, live_key)
    assert page.locator("#model option").first.get_attribute("value") == "builtin:tiny-wan"
    # The key is in this tab's session storage only: not in the URL, not in local storage.
    assert page.evaluate("sessionStorage.getItem('kinema.apiKey')") == live_key
    assert page.evaluate("localStorage.length") == 0
    assert live_key not in page.url

    _fill(page, "a red ball rolling on a table", size="128x128", duration="2", steps="12", seed="7")
    page.evaluate(RECORD_PROGRESS)
    page.get_by_label("Prompt", exact=True).press("Enter")  # Enter submits

    page.locator("#viewer").wait_for(state="visible", timeout=120_000)
    job_id = page.locator("#viewer-job").inner_text()
    seen = [int(text.rstrip("%")) for text in page.evaluate("window.__progress")]
    # Progress advanced through values between 0 and 100 in order, and ended at 100.
    assert seen[-1] == 100, seen
    assert any(0 < value < 100 for value in seen), seen
    assert seen == sorted(seen), seen
    assert page.locator("#progress-status").inner_text() == "succeeded"

    # The finished video plays in the <video> element.
    page.wait_for_function(
        "() => { const v = document.getElementById('player'); return v.readyState >= 1 && v.duration > 0; }"
    )
    duration = page.evaluate("document.getElementById('player').duration")
    assert duration == pytest.approx(2.0, abs=0.2)
    page.wait_for_function("() => document.getElementById('player').currentTime > 0")
    assert page.evaluate("document.getElementById('player').videoWidth") == 128

    # The gallery shows the job, newest first, with its thumbnail.
    card = page.locator(".card").first
    assert card.get_attribute("data-id") == job_id
    card.locator("img").wait_for(state="visible")
    assert page.evaluate("document.querySelector('.card img').naturalWidth") > 0

    # The provenance panel: the downloaded MP4 checked by POST /v1/provenance/verify.
    page.get_by_role("button", name="Check provenance").click()
    page.wait_for_function(
        "() => !document.getElementById('provenance').hidden"
        " || document.getElementById('viewer-error').textContent",
        timeout=60_000,
    )
    assert page.locator("#viewer-error").inner_text() == ""
    panel = page.locator("#provenance")
    assert "C2PA manifest" in panel.inner_text()
    assert re.search(r"^Valid\b", panel.inner_text(), re.MULTILINE), panel.inner_text()
    assert job_id in panel.inner_text()

    # Usable on a 375 px screen: nothing wider than the viewport.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.screenshot(path=str(artifacts_dir / "generated-375px.png"), full_page=True)

    # Everything came from this server (no CDN); media as blobs; the key never in a URL.
    foreign = [url for url in requests if not url.startswith((live.base_url, "blob:", "data:"))]
    assert foreign == []
    assert all(live_key not in url for url in requests)
    with live.client(live_key) as client:
        assert client.get(f"/jobs/{job_id}").json()["status"] == "succeeded"


def test_cancel_a_running_job(phone: Any, live: Service, live_key: str, artifacts_dir: Path) -> None:
    page = phone
    _sign_in(page, live, live_key)
    _fill(page, "a slow blue cube", size="160x96", duration="2", steps="100", seed="3")
    page.get_by_role("button", name="Generate").click()
    status = page.locator("#progress-status")
    page.wait_for_function(
        "() => document.getElementById('progress-status').textContent === 'in_progress'"
        " && document.getElementById('progress-phase').textContent === 'denoising'",
        timeout=120_000,
    )
    job_id = page.locator("#progress-job").inner_text()
    page.get_by_role("button", name="Cancel job").click()
    page.wait_for_function(
        "() => document.getElementById('progress-status').textContent === 'canceled'", timeout=30_000
    )
    assert status.inner_text() == "canceled"
    assert page.locator("#cancel").is_hidden()
    card = page.locator(f'.card[data-id="{job_id}"]')
    card.locator(".status.canceled").wait_for()
    page.screenshot(path=str(artifacts_dir / "canceled-375px.png"), full_page=True)
    with live.client(live_key) as client:
        assert client.get(f"/jobs/{job_id}").json()["status"] == "canceled"


def test_a_wrong_key_is_refused_and_not_kept(phone: Any, live: Service) -> None:
    page = phone
    page.goto(f"{live.base_url}/playground")
    page.get_by_label("API key").fill("kn_AAAAAAAAAA_" + "B" * 32)
    page.get_by_role("button", name="Sign in").click()
    page.locator("#signin-error").filter(has_text="not accepted").wait_for()
    assert page.locator("#app").is_hidden()
    assert page.evaluate("sessionStorage.getItem('kinema.apiKey')") is None


def test_sign_out_forgets_the_key(phone: Any, live: Service, live_key: str) -> None:
    page = phone
    _sign_in(page, live, live_key)
    page.reload()  # the key survives a reload of the tab ...
    page.locator("#app").wait_for(state="visible")
    page.get_by_role("button", name="Sign out").click()
    assert page.evaluate("sessionStorage.getItem('kinema.apiKey')") is None
    page.reload()  # ... and not a sign-out
    page.locator("#signin").wait_for(state="visible")
    assert page.locator("#app").is_hidden()


def test_page_headers_allow_only_this_origin(live: Service) -> None:
    page = httpx.get(f"{live.base_url}/playground")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text)
    script = httpx.get(f"{live.base_url}/playground/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert httpx.get(f"{live.base_url}/playground/secrets.py").status_code == 404


def test_media_endpoint_serves_only_your_finished_jobs(live: Service, live_key: str) -> None:
    other = create_key(live.env, name="playground-other")
    with live.client(live_key) as client, live.client(other) as stranger:
        job = client.post(
            "/generate", json={"prompt": "a green dot", "duration": 1, "resolution": "64x64", "seed": 1}
        ).json()
        early = client.get(f"/playground/media/{job['id']}/video")
        assert early.status_code in (200, 409)  # 409 output_not_ready until it succeeded
        assert wait_for_job(client, job["id"]).job["status"] == "succeeded"
        video = client.get(f"/playground/media/{job['id']}/video")
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        assert video.content[4:8] == b"ftyp"
        thumb = client.get(f"/playground/media/{job['id']}/thumbnail")
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
        assert stranger.get(f"/playground/media/{job['id']}/video").status_code == 404
        assert client.get(f"/playground/media/{job['id']}/other").status_code == 400
        assert httpx.get(f"{live.base_url}/playground/media/{job['id']}/video").status_code == 401


@pytest.fixture(scope="module")
def finished_job(live: Service, live_key: str) -> dict[str, Any]:
    with live.client(live_key) as client:
        body = {"prompt": "an orange square", "duration": 1, "resolution": "64x64", "num_inference_steps": 4}
        job = client.post("/generate", json=body).json()
        finished = wait_for_job(client, job["id"]).job
    assert finished["status"] == "succeeded", live.logs()
    return finished


def _submitted(page: Any, live: Service, key: str, parent_id: str | None) -> dict[str, Any]:
    """The job the page just submitted (as the API shows it), canceled so the worker moves on."""
    page.wait_for_function(
        f"() => !document.getElementById('progress').hidden"
        f" && document.getElementById('progress-job').textContent !== {json.dumps(parent_id or '')}"
        " || document.getElementById('create-error').textContent"
    )
    assert page.locator("#create-error").inner_text() == ""
    job_id = page.locator("#progress-job").inner_text()
    with live.client(key) as client:
        client.post(f"/jobs/{job_id}/cancel")  # 409 if it already finished: fine
        return dict(client.get(f"/jobs/{job_id}").json())


def test_extend_remix_and_image_input_submit_the_right_jobs(
    phone: Any, live: Service, live_key: str, finished_job: dict[str, Any], tmp_path: Path
) -> None:
    page = phone
    _sign_in(page, live, live_key)
    card = page.locator(f'.card[data-id="{finished_job["id"]}"]')

    card.get_by_role("button", name="Extend").click()
    assert page.locator("#mode-text").inner_text().startswith(f"Extending {finished_job['id']}")
    assert page.get_by_label("Prompt", exact=True).input_value() == "an orange square"
    assert page.locator("#resolution").is_hidden()  # an extension keeps its parent's size
    page.get_by_label("Seconds to add").fill("1")
    page.get_by_label("Prompt", exact=True).press("Enter")
    extension = _submitted(page, live, live_key, finished_job["id"])
    assert (extension["kind"], extension["parent_id"]) == ("extend", finished_job["id"])
    assert page.locator("#mode-banner").is_hidden()  # back to a new video after the submit

    card.get_by_role("button", name="Remix").click()
    page.get_by_label("Prompt", exact=True).fill("an orange square, in watercolour")
    page.get_by_label("Strength").fill("0.5")
    page.get_by_role("button", name="Remix").first.click()
    remix = _submitted(page, live, live_key, extension["id"])
    assert (remix["kind"], remix["parent_id"], remix["strength"]) == ("remix", finished_job["id"], 0.5)
    assert remix["parameters"]["prompt"] == "an orange square, in watercolour"

    from PIL import Image

    image = tmp_path / "start.png"
    Image.new("RGB", (64, 64), (200, 120, 40)).save(image)
    page.get_by_label("Prompt", exact=True).fill("the square starts to spin")
    page.get_by_label("An image (image to video) or a video (edit it)").set_input_files(str(image))
    page.get_by_label("Resolution").select_option("custom")
    page.get_by_label("Size (WxH)").fill("64x64")
    page.get_by_label("Duration (s)").fill("1")
    page.get_by_role("button", name="Generate").click()
    started = _submitted(page, live, live_key, remix["id"])
    assert (started["kind"], started["input"]) == ("image", {"type": "image"})
