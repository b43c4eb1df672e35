"""Recorded files as the offline commands read them: gzip opened
transparently, and progress shown on a terminal.

A month of traffic is millions of lines: a command reading it says how far
it is, on standard error, when that is a terminal (piped or redirected, it
stays quiet).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import stat
import sys
from collections.abc import Iterator
from types import TracebackType
from typing import Self, cast

GZIP_MAGIC = b"\x1f\x8b"


class Unreadable(Exception):
    """An input could not be read: the message names it and says why."""


class Source:
    """One input file (``-``: standard input), decompressed when its first
    bytes say gzip, whatever its name. Reading it raises `Unreadable`."""

    def __init__(self, name: str) -> None:
        self.name = name
        with self._reading():
            self._raw = (
                cast(io.BufferedReader, sys.stdin.buffer) if name == "-" else open(name, "rb")  # noqa: SIM115
            )
            info = os.fstat(self._raw.fileno())
            # Progress is measured on the bytes read from disk: known for a file.
            self.size: int | None = info.st_size if stat.S_ISREG(info.st_mode) else None
            self.stream: io.BufferedIOBase = self._raw
            if self._raw.peek(2)[:2] == GZIP_MAGIC:
                self.stream = gzip.GzipFile(fileobj=self._raw, mode="rb")

    def lines(self) -> Iterator[bytes]:
        with self._reading():
            yield from self.stream

    def batches(self, size: int = 1 << 20) -> Iterator[list[bytes]]:
        """Lines, about ``size`` bytes at a time."""
        with self._reading():
            while batch := self.stream.readlines(size):
                yield batch

    def read(self) -> bytes:
        with self._reading():
            return self.stream.read()

    def position(self) -> int | None:
        """Bytes of the file read so far; None for a pipe."""
        return self._raw.tell() if self.size is not None else None

    def close(self) -> None:
        if self.stream is not self._raw:
            self.stream.close()
        if self._raw is not sys.stdin.buffer:
            self._raw.close()

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except gzip.BadGzipFile as exc:
            raise Unreadable(f"cannot read {self.name}: not a valid gzip file ({exc})") from None
        except EOFError:
            raise Unreadable(f"cannot read {self.name}: the gzip file ends early") from None
        except OSError as exc:
            raise Unreadable(f"cannot read {self.name}: {exc.strerror or exc}") from None


class Progress:
    """A progress bar on standard error, shown only when that is a terminal.

    ``total`` bytes when the input's size is known; otherwise a count of
    ``unit`` (records read) with no end.
    """

    def __init__(self, description: str, total: int | None, *, unit: str = "records",
                 quiet: bool = False) -> None:
        from tqdm import tqdm

        measured = total is not None
        self._bar = tqdm(
            desc=description,
            total=total,
            unit="B" if measured else f" {unit}",
            unit_scale=True,
            unit_divisor=1024 if measured else 1000,
            file=sys.stderr,
            disable=True if quiet else None,  # None: shown on a terminal only
            leave=False,
            dynamic_ncols=True,
            mininterval=0.25,
        )

    def at(self, done: int) -> None:
        """Everything up to ``done`` (bytes or records) is read."""
        self._bar.update(done - self._bar.n)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._bar.close()
