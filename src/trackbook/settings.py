"""The one Settings object, read from `TRACKBOOK_*` environment variables at start-up."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "TRACKBOOK_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    database_url: str = "sqlite+aiosqlite:///trackbook.db"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    redis_url: str | None = None
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    public_url: str | None = None
    """Base URL printed for users when Trackbook sits behind a proxy."""

    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    batch_max_events: int = Field(default=1000, ge=1)
    group_commit_max_events: int = Field(default=1000, ge=1)
    group_commit_max_wait_ms: float = Field(default=0.0, ge=0, le=1000)
    """Extra time a group waits for more events once the queue is drained (0: none)."""

    auth_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    """How long a verified API key is trusted without asking the database again: a
    revocation or account change made by another process applies within this time."""

    bench_routes: bool = False
    """Mounts the validate-only reference route used by bench/ingest.py."""

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, url: str) -> str:
        if not url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return url

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, level: object) -> object:
        return level.lower() if isinstance(level, str) else level

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        shown_host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{shown_host}:{self.port}"


class SettingsError(Exception):
    """A TRACKBOOK_* variable has a value Trackbook cannot start with."""


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        raise SettingsError(f"{ENV_PREFIX}{field.upper()}: {first['msg']}") from None
