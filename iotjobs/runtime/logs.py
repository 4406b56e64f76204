"""Structured logs (structlog) for every service: one JSON object per line, or structlog's readable console
lines (IOTJOBS_LOG_FORMAT=console).

The services' own loggers and the libraries' stdlib loggers (aiokafka, aiohttp, gmqtt, asyncpg) go through one
`ProcessorFormatter`, so every line on stderr has the same shape. Request-scoped fields (request id, thing name,
job id, clientToken) are bound with `bind` and merged from structlog's context variables into every line
logged while the request is handled, the libraries' included."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog
from structlog.typing import Processor

FORMATS = ("json", "console")

_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def configure(level: str = "INFO", fmt: str = "json") -> None:
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    numeric = logging.getLevelName(level.upper())
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    finish: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if fmt == "json":
        finish.append(structlog.processors.format_exc_info)  # the console renderer prints tracebacks itself
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_SHARED, structlog.stdlib.ExtraAdder()],
            processors=[*finish, renderer],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)  # warnings come out as log lines too
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )


def get(name: str, **bound: Any) -> Any:
    """A lazy logger: module-level loggers pick up `configure` even when created before it runs."""
    return structlog.get_logger(name, **bound)


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Bind `fields` (those that are not None) to every line logged in this context, then unbind them."""
    present = {name: value for name, value in fields.items() if value is not None}
    with structlog.contextvars.bound_contextvars(**present):
        yield
