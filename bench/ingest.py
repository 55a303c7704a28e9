"""Ingest benchmark: /v1/track, the validate-only reference route, /v1/batch, a raw
bulk insert and the same-work reference (samework.py), against a real `trackbook serve`
on SQLite and PostgreSQL.

    python bench/ingest.py [--seconds N] [--backends sqlite,postgresql] [--phases batch,...]
        [--profile DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import stacks
import workload
from backends import (
    BenchDatabase,
    BenchError,
    Server,
    activecampaign_ids,
    create_postgres_database,
    drop_postgres_database,
    sqlite_database,
)
from loadgen import GRACE_SECONDS, LoadSpec, PhaseResult, run_phase, send_each
from rawinsert import RawSpec, run_raw_insert

T = TypeVar("T")

BACKENDS = ("sqlite", "postgresql")
TRACK_VS_VALIDATE_TARGET = {"sqlite": 0.7, "postgresql": 0.6}
BATCH_VS_RAW_TARGET = 0.5
DIALECT_VS_TRACK_TARGET = 0.85
PHASES = ("track", *workload.DIALECT_ROUTES, "validate", "batch", "raw insert", "same work")
# Distinct pre-serialised requests per route; connections cycle through them.
SINGLE_REQUESTS = 4000
# A replayed Segment messageId stores nothing: enough distinct ones that no phase
# wraps around, at rates well above any seen on this machine.
SEGMENT_REQUESTS_PER_SECOND = 4000
BATCH_REQUESTS = 60
WARM_UP_SECONDS = 3.0
# The phases --profile replays: native track, its references, and the dialects that
# have missed their target.
PROFILED = ("track", "octeth", "segment", "validate", "batch")


@dataclass(frozen=True, slots=True)
class Ratio:
    name: str
    value: float
    target: float

    @property
    def verdict(self) -> str:
        return "PASS" if self.value >= self.target else "MISS"


@dataclass(frozen=True, slots=True)
class BackendReport:
    backend: str
    phases: dict[str, PhaseResult]
    rss_kib: int
    profiles: dict[str, str]

    @property
    def ratios(self) -> list[Ratio]:
        """The targets whose two phases both ran."""
        pairs = [
            ("track", "validate", TRACK_VS_VALIDATE_TARGET[self.backend], "req/s"),
            ("batch", "raw insert", BATCH_VS_RAW_TARGET, "events/s"),
            *(
                (dialect, "track", DIALECT_VS_TRACK_TARGET, "req/s")
                for dialect in workload.DIALECT_ROUTES
            ),
        ]
        return [
            Ratio(
                f"{measured} / {reference} ({unit})",
                _ratio(
                    self.phases[measured].events_per_second,
                    self.phases[reference].events_per_second,
                ),
                target,
            )
            for measured, reference, target, unit in pairs
            if measured in self.phases and reference in self.phases
        ]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


@dataclass(frozen=True, slots=True)
class Run:
    """What every phase of one backend needs."""

    server: Server
    database: BenchDatabase
    pool: ProcessPoolExecutor
    seconds: float
    connections: int


def _measured(run: Run, work: Callable[[T], PhaseResult], spec: T) -> PhaseResult:
    """Runs one phase in the client process; adds the server's CPU time meanwhile."""
    cpu_before = run.server.cpu_seconds()
    groups_before, events_before = run.server.groups_written()
    result = run.pool.submit(work, spec).result(timeout=run.seconds + 2 * GRACE_SECONDS)
    result.server_cpu_seconds = run.server.cpu_seconds() - cpu_before
    groups, events = run.server.groups_written()
    if groups > groups_before:
        result.events_per_group = (events - events_before) / (groups - groups_before)
    return result


def _load(run: Run, phase: str, path: str, bodies: list[Any], expected: int) -> LoadSpec:
    port, key = run.server.port, run.server.key
    return _spec(
        run, phase, [workload.http_post(port, path, key, body) for body in bodies], expected
    )


def _spec(
    run: Run, phase: str, requests: list[bytes], expected: int, error_marker: bytes | None = None
) -> LoadSpec:
    batch = phase == "batch"
    return LoadSpec(
        phase=phase,
        port=run.server.port,
        requests=requests,
        connections=run.connections,
        seconds=run.seconds,
        expected_status=expected,
        events_per_request=workload.BATCH_SIZE if batch else 1,
        error_marker=b'"status":"error"' if batch else error_marker,
    )


def _specs(run: Run) -> dict[str, LoadSpec]:
    singles = workload.single_events(seed=1, count=SINGLE_REQUESTS)
    batches = [{"events": events} for events in workload.batches(2, BATCH_REQUESTS)]
    specs = {"track": _load(run, "track", "/v1/track", singles, 201)}
    actid, event_key = activecampaign_ids(run.database)
    port, key = run.server.port, run.server.key
    for dialect in workload.DIALECT_ROUTES:
        if dialect == "segment":
            count = max(SINGLE_REQUESTS, int(run.seconds * SEGMENT_REQUESTS_PER_SECOND))
            requests = [
                workload.segment_request(port, key, singles[n % len(singles)], f"bench-{n}")
                for n in range(count)
            ]
        else:
            requests = [
                workload.dialect_request(dialect, port, key, actid, event_key, body)
                for body in singles
            ]
        # ActiveCampaign answers a refused event 200 with success 0
        refused = b'"success":0' if dialect in ("trackcmp", "v1") else None
        specs[dialect] = _spec(run, dialect, requests, 200, refused)
    specs["validate"] = _load(run, "validate", "/v1/_bench/validate", singles, 201)
    specs["batch"] = _load(run, "batch", "/v1/batch", batches, 200)
    return specs


def _warm_up(run: Run) -> None:
    """Creates every contact once, then gives each a userId and a visitor id, so every
    phase measures the steady state of known, identified contacts."""
    port, key = run.server.port, run.server.key
    requests = [
        workload.http_post(port, "/v1/batch", key, {"events": events})
        for events in workload.every_contact_batches()
    ]
    requests += workload.segment_identify_batches(port, key)
    statuses = run.pool.submit(send_each, port, requests).result(timeout=GRACE_SECONDS * 2)
    if any(status != 200 for status in statuses):
        raise BenchError(f"warm-up batches answered {statuses}{run.server.log_tail()}")


def _profiled(run: Run, spec: LoadSpec, output: Path) -> str:
    """Replays `spec` while py-spy samples the server; the text summary of where it went."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise BenchError("--profile needs py-spy (pip install py-spy)")
    duration = max(1, int(run.seconds) - 2)
    sampler = subprocess.Popen(  # noqa: S603 - py-spy found on PATH, no shell
        [
            py_spy,
            "record",
            "--pid",
            str(run.server.pid),
            "--duration",
            str(duration),
            "--format",
            "raw",
            # a few thousand samples in a phase of a few seconds
            "--rate",
            "500",
            # Only the thread holding the GIL: threads parked in a queue or a lock
            # would otherwise count as busy, and SQLite's own work runs without it.
            "--gil",
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # py-spy needs a moment to attach; its window then lies inside the load.
        time.sleep(0.5)
        _measured(run, run_phase, spec)
        sampler.wait(GRACE_SECONDS)
    finally:
        if sampler.poll() is None:
            sampler.kill()
            sampler.wait()
    if not output.exists():
        raise BenchError(f"py-spy wrote no profile to {output}")
    return stacks.render(stacks.summarise(output), top=25)


def _bench_backend(
    backend: str,
    seconds: float,
    connections: int,
    pool: ProcessPoolExecutor,
    profile: Path | None,
    chosen: tuple[str, ...] = PHASES,
) -> BackendReport:
    cleanup = contextlib.ExitStack()
    try:
        directory = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="tb-bench-")))
        if backend == "sqlite":
            database = sqlite_database(directory)
        else:
            database = create_postgres_database()
            cleanup.callback(drop_postgres_database, database)
        server = Server(database, directory)
        # Registered after the database, so it runs first: the server goes, then its data.
        cleanup.callback(server.stop)
        server.start()
        run = Run(server, database, pool, seconds, connections)
        _warm_up(run)
        specs = _specs(run)
        # Unmeasured: whichever phase ran first paid for what the warm-up batches left
        # behind (SQLite's checkpoint of their WAL, code paths run for the first time).
        print(f"  {backend}: warming up ...", flush=True)
        warm_up = replace(specs["track"], seconds=min(seconds, WARM_UP_SECONDS))
        run.pool.submit(run_phase, warm_up).result(timeout=seconds + 2 * GRACE_SECONDS)
        phases: dict[str, PhaseResult] = {}
        for phase in (phase for phase in specs if phase in chosen):
            print(f"  {backend}: {phase} ...", flush=True)
            phases[phase] = _measured(run, run_phase, specs[phase])
        raw = RawSpec(backend, database.raw_location, workload.batches(2, BATCH_REQUESTS), seconds)
        for phase, spec in (("raw insert", raw), ("same work", replace(raw, same_work=True))):
            if phase in chosen:
                print(f"  {backend}: {phase} ...", flush=True)
                phases[phase] = _measured(run, run_raw_insert, spec)
        rss_kib = server.rss_kib()
        profiles: dict[str, str] = {}
        if profile is not None:
            for phase in (phase for phase in PROFILED if phase in chosen):
                print(f"  {backend}: profiling {phase} ...", flush=True)
                output = profile / f"{backend}-{phase}.txt"
                profiles[phase] = _profiled(run, specs[phase], output)
        return BackendReport(backend, phases, rss_kib, profiles)
    finally:
        cleanup.close()


def _per_group(result: PhaseResult) -> str:
    """Mean events per group commit, '-' for a phase that wrote none (the references)."""
    return "-" if result.events_per_group is None else f"{result.events_per_group:.1f}"


def _print_report(report: BackendReport, seconds: float, connections: int) -> None:
    print()
    print(f"== {report.backend}: {seconds:g} s per phase, {connections} connections ==")
    header = (
        f"{'phase':<11} {'req/s':>9} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'errors':>7} {'server CPU':>10} {'client CPU':>10} {'per group':>9}"
    )
    print(header)
    for name in (name for name in PHASES if name in report.phases):
        result = report.phases[name]
        server_cpu = (result.server_cpu_seconds or 0.0) / result.seconds
        print(
            f"{name:<11} {result.requests_per_second:>9.0f} {result.events_per_second:>10.0f} "
            f"{result.p50_ms:>8.2f} {result.p99_ms:>8.2f} {result.errors:>7} "
            f"{server_cpu:>9.0%} {result.client_cpu_seconds / result.seconds:>10.0%}"
            f" {_per_group(result):>9}"
        )
    for ratio in report.ratios:
        print(
            f"{ratio.name:<31} {ratio.value:5.2f}x  target >= {ratio.target:.2g}x  {ratio.verdict}"
        )
    if {"batch", "raw insert", "same work"} <= report.phases.keys():
        batch, raw, same = (report.phases[name] for name in ("batch", "raw insert", "same work"))
        print(
            f"same work / raw insert {_ratio(same.events_per_second, raw.events_per_second):.2f}x"
            " (the most batch could reach); "
            f"batch / same work {_ratio(batch.events_per_second, same.events_per_second):.2f}x"
        )
    print(f"server RSS after the run: {report.rss_kib / 1024:.0f} MiB (VmRSS)")
    for phase, text in report.profiles.items():
        print(f"-- py-spy profile of the server under {phase} load --")
        print(text)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each phase")
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated: sqlite,postgresql"
    )
    parser.add_argument("--connections", type=int, default=64, help="concurrent connections")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help=f"afterwards, replay {', '.join(PROFILED)} under py-spy; profiles go here",
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help="comma-separated subset of the phases to run (default: all); a ratio is "
        "printed when both of its phases ran",
    )
    arguments = parser.parse_args()
    arguments.phases = tuple(name.strip() for name in arguments.phases.split(",") if name.strip())
    if not arguments.phases or set(arguments.phases) - set(PHASES):
        parser.error(f"--phases takes {', '.join(PHASES)}; got {arguments.phases}")
    arguments.backends = [name.strip() for name in arguments.backends.split(",") if name.strip()]
    unknown = set(arguments.backends) - set(BACKENDS)
    if unknown or not arguments.backends:
        parser.error(f"--backends takes {', '.join(BACKENDS)}; got {arguments.backends}")
    if not 0 < arguments.seconds <= 600 or not 1 <= arguments.connections <= 1024:
        parser.error("--seconds must be in (0, 600] and --connections in [1, 1024]")
    return arguments


def main() -> int:
    arguments = _arguments()
    if arguments.profile is not None:
        arguments.profile.mkdir(parents=True, exist_ok=True)
    reports: list[BackendReport] = []
    failed = False
    # The client gets a process of its own: on a 2-core machine its CPU must not be
    # the server's, and spawn keeps it free of anything this process imported.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        for backend in arguments.backends:
            print(f"{backend}: starting", flush=True)
            try:
                report = _bench_backend(
                    backend,
                    arguments.seconds,
                    arguments.connections,
                    pool,
                    arguments.profile,
                    arguments.phases,
                )
            except Exception as error:
                # One backend failing must not hide the other's figures; cleanup has
                # already run, and the error is reported with the exit status.
                print(f"{backend}: FAILED: {error!r}", file=sys.stderr)
                failed = True
                continue
            reports.append(report)
            _print_report(report, arguments.seconds, arguments.connections)
    if len(reports) > 1:
        print()
        print("== summary ==")
        for report in reports:
            for ratio in report.ratios:
                print(f"{report.backend:<11} {ratio.name:<31} {ratio.value:5.2f}x  {ratio.verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        # Cleanup already ran in the finally blocks; 130 is the shell's code for SIGINT.
        sys.exit(130)
