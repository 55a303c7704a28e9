"""Rendering email templates in child processes limited in memory and CPU time, each
killed (and replaced) when a render outlives its deadline.

A tenant's template is hostile input. A thread cannot be stopped: a render past its
deadline kept its thread, and a few of them filled the default thread pool that other
work waits on. A child process can be killed, and the kernel holds it to its limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import sys
from collections.abc import Mapping
from typing import Any, BinaryIO

import orjson

from trackbook.delivery.personalise import RenderError, render
from trackbook.errors import bounded

log = logging.getLogger(__name__)

DEADLINE_SECONDS = 5
MEMORY_BYTES = 256 * 2**20
"""Address space of a child: a template asking for more fails with MemoryError there."""
PROCESSES = 2
_CHILD = (sys.executable, "-m", "trackbook.delivery.renderer")


def _describe(returncode: int | None) -> str:
    if returncode == -signal.SIGXCPU:
        return f"the template used more than {DEADLINE_SECONDS} s of CPU"
    if returncode is not None and returncode < 0:
        return f"the renderer was stopped by {signal.Signals(-returncode).name}"
    return f"the renderer stopped (exit status {returncode})"


class Renderer:
    """Up to `processes` child processes, started when first needed and reused; one
    render at a time each. The deadline counts from when a child takes the render, so
    a template waiting behind a slow one is not failed for it."""

    def __init__(
        self,
        *,
        processes: int = PROCESSES,
        deadline_seconds: float = DEADLINE_SECONDS,
        memory_bytes: int = MEMORY_BYTES,
    ) -> None:
        self._deadline = deadline_seconds
        self._memory = memory_bytes
        self._slots = asyncio.Semaphore(processes)
        self._idle: list[asyncio.subprocess.Process] = []
        self._children: set[asyncio.subprocess.Process] = set()

    @property
    def idle(self) -> bool:
        """A child could take a render now, with none waiting before it."""
        return not self._slots.locked()

    async def render(
        self,
        template: str,
        *,
        context: Mapping[str, Any],
        latest_values: Mapping[str, str | None],
        as_html: bool = False,
    ) -> str:
        job = orjson.dumps(
            {
                "template": template,
                "context": context,
                "latest_values": latest_values,
                "as_html": as_html,
            }
        )
        async with self._slots:
            child = self._idle.pop() if self._idle else await self._start()
            try:
                async with asyncio.timeout(self._deadline):
                    reply = await _exchange(child, job)
            except TimeoutError:
                await self._retire(child)
                raise RenderError(
                    f"the template took over {self._deadline:g} s to render; it was stopped"
                ) from None
            except (asyncio.IncompleteReadError, ConnectionError):
                returncode = await self._retire(child)
                raise RenderError(_describe(returncode)) from None
            except BaseException:
                await self._retire(child)  # cancelled mid-render: the child is not reused
                raise
        if reply.get("retire"):
            await self._retire(child)
        else:
            self._idle.append(child)
        if "error" in reply:
            raise RenderError(str(reply["error"]))
        return str(reply["text"])

    async def _start(self) -> asyncio.subprocess.Process:
        child = await asyncio.create_subprocess_exec(
            *_CHILD,
            str(self._memory),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self._children.add(child)
        return child

    async def _retire(self, child: asyncio.subprocess.Process) -> int | None:
        """Kills the child and waits for it, so that none outlives its render."""
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        returncode = await child.wait()
        if child.stdin is not None:
            child.stdin.close()
        self._children.discard(child)
        with contextlib.suppress(ValueError):
            self._idle.remove(child)
        return returncode

    async def close(self) -> None:
        for child in list(self._children):
            await self._retire(child)


async def _exchange(child: asyncio.subprocess.Process, job: bytes) -> dict[str, Any]:
    assert child.stdin is not None  # noqa: S101 - started with both piped
    assert child.stdout is not None  # noqa: S101
    child.stdin.write(len(job).to_bytes(4, "big") + job)
    await child.stdin.drain()
    size = int.from_bytes(await child.stdout.readexactly(4), "big")
    reply: dict[str, Any] = orjson.loads(await child.stdout.readexactly(size))
    return reply


# the child


def _answer(job: dict[str, Any], memory_bytes: int) -> dict[str, Any]:
    try:
        return {
            "text": render(
                job["template"],
                context=job["context"],
                latest_values=job["latest_values"],
                as_html=job["as_html"],
            )
        }
    except RenderError as error:
        return {"error": str(error)}
    except MemoryError:
        # what failed to allocate is gone, but a child that ran out is not trusted again
        limit = memory_bytes // 2**20
        return {"error": f"the template needs more than {limit} MB of memory", "retire": True}
    except Exception as error:  # whatever else a template breaks, it broke
        return {"error": f"the template cannot be rendered: {type(error).__name__}: {error}"}


def _serve(requests: BinaryIO, replies: BinaryIO, memory_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    while len(header := requests.read(4)) == 4:
        job = orjson.loads(requests.read(int.from_bytes(header, "big")))
        # the parent kills a render at its deadline; should the parent itself die
        # first, the kernel stops an orphan spinning in a template a second later
        used = resource.getrusage(resource.RUSAGE_SELF)
        budget = int(used.ru_utime + used.ru_stime) + DEADLINE_SECONDS + 1
        resource.setrlimit(resource.RLIMIT_CPU, (budget, resource.RLIM_INFINITY))
        answer = _answer(job, memory_bytes)
        if "error" in answer:
            # an error can quote the template's data (`{}.pop(s)` names the whole key):
            # never megabytes of it back to the parent, which keeps and logs it
            answer["error"] = bounded(answer["error"])
        reply = orjson.dumps(answer)
        replies.write(len(reply).to_bytes(4, "big") + reply)
        replies.flush()


if __name__ == "__main__":
    # replies go over the original stdout; anything printed goes to stderr instead
    _replies = sys.stdout.buffer
    sys.stdout = sys.stderr
    _serve(sys.stdin.buffer, _replies, int(sys.argv[1]))
