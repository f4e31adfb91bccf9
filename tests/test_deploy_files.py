"""The container files: docker-compose.yml validates and wires the services; the Dockerfile's targets."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

# Jobs that run once and exit: compose waits for them with service_completed_successfully.
ONE_SHOT_SERVICES = {"migrate", "minio-init"}
# `.[worker]`, `kinema[worker]`, `["worker"]` (the extra read from pyproject.toml).
WORKER_EXTRA = re.compile(r"""\[\s*["']?worker\b""")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    return compose["services"]


def dockerfile_stages() -> dict[str, str]:
    """Each named stage's text, from its FROM line up to the next one."""
    stages: dict[str, str] = {}
    name = None
    for line in DOCKERFILE.read_text().splitlines():
        match = re.match(r"\s*FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            name = match.group(1).lower()
            stages[name] = ""
        if name is not None:
            stages[name] += line + "\n"
    return stages


def stage_closure(stages: dict[str, str], target: str) -> set[str]:
    """The target and every stage it builds on: its FROM parent, `COPY --from` and `--mount from=`."""
    seen: set[str] = set()
    pending = [target]
    while pending:
        name = pending.pop()
        if name in seen or name not in stages:
            continue
        seen.add(name)
        text = stages[name]
        parent = re.match(r"\s*FROM\s+(\S+)", text, re.IGNORECASE)
        if parent:
            pending.append(parent.group(1).lower())
        pending.extend(ref.lower() for ref in re.findall(r"\bfrom=([\w.-]+)", text, re.IGNORECASE))
    return seen


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_config_validates() -> None:
    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_compose_has_the_services(services: dict[str, Any]) -> None:
    assert {"postgres", "redis", "minio", "api", "worker"} <= services.keys()
    assert services["api"]["build"]["target"] == "api"
    assert services["worker"]["build"]["target"] == "worker"


def test_long_running_services_have_healthchecks(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name in ONE_SHOT_SERVICES:
            continue
        healthcheck = service.get("healthcheck", {})
        assert healthcheck.get("test"), f"{name} has no healthcheck"
        assert not healthcheck.get("disable"), f"{name} disables its healthcheck"


def test_api_and_worker_wait_for_their_dependencies(services: dict[str, Any]) -> None:
    expected = {
        "postgres": "service_healthy",
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
        "minio-init": "service_completed_successfully",
    }
    for name in ("api", "worker"):
        depends_on = services[name]["depends_on"]
        assert {dep: spec["condition"] for dep, spec in depends_on.items()} == expected


def test_worker_reserves_a_gpu_and_scales(services: dict[str, Any]) -> None:
    worker = services["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    # `--scale worker=N` needs generated container names and no fixed host ports.
    assert "container_name" not in worker
    assert "ports" not in worker


def test_dockerfile_api_target_has_no_worker_extra() -> None:
    stages = dockerfile_stages()
    assert {"api", "worker"} <= stages.keys()
    api_stages = stage_closure(stages, "api")
    worker_stages = stage_closure(stages, "worker")
    for name in api_stages:
        assert not WORKER_EXTRA.search(stages[name]), f"stage {name} (used by api) installs the worker extra"
        assert "torch" not in stages[name], f"stage {name} (used by api) mentions torch"
    assert any(WORKER_EXTRA.search(stages[name]) for name in worker_stages)
