"""Structured logs: one JSON object per line, each carrying the id of the request it was
written for (the id `tally.http.limits.RequestIds` gives the request and echoes in its
`X-Request-Id` header), so a client's report can be matched to the server's lines.

`tally serve` configures uvicorn with `log_config()`; `RequestLogContext` (a middleware inside
`RequestIds`) makes the request's id known to every line written while it is answered.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from graph.errors import REQUEST_ID_KEY

REQUEST_ID: ContextVar[str | None] = ContextVar("tally_request_id", default=None)
"""The id of the request being answered, if any."""
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """A record as one JSON line: time, level, logger, message, pid, request_id, the record's
    extra fields, and the exception's traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id = REQUEST_ID.get()
        if request_id is not None:
            line["request_id"] = request_id
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn and Tally: JSON lines on stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": level, "propagate": True},
        },
    }


class RequestLogContext:
    """Makes the request's id (set in the scope by `RequestIds`) part of every log line
    written while the request is answered (the access line included: `RequestObserver` writes
    it inside this middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        identifier = scope.get(REQUEST_ID_KEY)
        if scope["type"] != "http" or not isinstance(identifier, str):
            await self.app(scope, receive, send)
            return
        token = REQUEST_ID.set(identifier)
        try:
            await self.app(scope, receive, send)
        finally:
            REQUEST_ID.reset(token)
