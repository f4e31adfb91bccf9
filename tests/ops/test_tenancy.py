"""Tenancy, for every route the app has: another key's id is a 404, and lists never show its rows.

The routes are read from the app itself, so a new endpoint is covered (or must be classified here)
without anyone remembering to add it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts

from app.api_keys.models import Scope
from app.main import create_app
from app.storage import get_storage
from app.webhooks.models import WebhookDelivery, WebhookEndpoint, new_id

# Path parameters that name something a key owns, and the owner's resource each is given.
OWNED_PARAMS = {"job_id": "job", "video_id": "job", "endpoint_id": "endpoint", "delivery_id": "delivery"}
# Path parameters that are not ids of a key's rows, and the value to send.
OTHER_PARAMS = {"variant": "video"}
# Routes whose ids are not owned by a key, and why.
SHARED_ROUTES = {
    "/v1/models/{model_id:path}": "models are the deployment's, the same for every key",
    "/playground/{name}": "the playground's static files",
    "/v1/admin/keys/{key_id}": "the admin API manages every key (admin scope)",
}
# Lists that are not per-key rows, or that the caller may not read at all.
NOT_TENANT_LISTS = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc", "/", "/playground"}
# Bodies tried in turn on a route that takes one, until one gets past validation (not a 400).
BODIES: list[dict[str, Any] | None] = [
    None,
    {},
    {"prompt": "a red ball"},
    {"prompt": "a red ball", "duration": 1},
]
_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


@dataclass(frozen=True)
class Route:
    method: str
    path: str

    @property
    def params(self) -> list[str]:
        return _PARAM.findall(self.path)


def app_routes() -> list[Route]:
    """Every method and path the app serves (HEAD aside)."""
    routes = []
    for context in iter_route_contexts(create_app().routes):
        for method in sorted(getattr(context, "methods", None) or ()):
            if method != "HEAD":
                routes.append(Route(method, str(context.path)))
    return routes


ROUTES = app_routes()
ID_ROUTES = [r for r in ROUTES if r.params and r.path not in SHARED_ROUTES]
LIST_ROUTES = [r for r in ROUTES if r.method == "GET" and not r.params and r.path not in NOT_TENANT_LISTS]


def test_every_route_with_an_id_is_classified() -> None:
    for route in ROUTES:
        if route.path in SHARED_ROUTES:
            continue
        unknown = [p for p in route.params if p not in OWNED_PARAMS and p not in OTHER_PARAMS]
        assert not unknown, f"{route}: say in this test whether {unknown} name a key's rows"
    assert len(ID_ROUTES) >= 19 and len(LIST_ROUTES) >= 4  # what the app has today, at least


@pytest.fixture
def owner_rows(make_key: Any, make_job: Any, db_session: Any, tmp_path: Path) -> dict[str, Any]:
    """The owner's key and a row of each kind an id can name: a finished job (its files stored), an
    endpoint and a delivery."""
    owner, owner_key = make_key("owner", scopes=list(Scope))
    _, stranger_key = make_key("stranger", scopes=[Scope.GENERATE, Scope.READ])
    job = make_job(
        owner,
        status="succeeded",
        video_key=f"videos/{owner.id}/x.mp4",
        thumbnail_key=f"videos/{owner.id}/x.jpg",
        output_frames=16,
        output_duration_s=2.0,
    )
    stored = tmp_path / "stored"
    stored.write_bytes(b"not really an mp4")
    for object_key in (job.video_key, job.thumbnail_key):
        get_storage().put_file(object_key, stored, "application/octet-stream")
    endpoint = WebhookEndpoint(
        id=new_id("we"),
        api_key_id=owner.id,
        url="https://example.com/hook",
        events=["video.completed"],
        secret="whsec_" + "A" * 32,
    )
    db_session.add(endpoint)
    db_session.flush()
    delivery = WebhookDelivery(
        id=new_id("msg"),
        event_id=new_id("evt"),
        event_type="video.completed",
        api_key_id=owner.id,
        job_id=job.id,
        endpoint_id=endpoint.id,
        payload="{}",
        status="failed",
    )
    db_session.add(delivery)
    db_session.commit()
    return {
        "owner_key": owner_key,
        "stranger_key": stranger_key,
        "owner_id": owner.id,
        "ids": {"job": job.id, "endpoint": endpoint.id, "delivery": delivery.id},
    }


def _path(route: Route, ids: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return ids[OWNED_PARAMS[name]] if name in OWNED_PARAMS else OTHER_PARAMS[name]

    return _PARAM.sub(value, route.path)


def _call(client: Any, route: Route, key: str, ids: dict[str, str]) -> Any:
    """The route with `ids` filled in, past body validation if any body gets there."""
    headers = {"Authorization": f"Bearer {key}"}
    response = None
    for body in BODIES if route.method in ("POST", "PATCH", "PUT") else [None]:
        response = client.request(
            route.method, _path(route, ids), headers=headers, json=body, follow_redirects=False
        )
        if response.status_code != 400:
            break
    return response


def test_another_keys_id_is_404_on_every_route(client: Any, owner_rows: dict[str, Any]) -> None:
    ids = owner_rows["ids"]
    for route in ID_ROUTES:
        response = _call(client, route, owner_rows["stranger_key"], ids)
        assert response.status_code == 404, (route, response.status_code, response.text)
        assert response.json()["error"]["type"] == "not_found_error", route
    # The same requests reach the rows for their owner (deletes last: they remove what the others use).
    for route in sorted(ID_ROUTES, key=lambda r: r.method == "DELETE"):
        response = _call(client, route, owner_rows["owner_key"], ids)
        assert response.status_code != 404, (route, response.text)


def test_lists_never_show_another_keys_rows(client: Any, owner_rows: dict[str, Any]) -> None:
    owned = [*owner_rows["ids"].values(), owner_rows["owner_id"]]
    for route in LIST_ROUTES:
        response = _call(client, route, owner_rows["stranger_key"], owner_rows["ids"])
        assert response.status_code in (200, 403), (route, response.text)
        leaked = [row_id for row_id in owned if row_id in response.text]
        assert not leaked, (route, leaked)
    # The lists do show the rows to their owner.
    for path, row in (("/jobs", "job"), ("/v1/videos", "job"), ("/v1/webhooks", "endpoint")):
        response = client.get(path, headers={"Authorization": f"Bearer {owner_rows['owner_key']}"})
        assert owner_rows["ids"][row] in response.text, path
