"""The external classifier hooks: HTTP moderation endpoints asked after the policy's rules.

Contract (the shape of OpenAI's `POST /v1/moderations`):
request  `POST KINEMA_MODERATION_URL` with JSON `{"input": ["text", ...]}` (and `Authorization: Bearer
         KINEMA_MODERATION_API_KEY` when set);
response 200 with JSON `{"results": [{"flagged": bool, "categories": {"<name>": bool, ...}}, ...]}`, one
         result per input in order. A flagged result blocks its field with the categories marked true.

Images (`classify_images`, at `KINEMA_MODERATION_IMAGE_URL`): the request's `input` is a list of
`{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}` parts, as OpenAI's
omni-moderation takes them; the answer is one result per image or, as OpenAI gives for a multi-part
input, one result for them all. Any flagged result blocks, with the categories marked true.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx


class ClassifierUnavailable(Exception):
    """The endpoint did not answer in time, failed, or answered outside the contract."""


def _results(url: str, inputs: list[Any], *, timeout_s: float, api_key: str) -> list[Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.post(url, json={"input": inputs}, headers=headers, timeout=timeout_s)
        response.raise_for_status()
        results: Any = response.json()["results"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise ClassifierUnavailable(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(results, list):
        raise ClassifierUnavailable(f"'results' is not a list: {results!r:.200}")
    return results


def classify(url: str, texts: list[str], *, timeout_s: float, api_key: str = "") -> list[list[str]]:
    """For each text, the categories the endpoint flagged it in (empty: not flagged)."""
    results = _results(url, list(texts), timeout_s=timeout_s, api_key=api_key)
    if len(results) != len(texts):
        raise ClassifierUnavailable(f"expected {len(texts)} results, got {results!r:.200}")
    return [_flagged(result) for result in results]


def classify_images(url: str, jpegs: list[bytes], *, timeout_s: float, api_key: str = "") -> list[str]:
    """The categories the endpoint flagged any of the JPEG images in (empty: none flagged)."""
    parts = [
        {
            "type": "image_url",
            "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()},
        }
        for jpeg in jpegs
    ]
    results = _results(url, parts, timeout_s=timeout_s, api_key=api_key)
    if len(results) not in (1, len(jpegs)):
        raise ClassifierUnavailable(f"expected 1 or {len(jpegs)} results, got {results!r:.200}")
    return sorted({name for result in results for name in _flagged(result)})


def _flagged(result: Any) -> list[str]:
    """The categories one result flags (empty when not flagged)."""
    if not isinstance(result, dict) or not isinstance(result.get("flagged"), bool):
        raise ClassifierUnavailable(f"a result without a boolean 'flagged': {result!r:.200}")
    categories = result.get("categories") or {}
    if not isinstance(categories, dict):
        raise ClassifierUnavailable(f"'categories' is not an object: {categories!r:.200}")
    names = sorted(str(name) for name, hit in categories.items() if hit is True)
    # Flagged with no category named still blocks, under a name that says where it came from.
    return (names or ["classifier"]) if result["flagged"] else []
