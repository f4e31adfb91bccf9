"""The admin API for keys and `kinema keys create` with scopes and limits."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner

from app.cli import cli


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_an_admin_creates_a_key_that_works_changes_its_limits_and_revokes_it(
    client: Any, make_key: Any
) -> None:
    _, admin = make_key("ops", scopes=["admin"])
    created = client.post(
        "/v1/admin/keys",
        headers=_auth(admin),
        json={
            "name": "team-a",
            "scopes": ["read", "generate", "read"],
            "rate_limit_rpm": 5,
            "monthly_quota_s": 60,
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    new_key, key_id = body["key"], body["id"]
    assert new_key.startswith(body["prefix"] + "_") and body["object"] == "api_key"
    assert body["scopes"] == ["generate", "read"]
    assert (body["rate_limit_rpm"], body["max_concurrent_jobs"], body["monthly_quota_s"]) == (5, None, 60)
    assert body["revoked_at"] is None

    used = client.get("/jobs", headers=_auth(new_key))
    assert used.status_code == 200 and used.headers["x-ratelimit-limit-requests"] == "5"
    assert (
        client.post("/generate", headers=_auth(new_key), json={"prompt": "a cat", "duration": 2}).status_code
        == 202
    )
    assert client.get("/v1/usage", headers=_auth(new_key)).json()["seconds_remaining"] == 58.0

    listed = client.get("/v1/admin/keys", headers=_auth(admin)).json()
    assert listed["object"] == "list"
    mine = [k for k in listed["data"] if k["id"] == key_id]
    assert len(mine) == 1 and "key" not in mine[0] and "key_hash" not in mine[0]
    assert mine[0]["last_used_at"] is not None  # it submitted a job
    assert client.get(f"/v1/admin/keys/{key_id}", headers=_auth(admin)).json()["name"] == "team-a"

    # Only what is sent changes; null sends a limit back to the deployment's default.
    patched = client.patch(
        f"/v1/admin/keys/{key_id}", headers=_auth(admin), json={"rate_limit_rpm": 50, "monthly_quota_s": None}
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["rate_limit_rpm"], patched.json()["monthly_quota_s"]) == (50, None)
    assert patched.json()["name"] == "team-a" and patched.json()["scopes"] == ["generate", "read"]
    after = client.get("/jobs", headers=_auth(new_key))
    assert after.headers["x-ratelimit-limit-requests"] == "50"
    assert after.headers["x-ratelimit-remaining-requests"] == "46"  # 3 earlier requests and this one
    assert client.get("/v1/usage", headers=_auth(new_key)).json()["seconds_limit"] is None

    revoked = client.delete(f"/v1/admin/keys/{key_id}", headers=_auth(admin))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    refused = client.get("/jobs", headers=_auth(new_key))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "revoked_api_key"


def test_admin_api_refuses_bad_input_naming_the_field(client: Any, make_key: Any) -> None:
    _, admin = make_key("ops", scopes=["admin"])
    for body, param in (
        ({"name": "x", "scopes": ["root"]}, "scopes.0"),
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "rate_limit_rpm": -1}, "rate_limit_rpm"),
        ({"name": ""}, "name"),
        ({"name": "x", "colour": "red"}, "colour"),
    ):
        response = client.post("/v1/admin/keys", headers=_auth(admin), json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["param"] == param, (body, response.text)
    for method in ("PATCH", "DELETE", "GET"):
        response = client.request(method, "/v1/admin/keys/key_nope", headers=_auth(admin), json={})
        assert response.status_code == 404, method
    assert client.post("/v1/admin/keys", headers=_auth(admin), json={"name": "x"}).json()["scopes"] == [
        "generate",
        "read",
    ]


def test_cli_creates_keys_with_scopes_and_limits(settings_env: dict[str, str]) -> None:
    runner = CliRunner()
    made = runner.invoke(
        cli,
        ["keys", "create", "--name", "cli-admin", "--scope", "admin", "--scope", "read", "--rpm", "7",
         "--max-concurrent", "2", "--monthly-quota-s", "300", "--json"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    created = json.loads(made.stdout)
    assert created["scopes"] == ["read", "admin"]
    assert (created["rate_limit_rpm"], created["max_concurrent_jobs"], created["monthly_quota_s"]) == (
        7,
        2,
        300,
    )
    plain = json.loads(runner.invoke(cli, ["keys", "create", "--name", "cli-plain", "--json"]).stdout)
    assert plain["scopes"] == ["generate", "read"] and plain["rate_limit_rpm"] is None
    listed = {k["id"]: k for k in json.loads(runner.invoke(cli, ["keys", "list", "--json"]).stdout)}
    assert listed[created["id"]]["scopes"] == ["read", "admin"]
    assert listed[created["id"]]["max_concurrent_jobs"] == 2
    assert runner.invoke(cli, ["keys", "create", "--name", "x", "--scope", "root"]).exit_code != 0
    assert runner.invoke(cli, ["keys", "create", "--name", "x", "--rpm", "-1"]).exit_code != 0
    for key_id in (created["id"], plain["id"]):
        assert runner.invoke(cli, ["keys", "revoke", key_id]).exit_code == 0
