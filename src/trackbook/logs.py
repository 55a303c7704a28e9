"""Log output: one JSON object per line for machines, plain text on a terminal."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter

PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# terminal escapes (colours, cursor moves): uvicorn adds its message again in colour as
# `color_message`, and a message may carry them from elsewhere
ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")


class JsonLines(JsonFormatter):
    """One JSON object per line, with no terminal escapes for a log store to keep, timed
    in ISO 8601 UTC (2026-12-05T18:06:01.229Z) as log stores parse it."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        moment = datetime.fromtimestamp(record.created, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        log_data.pop("color_message", None)
        return {
            name: ANSI.sub("", value) if isinstance(value, str) else value
            for name, value in log_data.items()
        }


def configure(level: str) -> None:
    """Sets up the root logger once, for `trackbook serve` and `trackbook worker`."""
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter(PLAIN))
    else:
        handler.setFormatter(
            JsonLines(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access line would repeat trackbook.requests; its errors stay
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every outbound request's URL (webhook endpoints may carry tokens there);
    # deliveries are recorded with their outcome instead
    logging.getLogger("httpx").setLevel(logging.WARNING)
