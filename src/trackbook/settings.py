"""The one Settings object, read from `TRACKBOOK_*` environment variables at start-up."""

from __future__ import annotations

import difflib
import os
from typing import Literal

from cryptography.fernet import Fernet
from limits import parse
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "TRACKBOOK_"
RATE_LIMITS = (
    "rate_limit_native",
    "rate_limit_fluentcrm",
    "rate_limit_octeth_track",
    "rate_limit_octeth_properties",
    "rate_limit_activecampaign",
    "rate_limit_trackcmp_actid",
    "rate_limit_trackcmp_ip",
    "rate_limit_segment",
    "rate_limit_signin",
)
"""The settings that are rate limits: validated as rates, lifted together by tests."""
ASYNC_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}
"""The database URL schemes accepted, and the async driver each one runs on: the forms
PostgreSQL's own tools and hosting providers print work as they are given."""


class Settings(BaseSettings):
    # attribute docstrings are the field descriptions: the README's configuration table
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, use_attribute_docstrings=True
    )

    database_url: str = "sqlite+aiosqlite:///trackbook.db"
    """The database: a SQLite file (`sqlite:///path/trackbook.db`) or PostgreSQL
    (`postgresql://user:password@host:5432/db`, also `postgres://`); both run on their
    async drivers, which may be named as well (`sqlite+aiosqlite://`, `postgresql+asyncpg://`)."""
    host: str = "127.0.0.1"
    """The address `trackbook serve` listens on (`0.0.0.0` for every interface)."""
    port: int = Field(default=8000, ge=1, le=65535)
    """The port `trackbook serve` listens on (`--port` overrides it)."""
    redis_url: str | None = None
    """Redis for rate-limit counters shared by every node (`redis://host:6379/0`); unset:
    counted in each process's memory."""
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    """`debug`, `info`, `warning`, `error` or `critical`."""
    public_url: str | None = None
    """Base URL printed for users when Trackbook sits behind a proxy."""
    forwarded_allow_ips: str = "127.0.0.1"
    """Addresses (comma-separated, CIDR ranges or *) whose X-Forwarded-For and
    X-Forwarded-Proto `trackbook serve` believes: the load balancers in front of it."""

    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    """Larger request bodies get 413 before they are read."""
    batch_max_events: int = Field(default=1000, ge=1)
    """Events in one `/v1/batch` request at most."""
    group_commit_max_events: int | None = Field(default=None, ge=1)
    """Events written in one transaction at most; by default 4000 on SQLite (a group's
    commit and index pages are shared by more events) and 1000 on PostgreSQL (its one
    statement per group grows longer while the next group waits)."""

    event_writers: int | None = Field(default=None, ge=1, le=8)
    """Groups written at once on PostgreSQL, each on its own connection (default 2: one
    group is prepared in Python while the database writes the other). SQLite writes one
    group at a time whatever this says: it has one writer, and more would only give up
    the order of commits."""

    group_commit_max_wait_ms: float = Field(default=0.0, ge=0, le=1000)
    """Extra time a group waits for more events once the queue is drained (0: none)."""

    auth_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    """How long a verified API key is trusted without asking the database again: a
    revocation or account change made by another process applies within this time."""

    worker_in_process: bool = True
    """`trackbook serve` runs an automation/webhook worker in the same process."""
    worker_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    """How often an idle worker looks for due work (events recorded in the same process
    wake it at once)."""
    worker_lease_seconds: float = Field(default=120.0, gt=0)
    """How long a claimed run or delivery is a worker's; after that another worker,
    or the same one restarted, takes it over (a worker killed mid-step)."""
    worker_max_attempts: int = Field(default=8, ge=1, le=100)
    """Attempts of a failed automation step or webhook delivery before it is failed."""
    worker_backoff_seconds: float = Field(default=30.0, ge=0)
    """The first retry waits this long, each next one twice as long (at most a day)."""
    automation_cutoff_hours: float = Field(default=72.0, ge=0)
    """Events that occurred longer ago than this (imports, backfills) start no
    automations and no webhook deliveries."""
    automation_max_derived_events: int = Field(default=100, ge=1)
    """Events that automations' `track` steps may record, in all, from one incoming event
    (through every automation it starts and every automation those events start); a
    step beyond it is refused and its run fails, saying why."""
    automation_max_depth: int = Field(default=3, ge=1)
    """How long a chain of automation `track` steps may grow from one incoming event: an
    event recorded by an automation is one step from the event that started it; a
    step further than this is refused and its run fails, saying why."""

    catalog_max_event_names: int = Field(default=1000, ge=1)
    """Distinct event names an account may track: an event with a new name beyond it is
    refused (the dialect's 4xx; dropped in a Segment batch) and recorded as dropped."""
    catalog_max_property_names: int = Field(default=500, ge=1)
    """Distinct property names one event name of an account may carry: an event that
    brings a new one beyond it is refused and recorded as dropped."""

    webhook_allow_private: bool = False
    """Lets webhooks reach loopback, private and link-local addresses (tests, labs)."""
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    """How long a webhook endpoint has to answer."""

    smtp_url: str | None = None
    """The mail server of automation emails: `smtp://user:password@host:587` (STARTTLS when
    offered) or `smtps://…:465` (TLS); unset, an email step fails and says so."""
    smtp_from: str = "Trackbook <trackbook@localhost>"
    """The sender of automation emails."""
    smtp_starttls: Literal["auto", "required", "off"] = "auto"
    """For `smtp://`: STARTTLS when the server offers it (`auto`), always (`required`) or
    never (`off`)."""
    smtp_verify_tls: bool = True
    """`false` accepts a self-signed certificate."""
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    """How long the mail server has to answer."""

    redis_key_prefix: str = "trackbook"
    """Prefix of every key Trackbook writes to Redis (several installs may share one)."""
    rate_limit_native: str = "6000/minute"
    """The native API (`/v1`), per account and per key."""
    rate_limit_fluentcrm: str = "6000/minute"
    """The FluentCRM dialect, per account and per key."""
    rate_limit_octeth_track: str = "5000/60 seconds"
    """Octeth's documented limit of event.track, per API key and per account."""
    rate_limit_octeth_properties: str = "100/60 seconds"
    """Octeth's documented limit of `website_events.properties`, per API key and per account."""
    rate_limit_activecampaign: str = "5/second"
    """ActiveCampaign's documented API limit, per account (v3 and v1)."""
    rate_limit_trackcmp_actid: str = "6000/minute"
    """ActiveCampaign's trackcmp (`/event`), per actid."""
    rate_limit_trackcmp_ip: str = "600/minute"
    """trackcmp is posted to by browsers and forms: also limited per client address."""
    rate_limit_segment: str = "30000/minute"
    """Segment's HTTP API, per account and per write key: Segment sets no hard limit and
    asks to hear from senders above 500 requests per second."""
    rate_limit_signin: str = "20/minute"
    """Dashboard sign-in attempts per client address."""

    secret_key: SecretStr | None = None
    """Server key(s) sealing webhook signing secrets and ActiveCampaign event keys in the
    database: Fernet keys,
    comma-separated, the first one sealing (rotation). Every node of an install needs
    the same keys; `trackbook server-key` prints a new one."""
    secret_key_file: str = "trackbook.key"  # noqa: S105 - a file name, not a secret
    """Where the server key is kept when TRACKBOOK_SECRET_KEY is not set (created,
    readable by its owner only, on first start): keep it with your backups."""

    bench_routes: bool = False
    """Mounts the validate-only reference route used by bench/ingest.py."""

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, url: str) -> str:
        scheme, separator, rest = url.partition("://")
        driver = ASYNC_DRIVERS.get(scheme.lower()) if separator else None
        if driver is None:
            given = f" ({scheme}:// is not supported)" if separator else ""
            raise ValueError(f"must start with postgresql://, postgres:// or sqlite:///{given}")
        return f"{driver}://{rest}"

    @field_validator(*RATE_LIMITS)
    @classmethod
    def _rate(cls, value: str) -> str:
        try:
            parse(value)
        except ValueError:
            raise ValueError("must be a rate such as 5000/60 seconds or 5/second") from None
        return value

    @field_validator("secret_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        keys = [key.strip() for key in value.get_secret_value().split(",") if key.strip()]
        try:
            for key in keys or [""]:
                Fernet(key.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise ValueError(
                "must be one or more comma-separated keys of 32 url-safe base64-encoded "
                "bytes (make one with `trackbook server-key`)"
            ) from None
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("smtp://", "smtps://")):
            raise ValueError("must start with smtp:// or smtps://")
        return url

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, level: object) -> object:
        return level.lower() if isinstance(level, str) else level

    def group_size(self, *, sqlite: bool) -> int:
        if self.group_commit_max_events is not None:
            return self.group_commit_max_events
        return 4000 if sqlite else 1000

    def writers(self, *, sqlite: bool) -> int:
        if sqlite:
            return 1
        return 2 if self.event_writers is None else self.event_writers

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        shown_host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host  # noqa: S104
        return f"http://{shown_host}:{self.port}"


class SettingsError(Exception):
    """A TRACKBOOK_* variable has a value Trackbook cannot start with."""


def unknown_variables() -> list[str]:
    """A line for each TRACKBOOK_* variable that names no setting (a misspelt one would
    otherwise leave its default in force without a word), with the likely one meant."""
    known = [ENV_PREFIX + name.upper() for name in Settings.model_fields]
    lines = []
    for name in sorted(os.environ):
        if name.upper().startswith(ENV_PREFIX) and name.upper() not in known:
            meant = difflib.get_close_matches(name.upper(), known, n=1)
            hint = f" (did you mean {meant[0]}?)" if meant else ""
            lines.append(f"{name} is not a Trackbook setting{hint}; it is ignored")
    return lines


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "settings"
        raise SettingsError(f"{ENV_PREFIX}{field.upper()}: {first['msg']}") from None


def reference() -> str:
    """Every setting as the README's configuration table: its variable, its default and
    its docstring. `python -m trackbook.settings` prints it; tests/test_readme.py holds
    the README to it."""
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        if default is None:
            shown = "unset"
        elif isinstance(default, bool):
            shown = f"`{str(default).lower()}`"
        elif isinstance(default, float) and default.is_integer():
            shown = f"`{int(default)}`"
        else:
            shown = f"`{default}`"
        described = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {shown} | {described} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(reference())
