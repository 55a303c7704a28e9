"""create_app(settings): the ASGI application with every dialect mounted."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from trackbook import __version__, web
from trackbook.clock import Clock, SystemClock
from trackbook.delivery.worker import outbox_state
from trackbook.dialects.activecampaign import trackcmp, v3
from trackbook.dialects.activecampaign.errors import TrackcmpErrors, V3Errors
from trackbook.dialects.bodies import TOO_DEEP
from trackbook.dialects.cors import IngestCors
from trackbook.dialects.fluentcrm.errors import FluentErrors
from trackbook.dialects.fluentcrm.rest_route import RestRoute
from trackbook.dialects.fluentcrm.routes import PREFIX as FLUENTCRM_PREFIX
from trackbook.dialects.fluentcrm.routes import router as fluentcrm_router
from trackbook.dialects.limits import BodyLimit
from trackbook.dialects.native.automations import router as native_automations_router
from trackbook.dialects.native.errors import NativeErrors
from trackbook.dialects.native.routes import bench_router
from trackbook.dialects.native.routes import router as native_router
from trackbook.dialects.octeth.errors import OctethWire
from trackbook.dialects.octeth.routes import router as octeth_router
from trackbook.dialects.responses import (
    JSON,
    RETRY_AFTER_SECONDS,
    ErrorReply,
    dialect_for,
    register_dialect,
    render_error,
)
from trackbook.dialects.segment.errors import PREFIX as SEGMENT_PREFIX
from trackbook.dialects.segment.errors import SegmentErrors
from trackbook.dialects.segment.routes import router as segment_router
from trackbook.errors import DomainError, Invalid, NotFound, StorageUnavailable
from trackbook.metrics import OUTBOX_AGE, OUTBOX_DEPTH, RequestMetrics
from trackbook.ratelimits import RateLimited, RateLimitHeaders
from trackbook.services import Services
from trackbook.settings import Settings, load_settings
from trackbook.web.errors import PREFIXES as WEB_PREFIXES
from trackbook.web.errors import WebErrors
from trackbook.web.headers import SecurityHeaders
from trackbook.web.reference import install as install_reference
from trackbook.web.routes import router as web_router
from trackbook.web.session import BadCsrf, SignInRequired, signin_url
from trackbook.web.tracker import router as tracker_router

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or load_settings()
    services = Services.build(settings, clock or SystemClock())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    app = FastAPI(
        title="Trackbook",
        version=__version__,
        summary="Contact event tracking: a native API beside FluentCRM, Octeth, "
        "ActiveCampaign and Segment wire dialects.",
        lifespan=lifespan,
        # FastAPI's own pages load their assets from a CDN; web.reference serves them
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RestRoute)
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(IngestCors, services=services)
    # Octeth's few routes are matched first: a request walks the route list in order,
    # and Octeth's paths share no prefix with any other route's, so its event.track
    # need not fail to match the native and FluentCRM routes one by one before its own.
    register_dialect("/api/v1/", OctethWire())
    register_dialect("/api.php", OctethWire())
    app.include_router(octeth_router)
    register_dialect("/v1", NativeErrors())
    app.include_router(native_router)
    app.include_router(native_automations_router)
    register_dialect(FLUENTCRM_PREFIX, FluentErrors())
    app.include_router(fluentcrm_router)
    register_dialect(v3.PREFIX + "/", V3Errors())
    register_dialect("/event", TrackcmpErrors())
    register_dialect("/admin/api.php", TrackcmpErrors())
    app.include_router(v3.router)
    app.include_router(trackcmp.router)
    register_dialect(SEGMENT_PREFIX + "/", SegmentErrors())
    app.include_router(segment_router)
    if settings.bench_routes:
        app.include_router(bench_router)
    _install_error_handlers(app)
    _install_health(app, services)
    _install_dashboard(app)
    _install_metrics(app, services)
    return app


def _install_metrics(app: FastAPI, services: Services) -> None:
    app.add_middleware(RequestMetrics)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus exposition; the outbox gauges are read from the database now."""
        state = await services.db.query(outbox_state, now=services.clock.now())
        for kind, (depth, age) in state.items():
            OUTBOX_DEPTH.labels(kind).set(depth)
            OUTBOX_AGE.labels(kind).set(age)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _install_dashboard(app: FastAPI) -> None:
    for prefix in WEB_PREFIXES:
        register_dialect(prefix, WebErrors())
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=Path(web.__file__).parent / "static"), "static")
    app.include_router(web_router)
    app.include_router(tracker_router)
    install_reference(app)

    @app.exception_handler(SignInRequired)
    async def sign_in_first(_: Request, error: Exception) -> Response:
        assert isinstance(error, SignInRequired)  # noqa: S101 - registered for it
        return RedirectResponse(signin_url(error.next_path), status_code=303)

    @app.exception_handler(BadCsrf)
    async def bad_csrf(_: Request, __: Exception) -> Response:
        reply = ErrorReply(
            403,
            "csrf",
            "The form expired or came from another site; reload the page and try again.",
        )
        return WebErrors().render(reply)


def _render_domain_error(request: Request, error: DomainError) -> Response:
    """The error in the wire format of the dialect the request came through."""
    dialect = dialect_for(request.url.path) or NativeErrors()
    return dialect.render(dialect.reply_for(error))


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, DomainError)  # noqa: S101 - registered for DomainError
        return _render_domain_error(request, error)

    @app.exception_handler(RateLimited)
    async def rate_limited(request: Request, error: Exception) -> Response:
        assert isinstance(error, RateLimited)  # noqa: S101 - registered for RateLimited
        reply = ErrorReply(429, error.code, error.message, headers=error.headers)
        return render_error(request.url.path, reply)

    @app.exception_handler(OverflowError)
    @app.exception_handler(sa.exc.StatementError)
    @app.exception_handler(UnicodeEncodeError)
    async def unstorable(request: Request, error: Exception) -> Response:
        """Values no database can hold: an id beyond 64 bits names nothing (404); text
        with NUL or lone surrogates cannot be stored (422). Anything else is a bug."""
        cause = error.orig if isinstance(error, sa.exc.StatementError) else error
        message = str(cause)
        if isinstance(cause, OverflowError) or "out of int64 range" in message:
            return _render_domain_error(request, NotFound("no such id"))
        if (
            isinstance(cause, UnicodeEncodeError)
            or "invalid byte sequence" in message
            or ("unsupported Unicode escape" in message or "\\u0000" in message)
        ):
            invalid = Invalid(
                "body", "contains text that cannot be stored (NUL or invalid Unicode)"
            )
            return _render_domain_error(request, invalid)
        log.error("unhandled database error", exc_info=error)
        return render_error(
            request.url.path, ErrorReply(500, "internal", "an internal error occurred")
        )

    @app.exception_handler(StorageUnavailable)
    async def storage_unavailable(request: Request, error: Exception) -> Response:
        log.warning("storage unavailable: %s", error)
        reply = ErrorReply(
            503,
            "storage_unavailable",
            "storage is unavailable; nothing was stored, retry later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
        return render_error(request.url.path, reply)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)  # noqa: S101
        first = error.errors()[0]
        location = [str(part) for part in first.get("loc", ())]
        if location and location[0] in ("body", "query", "path", "header"):
            location = location[1:]
        field = ".".join(location) or None
        message = first.get("msg", "is invalid")
        if first.get("type") == "json_invalid":
            too_deep = first.get("ctx", {}).get("error") == TOO_DEEP
            field, message = None, TOO_DEEP if too_deep else "the body is not valid JSON"
        reply = ErrorReply(422, "invalid", f"{field}: {message}" if field else message, field)
        return render_error(request.url.path, reply)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)  # noqa: S101
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        headers = dict(error.headers) if error.headers else None
        reply = ErrorReply(error.status_code, code, str(error.detail), headers=headers)
        return render_error(request.url.path, reply)


def _install_health(app: FastAPI, services: Services) -> None:
    @app.get("/healthz", tags=["health"])
    async def healthz() -> JSON:
        """The process is alive."""
        return JSON({"status": "ok"})

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSON:
        """The database answers; 503 with Retry-After when it does not."""
        try:
            await services.db.ping()
        except Exception as error:
            log.warning("not ready: %s", error)
            return JSON(
                {"status": "unavailable", "reason": "database unreachable"},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        return JSON({"status": "ok"})
