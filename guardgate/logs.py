"""Structured logs: one JSON line per request, through structlog.

A library user keeps their own structlog configuration; `configure_logging`
is what the command line calls.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, BinaryIO

import orjson
import structlog

_LEVELS = {"warn": "warning", "exception": "error"}
_tracebacks = structlog.processors.dict_tracebacks


def render(logger: Any, method_name: str, event_dict: Any) -> bytes:
    """The whole processor chain in one step: what ``add_log_level``,
    ``TimeStamper(fmt=None)``, ``dict_tracebacks`` and ``JSONRenderer`` over
    orjson would make of the event, a call per line instead of four."""
    event_dict["level"] = _LEVELS.get(method_name, method_name)
    event_dict["timestamp"] = time.time()
    if "exc_info" in event_dict:
        event_dict = _tracebacks(logger, method_name, event_dict)
    return orjson.dumps(event_dict, default=str)


class LineBuffer:
    """A structlog logger writing lines in batches.

    A write and a flush per request line is a system call on the hot path;
    lines are gathered instead and written every ``interval`` seconds (or
    every ``limit`` bytes, or outside an event loop at once), and flushed at
    exit.
    """

    def __init__(self, stream: BinaryIO, interval: float = 0.05, limit: int = 64 * 1024) -> None:
        self._stream = stream
        self._interval = interval
        self._limit = limit
        self._buffer = bytearray()
        self._pending = False
        atexit.register(self.flush)

    def msg(self, message: bytes) -> None:
        self._buffer += message
        self._buffer += b"\n"
        if len(self._buffer) >= self._limit:
            self.flush()
        elif not self._pending:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._pending = True
            loop.call_later(self._interval, self.flush)

    log = debug = info = warning = warn = error = critical = exception = msg

    def flush(self) -> None:
        self._pending = False
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            try:
                self._stream.write(data)
                self._stream.flush()
            except (OSError, ValueError):
                pass  # a closed or broken stdout must not take requests down


def configure_logging(level: str = "info", stream: BinaryIO | None = None) -> None:
    """JSON lines on stdout (or ``stream``), filtered at ``level``."""
    sink = LineBuffer(stream or sys.stdout.buffer)
    structlog.configure(
        processors=[render],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=lambda *args: sink,
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


# structlog's own level-filtering loggers: its default, and what
# `configure_logging` sets up.
_FILTERING = frozenset(
    structlog.make_filtering_bound_logger(level)
    for level in (logging.NOTSET, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR,
                  logging.CRITICAL)
)

LineWriter = Callable[[str, dict[str, Any]], None]


def info_writer(log: Any) -> LineWriter:
    """``log.info(event, **fields)`` as a call taking the fields as a dict.

    For structlog's filtering loggers the steps of their ``info`` are taken
    directly (the processor chain over the fields, then the wrapped logger),
    without the fields being packed into keywords three times on the way.
    Any other logger is called as it is.
    """
    if type(log) not in _FILTERING:
        return lambda event, fields: log.info(event, **fields)
    if not log.is_enabled_for(logging.INFO):
        return lambda event, fields: None

    def write(event: str, fields: dict[str, Any]) -> None:
        # BoundLoggerBase._proxy_to_logger, which custom wrappers may call.
        try:
            args, kw = log._process_event("info", event, fields)
            log._logger.info(*args, **kw)
        except structlog.DropEvent:
            pass

    return write


# The server's own complaint when a response is ended without a clean end
# (uvicorn logs it at error level). The gateway does that on purpose when the
# upstream fails mid-response, and logs the cause on its request line.
_INCOMPLETE = "ASGI callable returned without completing response."
_cut: contextvars.ContextVar[bool] = contextvars.ContextVar("guardgate_cut", default=False)


def cut_response() -> None:
    """Mark the response of the current request as cut on purpose."""
    _cut.set(True)


class _ExpectedCuts(logging.Filter):
    """Drops the server's "returned without completing response" for a
    response the gateway cut on purpose (same task, so the mark is seen);
    the complaint stays for any other application's."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_cut.get() and record.msg == _INCOMPLETE)


def quiet_expected_cuts() -> None:
    server = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _ExpectedCuts) for f in server.filters):
        server.addFilter(_ExpectedCuts())
