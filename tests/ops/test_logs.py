"""Structured logs: JSON lines with the request id (echoed to the client) and the job id; no API key."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from app.logs import configure_logging


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` that is a JSON object (the log lines)."""
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def access_lines(text: str) -> list[dict[str, Any]]:
    return [line for line in json_lines(text) if line.get("logger") == "kinema.access"]


def test_every_request_gets_an_id_echoed_and_logged(
    client: Any, make_key: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    row, key = make_key()
    capsys.readouterr()
    mine = client.get("/jobs", headers={"Authorization": f"Bearer {key}", "X-Request-ID": "trace-42.a"})
    made = client.get("/jobs", headers={"Authorization": f"Bearer {key}"})
    hostile = client.get("/jobs", headers={"Authorization": f"Bearer {key}", "X-Request-ID": "a b\tc" * 60})
    assert mine.headers["x-request-id"] == "trace-42.a"
    assert len(made.headers["x-request-id"]) == 32
    assert hostile.headers["x-request-id"] != "a b\tc" * 60  # not a sane token: replaced
    lines = access_lines(capsys.readouterr().err)
    assert [line["request_id"] for line in lines] == [
        "trace-42.a",
        made.headers["x-request-id"],
        hostile.headers["x-request-id"],
    ]
    first = lines[0]
    assert first["route"] == "/jobs" and first["status"] == 200 and first["method"] == "GET"
    assert first["api_key_id"] == row.id and first["level"] == "info" and "timestamp" in first


def test_the_job_id_is_on_every_line_of_a_job_request(
    client: Any, make_key: Any, make_job: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    row, key = make_key()
    job = make_job(row)
    capsys.readouterr()
    client.post(f"/jobs/{job.id}/cancel", headers={"Authorization": f"Bearer {key}"})
    lines = json_lines(capsys.readouterr().err)
    ours = [line for line in lines if line.get("request_id")]
    assert ours, lines
    assert all(line.get("job_id") == job.id for line in ours), ours


def test_a_submit_logs_the_new_job_id(client: Any, make_key: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, key = make_key()
    capsys.readouterr()
    response = client.post(
        "/generate", headers={"Authorization": f"Bearer {key}"}, json={"prompt": "a red ball", "duration": 1}
    )
    assert response.status_code == 202, response.text
    (line,) = access_lines(capsys.readouterr().err)
    assert line["job_id"] == response.json()["id"]


def test_the_api_key_is_never_logged(
    client: Any, make_key: Any, make_job: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    row, key = make_key()
    job = make_job(row)
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    capsys.readouterr()
    headers = {"Authorization": f"Bearer {key}"}
    client.get("/jobs", headers=headers)
    client.get(f"/jobs/{job.id}", headers=headers)
    client.post("/generate", headers=headers, json={"prompt": key, "duration": 1})
    client.post("/generate", headers=headers, json={"prompt": "x", "duration": "not a number"})
    client.get("/jobs", headers={"Authorization": f"Bearer {forged}"})
    client.get("/jobs/nope", headers={"Authorization": key})  # no scheme
    logging.getLogger("tests").warning("a careless line quoting %s", key)
    err = capsys.readouterr().err
    assert len(access_lines(err)) == 6
    assert key not in err and forged not in err
    assert "a careless line quoting kn_[redacted]" in err


def test_console_format_for_people(client: Any, make_key: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _, key = make_key()
    configure_logging("console", "INFO")
    try:
        capsys.readouterr()
        client.get("/jobs", headers={"Authorization": f"Bearer {key}", "X-Request-ID": "r-1"})
        err = capsys.readouterr().err
        assert "request" in err and "request_id=r-1" in err and not err.lstrip().startswith("{")
    finally:
        configure_logging("json", "INFO")


def test_a_server_error_has_the_request_id_headers_and_a_logged_traceback(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from fastapi.testclient import TestClient

    from app.main import create_app

    app = create_app()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        capsys.readouterr()
        response = client.get("/boom", headers={"X-Request-ID": "boom-1"})
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert response.headers["x-request-id"] == "boom-1"
    assert response.headers["x-content-type-options"] == "nosniff"
    lines = json_lines(capsys.readouterr().err)
    error = next(line for line in lines if line["message"] == "unhandled error")
    assert error["request_id"] == "boom-1" and "RuntimeError: a bug" in error["exception"]
    (access,) = [line for line in lines if line.get("logger") == "kinema.access"]
    assert access["status"] == 500 and access["route"] == "/boom"
