"""Managing webhook endpoints through /v1/webhooks, and refusing targets that are not public."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.webhooks.receiver import Receiver


def test_create_shows_the_secret_once_then_only_a_hint(
    client: Any, auth: tuple[Any, dict[str, str]], receiver: Receiver
) -> None:
    _, headers = auth
    created = client.post("/v1/webhooks", json={"url": receiver.url}, headers=headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["object"] == "webhook_endpoint" and body["id"].startswith("we_")
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    # Without `events`, the terminal events; `video.in_progress` is opt-in.
    assert body["events"] == ["video.completed", "video.failed", "video.canceled"]
    assert body["enabled"] is True and body["disabled_reason"] is None

    fetched = client.get(f"/v1/webhooks/{body['id']}", headers=headers).json()
    assert "secret" not in fetched
    assert fetched["secret_hint"] == body["secret_hint"]
    assert (
        fetched["secret_hint"].startswith(body["secret"][:10])
        and body["secret"][-4:] in fetched["secret_hint"]
    )
    listed = client.get("/v1/webhooks", headers=headers).json()
    assert [e["id"] for e in listed["data"]] == [body["id"]]
    assert "secret" not in listed["data"][0]


def test_update_rotate_and_delete(client: Any, auth: tuple[Any, dict[str, str]], receiver: Receiver) -> None:
    _, headers = auth
    endpoint = client.post("/v1/webhooks", json={"url": receiver.url}, headers=headers).json()
    path = f"/v1/webhooks/{endpoint['id']}"

    updated = client.patch(
        path,
        json={"url": f"{receiver.url}/hooks", "events": ["video.in_progress", "video.completed"]},
        headers=headers,
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["url"] == f"{receiver.url}/hooks"
    assert updated.json()["events"] == ["video.in_progress", "video.completed"]
    disabled = client.patch(path, json={"enabled": False}, headers=headers).json()
    assert disabled["enabled"] is False and disabled["disabled_reason"]
    enabled = client.patch(path, json={"enabled": True}, headers=headers).json()
    assert enabled["enabled"] is True and enabled["disabled_reason"] is None

    rotated = client.post(f"{path}/rotate_secret", headers=headers)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"].startswith("whsec_") and rotated.json()["secret"] != endpoint["secret"]
    assert client.get(path, headers=headers).json()["secret_hint"] == rotated.json()["secret_hint"]

    deleted = client.delete(path, headers=headers)
    assert deleted.status_code == 200 and deleted.json() == {
        "id": endpoint["id"],
        "object": "webhook_endpoint.deleted",
        "deleted": True,
    }
    assert client.get(path, headers=headers).status_code == 404
    assert client.get("/v1/webhooks", headers=headers).json()["data"] == []


def test_another_keys_endpoint_does_not_exist(
    client: Any, make_key: Any, auth: tuple[Any, dict[str, str]], receiver: Receiver
) -> None:
    _, headers = auth
    endpoint = client.post("/v1/webhooks", json={"url": receiver.url}, headers=headers).json()
    _, other = make_key("other")
    other_headers = {"Authorization": f"Bearer {other}"}
    for method, suffix in (
        ("get", ""),
        ("patch", ""),
        ("delete", ""),
        ("post", "/rotate_secret"),
        ("get", "/deliveries"),
    ):
        kwargs = {"json": {}} if method == "patch" else {}
        response = getattr(client, method)(
            f"/v1/webhooks/{endpoint['id']}{suffix}", headers=other_headers, **kwargs
        )
        assert response.status_code == 404, (method, suffix, response.text)
        assert response.json()["error"]["param"] == "id"
    assert client.get("/v1/webhooks", headers=other_headers).json()["data"] == []
    assert client.get(f"/v1/webhooks/{endpoint['id']}", headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"url": "ftp://example.com/hook"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http://user:pw@example.com/"}, "url"),
        ({"url": "http://127.0.0.1:9/", "events": []}, "events"),
        ({"url": "http://127.0.0.1:9/", "events": ["video.exploded"]}, "events.0"),
        ({"url": "http://127.0.0.1:9/", "secret": "mine"}, "secret"),
        ({}, "url"),
    ],
)
def test_bad_endpoint_requests_are_400_naming_the_field(
    client: Any, auth: tuple[Any, dict[str, str]], body: dict[str, Any], param: str
) -> None:
    _, headers = auth
    response = client.post("/v1/webhooks", json=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


PRIVATE_URLS = [
    "http://127.0.0.1:8000/hook",
    "http://localhost/hook",
    "http://10.1.2.3/hook",
    "http://192.168.0.10/hook",
    "http://172.16.5.4/hook",
    "http://100.64.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",
    "https://[fe80::1]/hook",
]


@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_targets_are_refused_in_production(
    client: Any, auth: tuple[Any, dict[str, str]], configure: Callable[..., None], url: str
) -> None:
    configure(webhook_allow_private_targets="false")
    _, headers = auth
    response = client.post("/v1/webhooks", json={"url": url}, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "url" and error["code"] == "invalid_url"
    assert "public addresses only" in error["message"]


def test_private_targets_are_refused_on_update_and_per_request(
    client: Any, auth: tuple[Any, dict[str, str]], configure: Callable[..., None]
) -> None:
    _, headers = auth
    # Registered while a development setting allowed it; production refuses new private URLs.
    endpoint = client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/"}, headers=headers).json()
    configure(webhook_allow_private_targets="false")
    update = client.patch(f"/v1/webhooks/{endpoint['id']}", json={"url": "http://10.0.0.1/"}, headers=headers)
    assert update.status_code == 400 and update.json()["error"]["param"] == "url"
    submit = client.post(
        "/generate",
        json={"prompt": "a red ball", "duration": 1, "webhook_url": "http://169.254.169.254/"},
        headers=headers,
    )
    assert submit.status_code == 400, submit.text
    assert submit.json()["error"]["param"] == "webhook_url"
    assert "cloud metadata" in submit.json()["error"]["message"]


def test_public_addresses_are_accepted_in_production(
    client: Any, auth: tuple[Any, dict[str, str]], configure: Callable[..., None]
) -> None:
    configure(webhook_allow_private_targets="false")
    _, headers = auth
    for url in ("https://93.184.215.14/hooks", "http://[2606:4700:4700::1111]:8443/x"):
        response = client.post("/v1/webhooks", json={"url": url}, headers=headers)
        assert response.status_code == 201, response.text


def test_per_request_signing_secret_is_stable_until_rotated(
    client: Any, auth: tuple[Any, dict[str, str]]
) -> None:
    _, headers = auth
    first = client.get("/v1/webhooks/default/secret", headers=headers)
    assert first.status_code == 200, first.text
    secret = first.json()["secret"]
    assert secret.startswith("whsec_")
    assert client.get("/v1/webhooks/default/secret", headers=headers).json()["secret"] == secret
    rotated = client.post("/v1/webhooks/default/rotate_secret", headers=headers).json()["secret"]
    assert rotated != secret and rotated.startswith("whsec_")
    assert client.get("/v1/webhooks/default/secret", headers=headers).json()["secret"] == rotated


def test_managing_endpoints_needs_the_generate_scope_and_reading_them_read(
    client: Any, make_key: Any, receiver: Receiver
) -> None:
    _, reader = make_key("reader", scopes=["read"])
    headers = {"Authorization": f"Bearer {reader}"}
    refused = client.post("/v1/webhooks", json={"url": receiver.url}, headers=headers)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "missing_scope"
    assert client.get("/v1/webhooks/default/secret", headers=headers).status_code == 403
    assert client.get("/v1/webhooks", headers=headers).status_code == 200
