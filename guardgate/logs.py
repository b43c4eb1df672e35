"""Structured logs: one JSON line per request, through structlog.

`configure_logging` is what the command line calls. Mounted as middleware,
guardgate writes the same JSON lines on stdout for as long as structlog is
not configured (its defaults are key=value lines for a developer's terminal,
not for a log collector); once the host application configures structlog,
guardgate's events go through that configuration instead.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, BinaryIO, cast

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
    """A logger for guardgate's own events (see the module's docstring)."""
    return _Logger(name)


class _Logger:
    """Looks at structlog's configuration when it is used, not when it is
    made: modules make theirs at import, before a host application has had
    a chance to configure anything."""

    __slots__ = ("_context", "_name")

    def __init__(self, name: str, context: dict[str, Any] | None = None) -> None:
        self._name = name
        self._context = context or {}

    def bind(self, **values: Any) -> Any:
        if structlog.is_configured():
            return self._configured().bind(**values)
        return _Logger(self._name, {**self._context, **values})

    def writer(self) -> LineWriter:
        """What `info_writer` makes of this logger, choosing at each line."""
        return _ChoosingWriter(self)

    def _configured(self) -> Any:
        log = structlog.get_logger(self._name)
        return log.bind(**self._context) if self._context else log

    def _fallback(self) -> Any:
        log = _json_lines()
        return log.bind(**self._context) if self._context else log

    def __getattr__(self, method: str) -> Any:
        target = self._configured() if structlog.is_configured() else self._fallback()
        return getattr(target, method)


class _ChoosingWriter:
    """A line writer for a logger bound while structlog was unconfigured:
    guardgate's JSON lines until structlog is configured, then structlog's
    configuration (resolved once, as for a logger bound after it)."""

    __slots__ = ("_configured", "_fallback", "_log")

    def __init__(self, log: _Logger) -> None:
        self._log = log
        self._configured: LineWriter | None = None
        self._fallback: LineWriter | None = None

    def __call__(self, event: str, fields: dict[str, Any]) -> None:
        if structlog.is_configured():
            if self._configured is None:
                self._configured = info_writer(self._log._configured())
            self._configured(event, fields)
        else:
            if self._fallback is None:
                self._fallback = info_writer(self._log._fallback())
            self._fallback(event, fields)


class _TextStream:
    """A text stream as the binary one `LineBuffer` writes to (a host may
    have replaced ``sys.stdout`` by one without ``buffer``)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        self._stream.write(data.decode("utf-8", "replace"))

    def flush(self) -> None:
        self._stream.flush()


_fallback_logger: Any = None


def _json_lines() -> Any:
    """The logger used while structlog is unconfigured: JSON lines on stdout,
    at ``GUARDGATE_LOG_LEVEL`` (default info), as `configure_logging` sets up."""
    global _fallback_logger
    if _fallback_logger is None:
        level = os.environ.get("GUARDGATE_LOG_LEVEL", "info").upper()
        stream = getattr(sys.stdout, "buffer", None) or _TextStream(sys.stdout)
        sink = LineBuffer(cast(BinaryIO, stream))
        _fallback_logger = structlog.wrap_logger(
            sink,
            processors=[render],
            wrapper_class=structlog.make_filtering_bound_logger(
                logging.getLevelNamesMapping().get(level, logging.INFO)
            ),
            cache_logger_on_first_use=True,
        )
    return _fallback_logger


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
    if isinstance(log, _Logger):
        return log.writer()
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
