"""What the fuzzing found, pinned: each was a 5xx or a response the spec did not describe."""

from __future__ import annotations

from typing import Any

import pytest

from app.api_keys.models import Scope


@pytest.fixture
def admin(make_key: Any) -> dict[str, str]:
    _, key = make_key("admin", scopes=list(Scope))
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/admin/keys", {"name": "a\x00b"}),  # was a 500: Postgres text cannot hold NUL
        ("/generate", {"prompt": "a red\x00 ball", "duration": 1}),
        ("/generate", {"prompt": "a red ball", "negative_prompt": "\x00", "duration": 1}),
    ],
)
def test_a_nul_character_is_a_400(
    client: Any, admin: dict[str, str], path: str, body: dict[str, Any]
) -> None:
    response = client.post(path, json=body, headers=admin)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_value"


@pytest.mark.parametrize("field", ["rate_limit_rpm", "max_concurrent_jobs", "monthly_quota_s"])
def test_a_limit_past_32_bits_is_a_400(client: Any, admin: dict[str, str], field: str) -> None:
    # Was a 500 (integer out of range) on create; the same on update.
    created = client.post("/v1/admin/keys", json={"name": "big", field: 2**31}, headers=admin)
    assert created.status_code == 400 and created.json()["error"]["param"] == field
    ok = client.post("/v1/admin/keys", json={"name": "max", field: 2**31 - 1}, headers=admin)
    assert ok.status_code == 201, ok.text
    key_id = ok.json()["id"]
    updated = client.patch(f"/v1/admin/keys/{key_id}", json={field: 2**40}, headers=admin)
    assert updated.status_code == 400 and updated.json()["error"]["param"] == field


def test_a_405_allows_every_method_of_the_path(client: Any, admin: dict[str, str]) -> None:
    # Was the methods of whichever route the router tried first (`Allow: POST` on /v1/videos).
    for path, allowed in (
        ("/v1/videos", "GET, POST"),
        ("/v1/webhooks/we_x", "DELETE, GET, PATCH"),
        ("/v1/videos/edits", "POST"),
    ):
        response = client.request("PUT", path, headers=admin)
        assert response.status_code == 405
        assert response.headers["allow"] == allowed, path


def test_the_spec_says_what_the_api_does(client: Any) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer kn_...`.",
    }
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)  # validation errors are 400s
            if path in ("/healthz", "/readyz"):
                assert "security" not in operation
                continue
            assert operation["security"] == [{"bearerAuth": []}]
            assert {"401", "403", "429", "503"} <= responses.keys(), (method, path)
            error = responses["401"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}
    # Bodies the handlers read themselves are documented (they were missing: every fuzzed call was a 400).
    for path in ("/v1/videos", "/v1/videos/edits", "/v1/videos/extensions", "/v1/videos/{video_id}/remix"):
        body = spec["paths"][path]["post"]["requestBody"]
        assert body["required"] is True
        assert {"application/json", "multipart/form-data"} <= body["content"].keys()
        assert "prompt" in body["content"]["application/json"]["schema"]["properties"]
