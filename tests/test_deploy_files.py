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


@pytest.fixture(scope="module")
def resolved_services() -> dict[str, Any]:
    """The services as Compose itself reads them (anchors merged, every profile on), when it is here."""
    if shutil.which("docker-compose") is None:
        return yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    result = subprocess.run(
        [
            "docker-compose",
            "-f",
            "docker-compose.yml",
            "--profile",
            "cpu",
            "--profile",
            "monitoring",
            "config",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return yaml.safe_load(result.stdout)["services"]


def test_every_service_is_health_checked_or_a_one_shot(resolved_services: dict[str, Any]) -> None:
    assert {"prometheus", "worker-cpu", "webhooks"} <= resolved_services.keys()
    for name, service in resolved_services.items():
        if name in ONE_SHOT_SERVICES:
            # Run to completion once; whatever needs them waits for their success.
            assert service.get("restart") == "no", name
            continue
        healthcheck = service.get("healthcheck", {})
        assert healthcheck.get("test") and not healthcheck.get("disable"), f"{name} has no healthcheck"
    waits = {
        dep
        for service in resolved_services.values()
        for dep, spec in (service.get("depends_on") or {}).items()
        if isinstance(spec, dict) and spec.get("condition") == "service_completed_successfully"
    }
    assert waits == ONE_SHOT_SERVICES


def test_minio_init_creates_the_bucket_the_services_use(resolved_services: dict[str, Any]) -> None:
    init = resolved_services["minio-init"]
    command = " ".join(init.get("command") or []) + " ".join(init.get("entrypoint") or [])
    assert "mc mb" in command and "KINEMA_S3_BUCKET" in command
    bucket = init["environment"]["KINEMA_S3_BUCKET"]
    for name in ("api", "worker", "webhooks"):
        env = resolved_services[name]["environment"]
        assert env["KINEMA_S3_BUCKET"] == bucket
        assert env["KINEMA_S3_CREATE_BUCKET"] == "false"  # minio-init made it


def test_workers_scale_and_serve_metrics_without_host_ports(resolved_services: dict[str, Any]) -> None:
    for name in ("worker", "worker-cpu", "webhooks"):
        service = resolved_services[name]
        assert "container_name" not in service and "ports" not in service, name
        port = service["environment"]["KINEMA_WORKER_METRICS_PORT"]
        assert port in [str(p) for p in service.get("expose", [])], name
    assert resolved_services["worker"]["environment"]["KINEMA_LOG_FORMAT"] == "json"
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {
        name: config["port"]
        for job in scrape["scrape_configs"]
        for config in job["dns_sd_configs"]
        for name in config["names"]
    }
    assert targets["api"] == 8000 and targets["worker"] == int(port)


FINAL_STAGES = ("api", "worker")
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|make|clang|cmake)\b")


def from_chain(stages: dict[str, str], target: str) -> list[str]:
    """The stages a final image is made of: the target and its FROM parents (bind mounts add no layers)."""
    chain = []
    name: str | None = target
    while name is not None and name in stages:
        chain.append(name)
        parent = re.match(r"\s*FROM\s+(\S+)", stages[name], re.IGNORECASE)
        name = parent.group(1).lower() if parent else None
    return chain


def test_dockerfile_is_multi_stage_without_build_tools_in_the_final_images() -> None:
    stages = dockerfile_stages()
    assert any(BUILD_TOOLS.search(text) for text in stages.values()), "no build stage to compare with"
    for target in FINAL_STAGES:
        chain = from_chain(stages, target)
        assert len(chain) >= 2, chain
        for name in chain:
            assert not BUILD_TOOLS.search(stages[name]), f"{target} is built on {name}, which has build tools"
        # Wheels come in through bind mounts from the build stages, never by copying them in.
        assert not re.search(r"COPY\s+--from", stages[target], re.IGNORECASE)


def test_final_images_run_as_a_non_root_user() -> None:
    stages = dockerfile_stages()
    for target in FINAL_STAGES:
        users = re.findall(r"^\s*USER\s+(\S+)", stages[target], re.MULTILINE | re.IGNORECASE)
        assert users, f"{target} sets no USER"
        user = users[-1].split(":")[0]
        assert user not in ("root", "0"), target
    uid = re.search(r"ARG KINEMA_UID=(\d+)", DOCKERFILE.read_text())
    assert uid and int(uid.group(1)) >= 1000
