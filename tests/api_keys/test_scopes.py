"""Key scopes: generate, read, admin; a missing scope is a 403 naming it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import migrations


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _refused_for(response: Any, scope: str) -> bool:
    error = response.json()["error"]
    return (
        response.status_code == 403
        and (error["type"], error["code"]) == ("permission_error", "missing_scope")
        and f"'{scope}' scope" in error["message"]
    )


def test_a_read_only_key_cannot_submit(client: Any, make_key: Any, make_job: Any) -> None:
    row, key = make_key(scopes=["read"])
    job = make_job(row)
    refused = client.post("/generate", headers=_auth(key), json={"prompt": "a cat"})
    assert _refused_for(refused, "generate"), refused.text
    assert "the key has: read" in refused.json()["error"]["message"]
    assert client.get(f"/jobs/{job.id}", headers=_auth(key)).status_code == 200
    assert client.get("/jobs", headers=_auth(key)).status_code == 200
    assert client.get("/v1/usage", headers=_auth(key)).status_code == 200


def test_a_generate_only_key_cannot_read(client: Any, make_key: Any, make_job: Any) -> None:
    row, key = make_key(scopes=["generate"])
    job = make_job(row, status="succeeded", video_key="videos/x.mp4", thumbnail_key="videos/x.jpg")
    assert client.post("/generate", headers=_auth(key), json={"prompt": "a cat"}).status_code == 202
    for path in (
        "/jobs",
        f"/jobs/{job.id}",
        f"/jobs/{job.id}/video",
        f"/jobs/{job.id}/thumbnail",
        "/v1/usage",
    ):
        response = client.get(path, headers=_auth(key), follow_redirects=False)
        assert _refused_for(response, "read"), (path, response.text)


def test_the_admin_api_needs_the_admin_scope(client: Any, make_key: Any) -> None:
    row, key = make_key()  # the default: generate and read
    assert row.scope_list == ["generate", "read"]
    for method, path in (
        ("GET", "/v1/admin/keys"),
        ("POST", "/v1/admin/keys"),
        ("DELETE", f"/v1/admin/keys/{row.id}"),
    ):
        response = client.request(method, path, headers=_auth(key), json={"name": "x"})
        assert _refused_for(response, "admin"), (method, path, response.text)
    assert row.revoked_at is None


def test_an_admin_only_key_cannot_generate_or_read(client: Any, make_key: Any) -> None:
    _, key = make_key(scopes=["admin"])
    assert client.get("/v1/admin/keys", headers=_auth(key)).status_code == 200
    assert _refused_for(client.post("/generate", headers=_auth(key), json={"prompt": "a"}), "generate")
    assert _refused_for(client.get("/jobs", headers=_auth(key)), "read")


def test_keys_made_before_scopes_existed_get_generate_and_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    migrations.upgrade(url, "0001")
    with sqlite3.connect(tmp_path / "k.db") as conn:
        conn.execute(
            "INSERT INTO api_keys (id, name, prefix, key_hash, created_at) "
            "VALUES ('key_old', 'old', 'AAAAAAAAAA', 'h', '2026-01-01 00:00:00')"
        )
    migrations.upgrade(url)
    with sqlite3.connect(tmp_path / "k.db") as conn:
        row = conn.execute(
            "SELECT scopes, rate_limit_rpm, max_concurrent_jobs, monthly_quota_s FROM api_keys"
        ).fetchone()
    assert row == ("generate read", None, None, None)


@pytest.mark.parametrize("scopes", [[], ["root"]])
def test_a_key_needs_known_scopes(make_key: Any, scopes: list[str]) -> None:
    from app.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as raised:
        make_key(scopes=scopes)
    assert raised.value.param == "scopes"
