"""The external classifier hook: an HTTP moderation endpoint asked after the policy's rules.

Contract (the shape of OpenAI's `POST /v1/moderations`):
request  `POST KINEMA_MODERATION_URL` with JSON `{"input": ["text", ...]}` (and `Authorization: Bearer
         KINEMA_MODERATION_API_KEY` when set);
response 200 with JSON `{"results": [{"flagged": bool, "categories": {"<name>": bool, ...}}, ...]}`, one
         result per input in order. A flagged result blocks its field with the categories marked true.
"""

from __future__ import annotations

from typing import Any

import httpx


class ClassifierUnavailable(Exception):
    """The endpoint did not answer in time, failed, or answered outside the contract."""


def classify(url: str, texts: list[str], *, timeout_s: float, api_key: str = "") -> list[list[str]]:
    """For each text, the categories the endpoint flagged it in (empty: not flagged)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.post(url, json={"input": texts}, headers=headers, timeout=timeout_s)
        response.raise_for_status()
        results: Any = response.json()["results"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise ClassifierUnavailable(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(results, list) or len(results) != len(texts):
        raise ClassifierUnavailable(f"expected {len(texts)} results, got {results!r:.200}")
    flagged: list[list[str]] = []
    for result in results:
        if not isinstance(result, dict) or not isinstance(result.get("flagged"), bool):
            raise ClassifierUnavailable(f"a result without a boolean 'flagged': {result!r:.200}")
        categories = result.get("categories") or {}
        if not isinstance(categories, dict):
            raise ClassifierUnavailable(f"'categories' is not an object: {categories!r:.200}")
        names = sorted(str(name) for name, hit in categories.items() if hit is True)
        # Flagged with no category named still blocks, under a name that says where it came from.
        flagged.append((names or ["classifier"]) if result["flagged"] else [])
    return flagged
