"""Bulk import of events (NDJSON in the native track format, or CSV with a column
mapping) through the same core path as the API, and streamed export to NDJSON or CSV."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import orjson
import sqlalchemy as sa
from pydantic import ValidationError

from trackbook.accounts.service import Account
from trackbook.db.engine import Database
from trackbook.db.tables import contacts, events
from trackbook.dialects.native.errors import as_track_error
from trackbook.dialects.native.models import TrackIn
from trackbook.errors import DomainError, Invalid
from trackbook.events.model import TrackCommand, TrackResult
from trackbook.events.service import EventService

FIELDS = {
    "event", "title", "value", "timestamp", "message_id", "source",
    "contact.id", "contact.email", "contact.external_id", "contact.anonymous_id",
}  # fmt: skip
"""What a CSV column can be mapped to, besides `properties.<name>`."""
EXPORT_CHUNK = 1000
YIELD_EVERY = 25
"""Rows parsed between turns given to the writer."""
STATISTICS_AFTER = 40
"""Batches read before the statistics are first refreshed."""
IMPORTED_TABLES = ("contacts", "events", "event_message_ids", "event_summaries")
"""The tables an import grows."""
EPOCH = re.compile(r"\d+(\.\d+)?")


@dataclass
class Rejected:
    line: int
    reason: str


@dataclass
class ImportReport:
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)


def _message_id(raw: bytes, line: int) -> str:
    """Rows without a message id get one from their content and place in the file, so
    that importing the same file again (after a crash, say) stores nothing twice."""
    return "import:" + hashlib.sha256(b"%d:" % line + raw).hexdigest()[:40]


def _command(body: Any, raw: bytes, line: int) -> TrackCommand:
    if not isinstance(body, dict):
        raise Invalid("row", "must be a JSON object in the native track format")
    try:
        parsed = TrackIn.model_validate(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "line"
        raise Invalid(where, str(first["msg"]).lower()) from None
    if not parsed.message_id:
        parsed.message_id = _message_id(raw, line)
    return parsed.command(source="import")


def ndjson_rows(stream: IO[bytes]) -> Iterator[tuple[int, bytes, Any]]:
    for line, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        try:
            yield line, raw, orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            yield line, raw, Invalid("row", f"is not valid JSON ({error})")


def column_mapping(header: Sequence[str], overrides: dict[str, str]) -> dict[str, str]:
    """Each column to the field it fills: as `overrides` says, else a column named like a
    field fills it (`email` is `contact.email`), else it becomes a property."""
    mapping: dict[str, str] = {}
    for column in header:
        target = overrides.get(column)
        if target is None:
            name = column.strip()
            if name in FIELDS:
                target = name
            elif f"contact.{name}" in FIELDS:
                target = f"contact.{name}"
            else:
                target = f"properties.{name}"
        if target not in FIELDS and not target.startswith("properties.") and target != "-":
            raise Invalid("map", f"{column}={target}: not a field ({', '.join(sorted(FIELDS))})")
        mapping[column] = target
    return mapping


def csv_rows(stream: IO[str], overrides: dict[str, str]) -> Iterator[tuple[int, bytes, Any]]:
    reader = csv.reader(stream)
    header = next(reader, None)
    if header is None:
        return
    mapping = column_mapping(header, overrides)
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        body: dict[str, Any] = {"contact": {}}
        for column, cell in zip(header, row, strict=False):
            target = mapping[column]
            if cell == "" or target == "-":
                continue
            head, _, rest = target.partition(".")
            if head == "contact":
                body["contact"][rest] = int(cell) if rest == "id" and cell.isdigit() else cell
            elif head == "properties":
                body.setdefault("properties", {})[rest] = cell
            elif head == "timestamp" and EPOCH.fullmatch(cell):
                body[head] = float(cell) if "." in cell else int(cell)  # a CSV cell is text
            else:
                body[head] = cell
        yield line, ",".join(row).encode(), body


async def import_rows(
    rows: Iterator[tuple[int, bytes, Any]],
    account: Account,
    events_service: EventService,
    *,
    batch: int = 500,
    dry_run: bool = False,
    progress: Callable[[int], None] = lambda _: None,
    refresh_statistics: Callable[[], Awaitable[None]] | None = None,
) -> ImportReport:
    """Stores the rows `batch` at a time through track_many (the group-commit writer).
    Up to two batches wait in the writer's queue while the next is parsed, so the writer
    always has a group ready when the previous one commits and parsing goes on while a
    group is in the database; no more than three batches are held in memory.

    `refresh_statistics` is awaited each time the rows read double from
    STATISTICS_AFTER batches (80,000 rows at the default 2000): an import can make the event
    tables many times larger than the database's statistics say, and the writer's
    look-ups (message ids, contacts) need the planner to know."""
    report = ImportReport()
    pending: list[tuple[int, TrackCommand | DomainError]] = []
    writing: deque[asyncio.Task[None]] = deque()
    statistics_at = STATISTICS_AFTER * batch

    async def flush(batch_rows: list[tuple[int, TrackCommand | DomainError]]) -> None:
        commands = [command for _, command in batch_rows]
        outcomes: Sequence[TrackResult | Exception | None]
        if dry_run:
            outcomes = [_checked(events_service, account, command) for command in commands]
        else:
            outcomes = await events_service.track_many(account, commands)
        for (line, _), outcome in zip(batch_rows, outcomes, strict=True):
            if isinstance(outcome, Exception):
                report.rejected.append(Rejected(line, _reason(outcome)))
            elif outcome is not None and outcome.duplicate:
                report.duplicates += 1
            else:
                report.stored += 1  # or, in a dry run, would be
        progress(len(batch_rows))

    async def hand_over() -> None:
        nonlocal pending, statistics_at
        if len(writing) == 2:
            await writing.popleft()
        if refresh_statistics is not None and report.read >= statistics_at and not dry_run:
            statistics_at *= 2
            await refresh_statistics()
        # batches reach the writer's queue in file order and it writes one group after
        # another: a later row never commits before an earlier one, and a re-run finds
        # the earlier ones stored
        writing.append(asyncio.create_task(flush(pending)))
        pending = []
        # let the batch reach the writer's queue before parsing the next one
        await asyncio.sleep(0)

    try:
        for line, raw, body in rows:
            report.read += 1
            try:
                if isinstance(body, DomainError):
                    raise body
                pending.append((line, _command(body, raw, line)))
            except DomainError as error:
                pending.append((line, error))
            if len(pending) >= batch:
                await hand_over()
            elif report.read % YIELD_EVERY == 0:
                # the writer needs the event loop at each of its round trips to the
                # database: parsing in long slices would stall it
                await asyncio.sleep(0)
        if pending:
            await hand_over()
        while writing:
            await writing.popleft()
    finally:
        for task in writing:
            task.cancel()
    return report


def _checked(
    events_service: EventService, account: Account, command: TrackCommand | DomainError
) -> DomainError | None:
    """What a dry run can tell without storing: the error track() would give, or None."""
    if isinstance(command, DomainError):
        return command
    try:
        events_service.prepare(account, command)
    except DomainError as error:
        return error
    return None


def _reason(error: Exception) -> str:
    """Named as the row names its fields (`timestamp`, `event`), as /v1/track names them."""
    if isinstance(error, Invalid):
        return as_track_error(error).message
    return error.message if isinstance(error, DomainError) else str(error)


EVENT_COLUMNS = (
    "id", "contact_id", "email", "external_id", "event", "title", "value", "properties",
    "source", "message_id", "occurred_at", "received_at",
)  # fmt: skip
CONTACT_COLUMNS = (
    "id", "email", "external_id", "first_name", "last_name", "status", "created_at",
    "updated_at",
)  # fmt: skip


async def export_rows(db: Database, account_id: int, what: str) -> AsyncIterator[dict[str, Any]]:
    """Every event (oldest first) or contact of the account, read in keyset pages."""
    after = 0
    while True:
        if what == "events":
            query = (
                sa.select(
                    events,
                    contacts.c.email,
                    contacts.c.external_id,
                )
                .join(contacts, contacts.c.id == events.c.contact_id)
                .where(events.c.account_id == account_id, events.c.id > after)
                .order_by(events.c.id)
                .limit(EXPORT_CHUNK)
            )
        else:
            query = (
                sa.select(contacts)
                .where(contacts.c.account_id == account_id, contacts.c.id > after)
                .order_by(contacts.c.id)
                .limit(EXPORT_CHUNK)
            )
        async with db.read() as conn:
            rows = [dict(row._mapping) for row in await conn.execute(query)]
        if not rows:
            return
        for row in rows:
            if what == "events":
                row["event"] = row.pop("name")
            yield row
        after = rows[-1]["id"]


async def write_export(
    rows: AsyncIterator[dict[str, Any]], columns: Sequence[str], fmt: str, out: IO[str]
) -> int:
    """Writes each row as a JSON line or a CSV record, as it is read; returns how many."""
    written = 0
    writer = csv.writer(out) if fmt == "csv" else None
    if writer is not None:
        writer.writerow(columns)
    async for row in rows:
        picked = [row.get(column) for column in columns]
        if writer is not None:
            writer.writerow([_cell(value) for value in picked])
        else:
            out.write(orjson.dumps(dict(zip(columns, picked, strict=True)), default=_iso).decode())
            out.write("\n")
        written += 1
    return written


def _iso(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(type(value).__name__)


# OWASP's rule for CSV (formula) injection: a cell a spreadsheet would read as a formula
# starts with one of these; a leading ' makes it text. Kept here rather than taken from
# defusedcsv, which leaves tab and carriage return out and rewrites | inside the cell.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    text = str(value)
    # a negative number stays a number: as a formula it is only itself
    if text.startswith(_FORMULA_STARTS) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text
