"""Live policy reload: a changed policy file (polled) or SIGHUP loads the
file again; a valid policy is swapped in, an invalid one is refused with
every problem logged and the last good policy stays.

Requests read the active policy once, when they start, so a swap never
changes a request or a stream midway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from guardgate.logs import get_logger

log = get_logger("guardgate")

POLL_SECONDS = 0.25


def file_stamp(path: str | Path) -> tuple[int, int, int] | None:
    """What tells a file's change: its mtime, size and inode; None when absent."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


class PolicyWatcher:
    """Calls ``reload`` when ``path`` changes, and on SIGHUP."""

    def __init__(self, path: Path, reload: Callable[[], Awaitable[bool]]) -> None:
        self.path = path
        self._reload = reload
        self._task: asyncio.Task[None] | None = None
        self._stamp = file_stamp(path)
        self._signal = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._poll())
        try:
            loop.add_signal_handler(signal.SIGHUP, self._hangup)
            self._signal = True
        except (ValueError, RuntimeError, NotImplementedError, AttributeError):
            pass  # not the main thread, or no SIGHUP here: the file is still watched

    def _hangup(self) -> None:
        log.info("policy reload requested", signal="SIGHUP", path=str(self.path))
        asyncio.ensure_future(self._reload())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            stamp = file_stamp(self.path)
            if stamp is not None and stamp != self._stamp:
                self._stamp = stamp
                await self._reload()

    async def stop(self) -> None:
        if self._signal:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
