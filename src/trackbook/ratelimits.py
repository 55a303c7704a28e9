"""Rate limits per account, API key, actid or client address (the `limits` library).

Counters live in memory, or in Redis when TRACKBOOK_REDIS_URL is set, so that several
API processes share them. Answers carry the IETF RateLimit-Policy and RateLimit headers
(draft-ietf-httpapi-ratelimit-headers: `RateLimit-Policy: 5000;w=60`,
`RateLimit: limit=5000, remaining=4999, reset=60`); a refused request also gets
Retry-After and is answered in its dialect's error shape with status 429.
"""

from __future__ import annotations

import hashlib
import logging
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import Scope

from trackbook.errors import DomainError
from trackbook.middleware import HeadersMiddleware
from trackbook.settings import Settings

log = logging.getLogger(__name__)
STATE_KEY = "rate_limit_headers"


class RateLimited(DomainError):
    code = "rate_limited"

    def __init__(self, retry_after: int, headers: dict[str, str]) -> None:
        super().__init__(f"too many requests; retry in {retry_after} s")
        self.retry_after = retry_after
        self.headers = headers | {"Retry-After": str(retry_after)}


def key_identity(secret: str) -> str:
    """An API key as a counter name: a digest, so no secret reaches the storage."""
    return "key:" + hashlib.sha256(secret.encode()).hexdigest()[:24]


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        storage: Storage
        if settings.redis_url:
            uri = settings.redis_url.replace("redis://", "async+redis://", 1)
            storage = RedisStorage(uri, wrap_exceptions=True, key_prefix=settings.redis_key_prefix)
        else:
            storage = MemoryStorage()
        self._strategy = FixedWindowRateLimiter(storage)
        self._items: dict[str, RateLimitItem] = {
            "native": parse(settings.rate_limit_native),
            "fluentcrm": parse(settings.rate_limit_fluentcrm),
            "octeth_track": parse(settings.rate_limit_octeth_track),
            "octeth_properties": parse(settings.rate_limit_octeth_properties),
            "activecampaign": parse(settings.rate_limit_activecampaign),
            "trackcmp_actid": parse(settings.rate_limit_trackcmp_actid),
            "trackcmp_ip": parse(settings.rate_limit_trackcmp_ip),
            "segment": parse(settings.rate_limit_segment),
            "signin": parse(settings.rate_limit_signin),
        }

    async def check(self, request: Request, name: str, *identities: str) -> None:
        """Counts the request against each identity's limit; RateLimited when one is
        used up. The headers of the tightest limit go on the answer either way. If the
        counter storage is down, requests pass (and a warning is logged)."""
        item = self._items[name]
        allowed, remaining, reset = True, item.amount, 0
        try:
            for identity in identities:
                allowed &= await self._strategy.hit(item, name, identity)
                stats = await self._strategy.get_window_stats(item, name, identity)
                remaining = min(remaining, stats.remaining)
                reset = max(reset, 0, int(stats.reset_time - time.time()) + 1)
        except StorageError as error:
            log.warning("rate limit storage unavailable, not limiting: %s", error)
            return
        window = item.get_expiry()
        headers = {
            "RateLimit-Policy": f"{item.amount};w={window}",
            "RateLimit": f"limit={item.amount}, remaining={remaining}, reset={reset}",
        }
        setattr(request.state, STATE_KEY, headers)
        if not allowed:
            raise RateLimited(reset or 1, headers)


class RateLimitHeaders(HeadersMiddleware):
    """Puts the headers a limit check left in the request state on the answer."""

    def add_headers(self, scope: Scope, headers: MutableHeaders) -> None:
        for name, value in ((scope.get("state") or {}).get(STATE_KEY) or {}).items():
            headers.setdefault(name, value)
