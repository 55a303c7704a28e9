"""Prometheus metrics (served at /metrics) and the request log line.

Metrics are process-wide, as Prometheus clients keep them: one process is one target.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

EVENTS = Counter(
    "trackbook_events",
    "Events by the dialect that carried them and what became of them",
    ["dialect", "outcome"],  # accepted, duplicate, dropped
)
GROUP_SIZE = Histogram(
    "trackbook_group_commit_events",
    "Events written per group-commit transaction",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
REQUEST_SECONDS = Histogram(
    "trackbook_http_request_duration_seconds",
    "Time to answer a request, by route template",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_DEPTH = Gauge(
    "trackbook_outbox_pending", "Automation runs and deliveries not done yet", ["kind"]
)
OUTBOX_AGE = Gauge(
    "trackbook_outbox_oldest_due_seconds",
    "How long the oldest due run or delivery has been waiting",
    ["kind"],
)
DELIVERIES = Counter(
    "trackbook_webhook_attempts", "Webhook delivery attempts by outcome", ["outcome"]
)
EMAILS = Counter("trackbook_emails", "Emails sent by automations, by outcome", ["outcome"])

current_account: ContextVar[int | None] = ContextVar("trackbook_account", default=None)
"""The account a request authenticated as, for the request log line."""

request_log = logging.getLogger("trackbook.requests")


class RequestMetrics:
    """Times every HTTP request and writes one log line for it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        current_account.set(None)

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            took = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            REQUEST_SECONDS.labels(scope["method"], template, str(status)).observe(took)
            request_log.info(
                "%s %s %s %.1fms",
                scope["method"],
                scope["path"],
                status,
                took * 1000,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": template,
                    "status": status,
                    "duration_ms": round(took * 1000, 2),
                    "account": current_account.get(),
                },
            )
