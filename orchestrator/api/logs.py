"""Request ids in chorus's logs, and logs as JSON lines when asked.

The HTTP app sets the request's id (its `x-request-id`) in a context variable for the duration of
the request; `RequestIdFilter` copies it onto every log record, so text and JSON logs both carry
it. `configure_logging(json_lines=True)` makes the `chorus` loggers write one JSON object per line.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid

REQUEST_ID_HEADER = "x-request-id"
# What a client may send as its request id: it reaches logs and vLLM request ids, so keep it tame.
_ACCEPTED = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("chorus_request_id", default="")


def request_id_from(header: str | None) -> str:
    """The client's id when it is a sane token; a fresh one otherwise."""
    if header is not None and _ACCEPTED.fullmatch(header):
        return header
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            record.request_id = current_request_id.get()
        return True


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "") or None,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True)


def configure_logging(json_lines: bool = False, level: int = logging.INFO) -> None:
    """One handler on the `chorus` logger (idempotent: a second call replaces the first)."""
    logger = logging.getLogger("chorus")
    for handler in list(logger.handlers):
        if getattr(handler, "chorus_owned", False):
            logger.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.chorus_owned = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonLines() if json_lines else logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
