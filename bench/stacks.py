"""Summarises a py-spy `--format raw` profile (collapsed stacks) as text: where the
samples are, by package, by function (self) and by function (inclusive).

    python bench/stacks.py /tmp/profile.txt [--top 20]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# "function (path/to/file.py:123)" as py-spy writes a frame.
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
_PACKAGE = re.compile(r"(?:site-packages|dist-packages)/(?P<package>[^/]+)/")


@dataclass(frozen=True, slots=True)
class Summary:
    samples: int
    packages: Counter[str]
    own: Counter[str]
    inclusive: Counter[str]
    threads: Counter[str]


def _function(frame: str) -> str:
    """The frame without its line number, with a short file name."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    file = match["file"]
    short = _PACKAGE.split(file)[-1] if _PACKAGE.search(file) else file
    marker = "/src/"
    if marker in short:
        short = short.split(marker, 1)[1]
    return f"{match['function']} ({short})"


def _package(frame: str) -> str:
    """The top-level package of a frame's file; py-spy shortens paths to start there."""
    match = _FRAME.match(frame)
    file = match["file"] if match else frame
    found = _PACKAGE.search(file)
    if found:
        return found["package"]
    if "/src/trackbook/" in file:
        return "trackbook"
    if "/" in file and not file.startswith("/"):
        return file.split("/", 1)[0]
    return f"{file.rsplit('/', 1)[-1]} (module)"


def summarise(path: Path) -> Summary:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[_function(frames[-1])] += count
        packages[_package(frames[-1])] += count
        for function in {_function(frame) for frame in frames}:
            inclusive[function] += count
        # Worker threads (aiosqlite's, the default executor's) start in threading.
        threads["worker threads" if "threading" in frames[0] else "event loop"] += count
    return Summary(total, packages, own, inclusive, threads)


def render(summary: Summary, top: int = 20) -> str:
    def share(count: int) -> str:
        return f"{100 * count / summary.samples:5.1f}%" if summary.samples else "  -  "

    lines = [f"{summary.samples} samples"]
    lines.append("by thread:")
    lines += [f"  {share(n)}  {name}" for name, n in summary.threads.most_common()]
    lines.append("self time by package:")
    lines += [f"  {share(n)}  {name}" for name, n in summary.packages.most_common(12)]
    lines.append(f"top {top} functions by self time:")
    lines += [f"  {share(n)}  {name}" for name, n in summary.own.most_common(top)]
    # Inclusive time of the framework's wrappers says nothing; the app's own functions do.
    ours = Counter({name: n for name, n in summary.inclusive.items() if "trackbook/" in name})
    lines.append(f"top {top} trackbook functions by inclusive time:")
    lines += [f"  {share(n)}  {name}" for name, n in ours.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, help="a py-spy --format raw file")
    parser.add_argument("--top", type=int, default=20)
    arguments = parser.parse_args()
    print(render(summarise(arguments.profile), arguments.top))


if __name__ == "__main__":
    main()
