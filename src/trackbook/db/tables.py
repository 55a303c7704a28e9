"""The schema. Every table carries account_id and every unique key leads with it."""

from __future__ import annotations

import sqlalchemy as sa

from trackbook.db.types import BigId, Json, UTCDateTime

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Tables whose ids leave the server (in answers, URLs, webhooks, automations) take
# sqlite_autoincrement=True: SQLite then never gives the id of a deleted row again, as
# PostgreSQL's sequences never do, because other systems still hold the old one
# (migration 0012).


def _account_fk() -> sa.Column[int]:
    return sa.Column(
        "account_id", BigId, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False
    )


def _account_id() -> sa.Column[int]:
    """account_id without a key to accounts, for the rows written with every event (the
    event, its counter, its message-id key): they reach their account through their
    contact, one referential check per row instead of two (migration 0011)."""
    return sa.Column("account_id", BigId, nullable=False)


def _contact_fk() -> sa.Column[int]:
    return sa.Column(
        "contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
    )


accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=False, server_default="UTC"),
    sa.Column("tracking_enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # ActiveCampaign's site-tracking account id (9 digits) and event key (40 hex):
    # trackcmp requests name the account by actid and prove it with the key.
    sa.Column("actid", sa.String(9), nullable=False),
    sa.Column("event_key", sa.String(255), nullable=False),
    sa.UniqueConstraint("actid"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    _account_fk(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("prefix", sa.String(32), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    # `secret` keys reach every route; `publishable` ones only record events (they sit
    # in web pages), from the origins listed here (null or empty: any origin).
    sa.Column("kind", sa.String(16), nullable=False, server_default="secret"),
    sa.Column("allowed_origins", Json, nullable=True),
    sa.UniqueConstraint("account_id", "prefix"),
    sa.Index(None, "prefix"),
)

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    _account_fk(),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("external_id", sa.String(255), nullable=True),
    sa.Column("wp_user_id", sa.BigInteger(), nullable=True),
    sa.Column("first_name", sa.String(200), nullable=True),
    sa.Column("last_name", sa.String(200), nullable=True),
    sa.Column("phone", sa.String(64), nullable=True),
    sa.Column("status", sa.String(32), nullable=False, server_default="subscribed"),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("account_id", "email"),
    sa.UniqueConstraint("account_id", "external_id"),
    sa.UniqueConstraint("account_id", "wp_user_id"),
    sqlite_autoincrement=True,
)

contact_aliases = sa.Table(
    "contact_aliases",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    _account_fk(),
    sa.Column("alias", sa.String(255), nullable=False),
    sa.Column(
        "contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("account_id", "alias"),
    sa.Index(None, "contact_id"),
)

lists = sa.Table(
    "lists",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    _account_fk(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("account_id", "name"),
    sqlite_autoincrement=True,
)

list_members = sa.Table(
    "list_members",
    metadata,
    _account_fk(),
    sa.Column("list_id", BigId, sa.ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("account_id", "list_id", "contact_id"),
    sa.Index(None, "contact_id"),
)

tags = sa.Table(
    "tags",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    _account_fk(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("account_id", "name"),
)

contact_tags = sa.Table(
    "contact_tags",
    metadata,
    _account_fk(),
    sa.Column("tag_id", BigId, sa.ForeignKey("tags.id", ondelete="CASCADE"), nullable=False),
    sa.Column(
        "contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("account_id", "tag_id", "contact_id"),
    sa.Index(None, "contact_id"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    _account_id(),
    _contact_fk(),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("title", sa.String(255), nullable=True),
    sa.Column("value", sa.Text(), nullable=True),
    sa.Column("properties", Json, nullable=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("message_id", sa.String(255), nullable=True),
    sa.Column("list_id", BigId, sa.ForeignKey("lists.id", ondelete="SET NULL"), nullable=True),
    sa.Column("occurred_at", UTCDateTime(), nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    # On PostgreSQL the table is range-partitioned by month of occurred_at (db/partitions.py,
    # migration 0008): its primary key there is (id, occurred_at), and a unique message id
    # per account, which a partitioned table cannot enforce, lives in event_message_ids.
    sa.Index("ix_events_timeline", "account_id", "contact_id", "occurred_at", "id"),
    sa.Index("ix_events_name", "account_id", "name", "occurred_at"),
    sqlite_autoincrement=True,
)

# The idempotency keys of events: a replayed (account, message_id) finds its event here.
event_message_ids = sa.Table(
    "event_message_ids",
    metadata,
    _account_id(),
    sa.Column("message_id", sa.String(255), nullable=False),
    sa.Column("event_id", BigId, nullable=False),
    sa.PrimaryKeyConstraint("account_id", "message_id"),
    sa.Index(None, "event_id"),
)

event_summaries = sa.Table(
    "event_summaries",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    _account_id(),
    _contact_fk(),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("title", sa.String(255), nullable=False),
    sa.Column("counter", sa.BigInteger(), nullable=False),
    sa.Column("last_value", sa.Text(), nullable=True),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    # 0 for the one counter that repeatable events add to; a non-repeatable event
    # (FluentCRM's repeatable=false) gets a row of its own, keyed by its event id.
    sa.Column("series", sa.BigInteger(), nullable=False, server_default="0"),
    sa.UniqueConstraint("account_id", "contact_id", "name", "title", "series"),
    sqlite_autoincrement=True,
)

event_names = sa.Table(
    "event_names",
    metadata,
    _account_fk(),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("count", sa.BigInteger(), nullable=False),
    sa.Column("first_seen", UTCDateTime(), nullable=False),
    sa.Column("last_seen", UTCDateTime(), nullable=False),
    sa.Column("whitelisted", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.PrimaryKeyConstraint("account_id", "name"),
)

event_properties = sa.Table(
    "event_properties",
    metadata,
    _account_fk(),
    sa.Column("event_name", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("first_seen", UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("account_id", "event_name", "name"),
)

list_event_properties = sa.Table(
    "list_event_properties",
    metadata,
    _account_fk(),
    sa.Column("list_id", BigId, sa.ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    sa.Column("event_name", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.PrimaryKeyConstraint("account_id", "list_id", "event_name", "name"),
)

segments = sa.Table(
    "segments",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    _account_fk(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("definition", Json, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("account_id", "name"),
    sqlite_autoincrement=True,
)

dropped_events = sa.Table(
    "dropped_events",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    _account_fk(),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("reason", sa.String(64), nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.Column("received_at", UTCDateTime(), nullable=False),
    # whom the payload names, as a contact holds them: export and erasure match these
    # exactly, never text somewhere in the payload (migration 0013)
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("external_id", sa.String(255), nullable=True),
    sa.Column("anonymous_id", sa.String(255), nullable=True),
    sa.Index(None, "account_id", "received_at"),
    sa.Index(None, "account_id", "email"),
    sa.Index(None, "account_id", "external_id"),
    sa.Index(None, "account_id", "anonymous_id"),
    sqlite_autoincrement=True,
)

automations = sa.Table(
    "automations",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    _account_fk(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("trigger_event", sa.String(255), nullable=False),
    sa.Column("conditions", Json, nullable=False),
    sa.Column("frequency", sa.String(16), nullable=False),
    sa.Column("actions", Json, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("account_id", "name"),
    sa.Index(None, "account_id", "trigger_event"),
    sqlite_autoincrement=True,
)

# The outbox of automations: a run is written in the transaction of the event that
# starts it and executed later by a worker, one action (step) at a time.
automation_runs = sa.Table(
    "automation_runs",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    _account_fk(),
    sa.Column(
        "automation_id",
        BigId,
        sa.ForeignKey("automations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # no foreign key: events is range-partitioned on PostgreSQL
    sa.Column("event_id", BigId, nullable=False),
    sa.Column(
        "contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
    ),
    # the contact id when the automation runs once per contact, else NULL (NULLs never clash)
    sa.Column("once_key", BigId, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("step", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("claimed_until", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    # the incoming event the run's event comes from (itself, unless an automation's
    # `track` step recorded it) and how many such steps lie between them
    sa.Column("origin_event_id", BigId, nullable=False),
    sa.Column("depth", sa.Integer(), nullable=False, server_default="0"),
    sa.UniqueConstraint("account_id", "automation_id", "event_id"),
    sa.UniqueConstraint("account_id", "automation_id", "once_key"),
    sa.Index(None, "status", "next_attempt_at"),
    sa.Index(None, "contact_id"),
    sqlite_autoincrement=True,
)

# How many events automations have recorded from one incoming event: the fan-out
# budget every worker draws on (no foreign key: events is partitioned on PostgreSQL).
event_derivations = sa.Table(
    "event_derivations",
    metadata,
    _account_fk(),
    sa.Column("origin_event_id", BigId, nullable=False),
    sa.Column("derived", sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint("account_id", "origin_event_id"),
)

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    _account_fk(),
    sa.Column("url", sa.Text(), nullable=False),
    # event names this endpoint receives as they are recorded; NULL: only automations
    sa.Column("event_names", Json, nullable=True),
    sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("secret", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index(None, "account_id"),
    sqlite_autoincrement=True,
)

# One message to an endpoint, retried under the same webhook-id until delivered.
deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    _account_fk(),
    sa.Column(
        "endpoint_id",
        BigId,
        sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("webhook_id", sa.String(64), nullable=False),
    sa.Column("event_id", BigId, nullable=True),
    # set when an automation's webhook action sends it: the run retries it, not the queue
    sa.Column(
        "run_id", BigId, sa.ForeignKey("automation_runs.id", ondelete="CASCADE"), nullable=True
    ),
    sa.Column("step", sa.Integer(), nullable=True),
    sa.Column("payload", Json, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("claimed_until", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("delivered_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("account_id", "webhook_id"),
    sa.UniqueConstraint("account_id", "run_id", "step"),
    sa.Index(None, "status", "next_attempt_at"),
    sa.Index(None, "account_id", "endpoint_id", "id"),
    sqlite_autoincrement=True,
)

delivery_attempts = sa.Table(
    "delivery_attempts",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    _account_fk(),
    sa.Column(
        "delivery_id", BigId, sa.ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("attempted_at", UTCDateTime(), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("duration_ms", sa.Integer(), nullable=False),
    sa.Index(None, "delivery_id"),
)

dashboard_users = sa.Table(
    "dashboard_users",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    _account_fk(),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_sign_in_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("account_id", "email"),
    sa.Index(None, "email"),
)

# Server-side sessions: the cookie holds the account id and a random token, the table
# the token's hash, so that signing out (or deleting a user) ends the session at once.
dashboard_sessions = sa.Table(
    "dashboard_sessions",
    metadata,
    sa.Column("id", BigId, primary_key=True),
    _account_fk(),
    sa.Column(
        "user_id", BigId, sa.ForeignKey("dashboard_users.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("account_id", "token_hash"),
    sa.Index(None, "user_id"),
)
