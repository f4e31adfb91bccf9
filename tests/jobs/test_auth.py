"""Bearer-key authentication and tenancy: who may see which job."""

from __future__ import annotations

from typing import Any

import pytest

from app.api_keys import service


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer kn_notakey",
        "Bearer kn_AAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
    ],
)
def test_missing_or_wrong_key_is_401_with_www_authenticate(client: Any, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in (("post", "/generate"), ("get", "/jobs"), ("get", "/jobs/video_x")):
        response = client.request(method.upper(), path, headers=headers, json={"prompt": "a", "duration": 1})
        assert response.status_code == 401, (path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        error = response.json()["error"]
        assert error["type"] == "authentication_error"


def test_right_prefix_wrong_secret_is_401(client: Any, make_key: Any) -> None:
    _, key = make_key()
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    response = client.get("/jobs", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_revoked_key_is_401(client: Any, make_key: Any, db_session: Any) -> None:
    row, key = make_key()
    assert client.get("/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    service.revoke_key(db_session, f"kn_{row.prefix}")
    response = client.get("/jobs", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "revoked_api_key"


def test_only_a_hash_of_the_key_is_stored(make_key: Any) -> None:
    row, key = make_key()
    assert key.startswith(f"kn_{row.prefix}_")
    assert key not in (row.key_hash, row.prefix, row.id)
    assert len(row.key_hash) == 64


def test_another_keys_job_is_404_everywhere(client: Any, make_key: Any, make_job: Any) -> None:
    owner, _ = make_key("owner")
    _, stranger = make_key("stranger")
    job = make_job(owner, status="succeeded", video_key="videos/x.mp4", thumbnail_key="videos/x.jpg")
    headers = {"Authorization": f"Bearer {stranger}"}
    for path in (f"/jobs/{job.id}", f"/jobs/{job.id}/video", f"/jobs/{job.id}/thumbnail"):
        response = client.get(path, headers=headers)
        assert response.status_code == 404, path
        assert response.json()["error"]["type"] == "not_found_error"
    listed = client.get("/jobs", headers=headers).json()
    assert listed["data"] == []
