"""The live deployment of tests/e2e, for driving /v1 with the real `openai` SDK."""

from tests.e2e.conftest import artifacts, live, live_key  # noqa: F401
