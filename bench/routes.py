"""Route matching: what finding its route costs each dialect's track request in the real
app, against the same path matched by one plain Starlette route (the floor), measured
in the same run. No server and no database I/O: only the app's route list.

    python bench/routes.py [--rounds 20000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from starlette.routing import BaseRoute, Match, Route

# each dialect's track path, as bench/ingest.py sends it, and the validate reference
PATHS = (
    ("native track", "/v1/track"),
    ("native batch", "/v1/batch"),
    ("validate (bench)", "/v1/_bench/validate"),
    ("octeth", "/api/v1/event"),
    ("fluentcrm", "/wp-json/fluent-crm/v2/subscribers/track-event"),
    ("trackcmp", "/event"),
    ("v1 track_event_add", "/admin/api.php"),
    ("segment", "/segment/v1/track"),
)


def _scope(path: str) -> dict[str, object]:
    return {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }


def _match_seconds(routes: Sequence[BaseRoute], path: str, rounds: int) -> tuple[float, int]:
    """Mean time to find the route of `path` as Starlette's router does (first full
    match in order), and that route's position."""
    position = -1
    started = time.perf_counter()
    for _ in range(rounds):
        scope = _scope(path)
        for position, route in enumerate(routes):  # noqa: B007 - kept after the loop
            match, _ = route.matches(scope)
            if match is Match.FULL:
                break
    return (time.perf_counter() - started) / rounds, position


async def _endpoint() -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20000)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tb-routes-") as directory:
        os.environ["TRACKBOOK_DATABASE_URL"] = f"sqlite+aiosqlite:///{Path(directory) / 'r.db'}"
        os.environ["TRACKBOOK_SECRET_KEY_FILE"] = str(Path(directory) / "trackbook.key")
        os.environ["TRACKBOOK_BENCH_ROUTES"] = "true"
        from trackbook.app import create_app  # noqa: PLC0415 - after the settings above

        routes = create_app().router.routes
        print(f"{len(routes)} top-level routes; {arguments.rounds} rounds per path")
        print(f"{'request':<20} {'position':>8} {'app µs':>8} {'floor µs':>9} {'ratio':>7}")
        for name, path in PATHS:
            app_seconds, position = _match_seconds(routes, path, arguments.rounds)
            floor, _ = _match_seconds([Route(path, _endpoint)], path, arguments.rounds)
            print(
                f"{name:<20} {position:>8} {app_seconds * 1e6:>8.1f} {floor * 1e6:>9.1f} "
                f"{app_seconds / floor:>6.1f}x"
            )


if __name__ == "__main__":
    main()
