"""Structured logs: one JSON object per line, with the request, account and trace they belong to.

Two shapes: the Elastic Common Schema (LOG_FORMAT=ecs, the default; ecs_logs.py) and this
module's own field names (LOG_FORMAT=json, kept for one release for those who parse them). And
one for a person at a terminal (LOG_FORMAT=console, what `make run` sets): a short line each,
on the terminal only; LOG_FILE keeps ECS lines then, since what reads a file is a machine.

What may be logged is decided here and at the call sites: never a body, a header, a password, a
token, a TOTP secret or code. Requests are logged by route template, not by raw path, so a token
in a query string (a mistaken client) cannot reach the log either.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from logging.handlers import WatchedFileHandler
from pathlib import Path
from typing import Any, TextIO

from opentelemetry import trace


@dataclass
class RequestInfo:
    """Mutable, so a handler running in a worker thread can fill in what the access log reads."""

    request_id: str
    route: str = ""
    account_id: str = ""
    outcome: str = ""
    transaction_id: str = ""  # the request's server span, for ECS's transaction.id


# What the json shape prints of a RequestInfo, under these names.
_JSON_REQUEST_FIELDS = ("request_id", "route", "account_id", "outcome")


current_request: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "current_request", default=None
)

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = current_request.get()
        if request is not None:
            entry.update(
                {k: getattr(request, k) for k in _JSON_REQUEST_FIELDS if getattr(request, k)}
            )
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
            entry["span_id"] = format(span.span_id, "016x")
        # Structured fields given as logger.info("...", extra={...}).
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    """`12:04:31 INFO  message  key=value ...`: local time, the request's own line shortened to
    `POST /api/auth/login 401 (invalid_credentials) 12.3 ms`."""

    def format(self, record: logging.LogRecord) -> str:
        time = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        # uvicorn's color_message repeats the message with terminal colours: never shown.
        extra = {
            k: v for k, v in vars(record).items() if k not in _STANDARD and k != "color_message"
        }
        request = current_request.get()
        message = record.getMessage()
        if record.name == "tessera.access" and request is not None:
            method, status = extra.pop("method", ""), extra.pop("status", "")
            took = extra.pop("duration_ms", "")
            outcome = "" if request.outcome == "ok" else f" ({request.outcome})"
            message = f"{method} {request.route} {status}{outcome} {took} ms"
        elif request is not None and request.route:
            extra["route"] = request.route
        line = f"{time} {record.levelname:<7} {message}"
        if extra:
            line += "  " + " ".join(f"{key}={value}" for key, value in extra.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(
    level: str = "INFO",
    log_file: str | None = None,
    stream: TextIO | None = None,
    log_format: str = "ecs",
    service_name: str = "tessera",
) -> None:
    """Logs to `stream` (stdout unless a command's own output goes there) and LOG_FILE."""
    formatter: logging.Formatter
    if log_format == "json":
        formatter = JsonFormatter()
    else:
        from interfaces.ecs_logs import EcsFormatter

        formatter = EcsFormatter(service_name)
    terminal = logging.StreamHandler(stream or sys.stdout)
    terminal.setFormatter(ConsoleFormatter() if log_format == "console" else formatter)
    handlers: list[logging.Handler] = [terminal]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        # Reopened when logrotate (or anyone) moves the file away, so rotation loses no line.
        file = WatchedFileHandler(log_file, encoding="utf-8")
        file.setFormatter(formatter)
        handlers.append(file)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party request logs would duplicate ours, some with raw paths: keep them quiet.
    for noisy in ("httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
