"""Schemathesis over the OpenAPI spec, in process, with a key that has every scope.

Every operation gets `MAX_EXAMPLES` generated requests, valid and invalid (over 1000 in all, counted):
none may answer 5xx, and every response must match the spec (status code, content type, body schema,
headers, `Allow` on 405s, 401 without the key). Not checked: that every schema-valid request is accepted
and every schema-invalid one refused, since the API rightly checks more than a JSON schema can say (a
duration against the model's frame limit, a prompt that is blank once trimmed, a URL that must resolve)
and ignores unknown query parameters.

The examples are derandomized, so CI runs the same cases every time; for a deeper, random hunt:
`KINEMA_FUZZ_EXAMPLES=500 KINEMA_FUZZ_RANDOM=1 scripts/test tests/fuzz`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from app.api_keys.models import Scope
from app.config import get_settings
from app.deps import get_session
from app.main import create_app

MAX_EXAMPLES = int(os.environ.get("KINEMA_FUZZ_EXAMPLES", "40"))
MIN_CASES = 1000

# Built at import, as schemathesis needs the schema to make one test per operation; each test points
# the app at its own rolled-back session and settings.
APP = create_app()
get_settings.cache_clear()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
OPERATIONS = sum(1 for result in schema.get_all_operations() if result.ok())
CASES: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def enough_cases() -> Iterator[None]:
    """After the module: when every operation ran, at least MIN_CASES requests were made in all."""
    yield
    if len(CASES) == OPERATIONS and MAX_EXAMPLES >= 40:
        assert sum(CASES.values()) >= MIN_CASES, CASES


@pytest.fixture
def fuzz_key(db_session: Any, make_key: Any) -> Iterator[str]:
    """A key with every scope and no job limit, the app's requests on the test's session."""
    _, key = make_key("fuzz", scopes=list(Scope), max_concurrent_jobs=0)

    async def session() -> AsyncIterator[Any]:
        # As a request's own session would be, the shared one is usable after a request that failed.
        try:
            yield db_session
        except Exception:
            db_session.rollback()
            raise

    APP.dependency_overrides[get_session] = session
    yield str(key)
    APP.dependency_overrides.clear()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=not os.environ.get("KINEMA_FUZZ_RANDOM"),
    suppress_health_check=list(HealthCheck),
)
def test_api(case: Any, fuzz_key: str) -> None:
    CASES[case.operation.label] += 1
    case.call_and_validate(
        headers={"Authorization": f"Bearer {fuzz_key}"},
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
    )
