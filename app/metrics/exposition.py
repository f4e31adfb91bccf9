"""What a scrape reads: this process's metrics, or every process's (PROMETHEUS_MULTIPROC_DIR mode).

Several processes (`kinema serve --workers N`, a prefork Celery worker) each keep their own counters;
with PROMETHEUS_MULTIPROC_DIR set before they start, each writes its values to files in that folder and
a scrape adds them up, whichever process answers it.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The multiprocess folder when that mode is on."""
    return os.environ.get(MULTIPROC_ENV) or None


def scrape_registry() -> CollectorRegistry:
    """The registry a scrape reads: every process's files in multiprocess mode, else this process's."""
    path = multiprocess_dir()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry(auto_describe=True)
    multiprocess.MultiProcessCollector(registry, path=path)
    return registry


def prepare_multiprocess_dir(path: Path) -> None:
    """Empty `path` of metric files and name it in the environment, before any process that counts starts.

    Values left by an earlier run would be added to this one's, so its `*.db` files are removed first.
    """
    path.mkdir(parents=True, exist_ok=True)
    for old in path.glob("*.db"):
        old.unlink(missing_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)


def forget_process(pid: int) -> None:
    """A process that exits: drop its live gauges (counters and histograms stay in the totals)."""
    path = multiprocess_dir()
    if path is not None:
        multiprocess.mark_process_dead(pid, path)
