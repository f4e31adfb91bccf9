"""The `kinema` console script against a live server: keys and generate (more in test_cli_remote.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.harness import Service, create_key, kinema, probe_mp4

pytestmark = pytest.mark.e2e


def test_generate_downloads_the_video(live: Service, live_key: str, tmp_path: Path) -> None:
    out = tmp_path / "cli.mp4"
    env = {**live.env, "KINEMA_API_KEY": live_key, "KINEMA_BASE_URL": live.base_url}
    result = kinema(
        ["generate", "a green square", "-o", str(out), "--duration", "1", "--resolution", "128x128",
         "--steps", "4", "--seed", "3", "--poll-interval", "0.2"],
        env,
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    probe = probe_mp4(out)
    assert (probe.width, probe.height, probe.frames) == (128, 128, 8)


def test_generate_reports_a_refused_request_with_exit_code_2(
    live: Service, live_key: str, tmp_path: Path
) -> None:
    env = {**live.env, "KINEMA_API_KEY": live_key, "KINEMA_BASE_URL": live.base_url}
    result = kinema(["generate", "a cat", "--duration", "0", "-o", str(tmp_path / "x.mp4")], env)
    assert result.returncode == 2
    assert "duration" in result.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_keys_list_and_revoke(live: Service, tmp_path: Path) -> None:
    key = create_key(live.env, name="to-revoke")
    prefix = "_".join(key.split("_")[:2])
    listed = json.loads(kinema(["keys", "list", "--json"], live.env).stdout)
    assert any(k["prefix"] == prefix and k["revoked_at"] is None for k in listed)
    assert all(key not in json.dumps(k) for k in listed)
    assert kinema(["keys", "revoke", prefix], live.env).returncode == 0
    listed = json.loads(kinema(["keys", "list", "--json"], live.env).stdout)
    assert next(k for k in listed if k["prefix"] == prefix)["revoked_at"] is not None
    env = {**live.env, "KINEMA_API_KEY": key, "KINEMA_BASE_URL": live.base_url}
    result = kinema(["generate", "a cat", "-o", str(tmp_path / "y.mp4")], env)
    assert result.returncode == 3 and "revoked" in result.stderr
    assert kinema(["keys", "revoke", "kn_doesnotexist"], live.env).returncode == 1
