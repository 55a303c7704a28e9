"""A cheap HTTP/1.1 load generator: asyncio streams, keep-alive connections that
replay pre-serialised requests and read only the status line and Content-Length.

It runs in a process of its own (see ingest.py) so that on a small machine its
CPU time is visible and separate from the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

HOST = "127.0.0.1"
# A phase that has not finished this long after its deadline is stuck, not slow.
GRACE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class LoadSpec:
    phase: str
    port: int
    requests: Sequence[bytes]
    connections: int
    seconds: float
    expected_status: int
    events_per_request: int = 1
    error_marker: bytes | None = None
    """Counted in each response body as one refused event (batch replies)."""


@dataclass(slots=True)
class PhaseResult:
    phase: str
    requests: int
    events: int
    errors: int
    """Requests with an unexpected status plus events refused inside a batch."""
    seconds: float
    p50_ms: float
    p99_ms: float
    client_cpu_seconds: float
    statuses: dict[int, int] = field(default_factory=dict)
    server_cpu_seconds: float | None = None
    events_per_group: float | None = None
    """Mean events per group-commit transaction during the phase."""

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def percentiles(latencies: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    if not latencies:
        return 0.0, 0.0
    if len(latencies) == 1:
        return latencies[0] * 1000, latencies[0] * 1000
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


def run_in_loop(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Runs `main` on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop  # noqa: PLC0415 - optional, the client also works on asyncio's loop
    except ImportError:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def _content_length(head: bytes) -> int:
    start = head.lower().find(b"\r\ncontent-length:")
    if start < 0:
        raise ConnectionError(f"response without Content-Length: {head[:200]!r}")
    start += len(b"\r\ncontent-length:")
    return int(head[start : head.index(b"\r\n", start)])


@dataclass(slots=True)
class _Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    refused_events: int = 0


async def _drive(
    spec: LoadSpec,
    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    first: int,
    deadline: float,
    tally: _Tally,
) -> None:
    reader, writer = streams
    requests = spec.requests
    index = first
    clock = time.perf_counter
    while clock() < deadline:
        request = requests[index % len(requests)]
        index += 1
        started = clock()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.readexactly(_content_length(head))
        tally.latencies.append(clock() - started)
        tally.statuses[int(head[9:12])] += 1
        if spec.error_marker is not None:
            tally.refused_events += body.count(spec.error_marker)


async def _phase(spec: LoadSpec) -> PhaseResult:
    connections = [await asyncio.open_connection(HOST, spec.port) for _ in range(spec.connections)]
    tally = _Tally()
    cpu_before = time.process_time()
    started = time.perf_counter()
    deadline = started + spec.seconds
    # Connections start at different places in the request pool, so at any moment
    # they name different contacts, as independent clients would.
    stride = max(1, len(spec.requests) // spec.connections)
    try:
        async with asyncio.timeout(spec.seconds + GRACE_SECONDS):
            await asyncio.gather(
                *(
                    _drive(spec, streams, number * stride, deadline, tally)
                    for number, streams in enumerate(connections)
                )
            )
    finally:
        for _, writer in connections:
            writer.close()
        for _, writer in connections:
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    answered = sum(tally.statuses.values())
    ok = tally.statuses[spec.expected_status]
    p50, p99 = percentiles(tally.latencies)
    return PhaseResult(
        phase=spec.phase,
        requests=answered,
        events=ok * spec.events_per_request - tally.refused_events,
        errors=answered - ok + tally.refused_events,
        seconds=elapsed,
        p50_ms=p50,
        p99_ms=p99,
        client_cpu_seconds=cpu,
        statuses=dict(tally.statuses),
    )


def run_phase(spec: LoadSpec) -> PhaseResult:
    """Drives `spec.connections` connections for `spec.seconds`; the process pool entry."""
    return run_in_loop(lambda: _phase(spec))


async def _send_each(port: int, requests: Sequence[bytes]) -> list[int]:
    reader, writer = await asyncio.open_connection(HOST, port)
    statuses = []
    try:
        async with asyncio.timeout(GRACE_SECONDS):
            for request in requests:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(_content_length(head))
                statuses.append(int(head[9:12]))
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return statuses


def send_each(port: int, requests: Sequence[bytes]) -> list[int]:
    """Sends `requests` one after the other on one connection; their statuses."""
    return run_in_loop(lambda: _send_each(port, requests))
