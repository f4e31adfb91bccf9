"""Structured logs: every line one JSON object (or a console line), with the request and job ids bound.

Code keeps logging through the standard library (`logging.getLogger(__name__)`); the root handler set up
here renders each record through structlog, merging the context variables bound for the request (by
`app.edge`) or the task (by `worker.telemetry`). API keys are scrubbed from every line.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

HANDLER_NAME = "kinema"
# A whole key (`kn_<prefix>_<secret>`) anywhere in a string; the prefix alone is not a secret.
_KEY_PATTERN = re.compile(r"kn_[A-Za-z0-9]{10}_[A-Za-z0-9]{32}")
_REDACTED = "kn_[redacted]"


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _KEY_PATTERN.sub(_REDACTED, value) if "kn_" in value else value
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def redact_keys(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """A structlog processor: no API key reaches a log line, whatever a message or exception carried."""
    return {name: _scrub(value) for name, value in event_dict.items()}


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (test capture and redirections included)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),  # `logging` calls' extra={...} fields
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
    ]


def configure_logging(log_format: str = "json", level: str = "INFO") -> None:
    """Route the root logger (and structlog's loggers) through one handler on stderr; idempotent."""
    shared = _shared_processors()
    if log_format == "json":
        final: list[Processor] = [
            structlog.processors.format_exc_info,
            redact_keys,
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(),
        ]
    else:
        final = [redact_keys, structlog.dev.ConsoleRenderer(colors=False)]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = _StderrHandler()
    handler.name = HANDLER_NAME
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
