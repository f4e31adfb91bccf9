"""`kinema worker --queues ... --beat`: which queues a worker consumes, and beat on request."""

from __future__ import annotations

import os
from typing import Any

import pytest
from typer.testing import CliRunner

from app.cli import cli


def _command(monkeypatch: pytest.MonkeyPatch, *args: str) -> list[str]:
    # The exec that would replace this process is the boundary: capture its command line instead.
    captured: dict[str, Any] = {}
    monkeypatch.setattr(os, "execvp", lambda _file, argv: captured.update(argv=argv))
    result = CliRunner().invoke(cli, ["worker", *args])
    assert result.exit_code == 0, result.output
    return list(captured["argv"])


def test_a_webhooks_worker_runs_threads_with_beat_and_a_default_worker_consumes_both(
    monkeypatch: pytest.MonkeyPatch, settings_env: dict[str, str]
) -> None:
    hooks = _command(monkeypatch, "--queues", "webhooks", "--concurrency", "8", "--beat")
    assert hooks[hooks.index("--queues") + 1] == settings_env["KINEMA_WEBHOOK_QUEUE_NAME"]
    assert hooks[hooks.index("--pool") + 1] == "threads"  # no model is loaded
    assert "--beat" in hooks and hooks[hooks.index("--schedule") + 1].startswith(settings_env["KINEMA_HOME"])

    default = _command(monkeypatch)
    assert default[default.index("--queues") + 1] == (
        f"{settings_env['KINEMA_QUEUE_NAME']},{settings_env['KINEMA_WEBHOOK_QUEUE_NAME']}"
    )
    assert default[default.index("--pool") + 1] == "prefork" and "--beat" not in default


def test_unknown_queues_are_refused(settings_env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["worker", "--queues", "gpu"])
    assert result.exit_code == 2
    assert "generate, webhooks" in result.output
