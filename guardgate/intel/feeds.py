"""The policy's feeds, polled in the background, and the index they make.

One `IntelFeeds` per gateway, kept across policy reloads like the store:
`configure` takes a reloaded policy's feeds (a feed whose settings did not
change keeps what it holds), and a task started with the gateway polls
them, in worker threads, never on the request path: a file every
`FILE_CHECK` seconds (read again when it changed), a TAXII collection every
``every`` (the objects added since the last poll, and all of them now and
then). After a change the indicators in force are merged into a new
`IntelIndex`, swapped in at once; the request path only reads it.

A poll that fails (unreachable, malformed, every indicator expired) changes
nothing: the feed's last good indicators stay in force, the failure is
logged and counted (``guardgate_intel_polls{outcome=...}``). Bundles loaded
by the operator (``guardgate intel import --gateway``, POST
/_guardgate/intel/import) are feeds of their own, kept in this process
until their indicators expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from guardgate.intel.index import EMPTY, Indicator, IntelIndex, Match
from guardgate.intel.reader import MAX_INDICATORS, FeedError, Reading, Terms, read
from guardgate.intel.stix import stamp
from guardgate.logs import get_logger
from guardgate.metrics import Metrics
from guardgate.policy.intel_config import FeedConfig, IntelConfig
from guardgate.reload import file_stamp
from guardgate.store import redacted

log = get_logger("guardgate")

FILE_CHECK = 2.0      # seconds between two looks at a feed file
TICK = 1.0            # the poller's step
REBUILD_EVERY = 60.0  # the index is rebuilt this often at least (indicators expire)
FULL_EVERY = 24       # a TAXII feed fetches every object once every this many polls
OVERLAP = 600.0       # incremental TAXII polls ask for what was added since this long before
MATCHED_KEPT = 1000   # matched indicators the operator view remembers
CALLERS_KEPT = 20     # callers remembered per matched indicator


@dataclass(slots=True)
class FeedState:
    """One feed: what it holds and how its polls went."""

    config: FeedConfig
    indicators: dict[str, tuple[float, Indicator]] = field(default_factory=dict)
    campaigns: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    outcome: str = "pending"
    error: str | None = None
    last_poll: float | None = None
    last_ok: float | None = None
    due: float = 0.0
    stamp: tuple[int, int, int] | None = None
    polls: int = 0
    added_after: float | None = None
    loaded: bool = False  # an operator's bundle, not a policy feed

    @property
    def source(self) -> str:
        if self.loaded:
            return "operator import"
        return self.config.file or redacted(self.config.taxii or "")

    def in_force(self, now: float) -> list[Indicator]:
        return [indicator for _, indicator in self.indicators.values()
                if indicator.valid_until is None or indicator.valid_until > now]


@dataclass(slots=True)
class Matched:
    """An indicator that matched callers, for the operator."""

    indicator: Indicator
    matches: int = 0
    first: float = 0.0
    last: float = 0.0
    callers: OrderedDict[str, float] = field(default_factory=OrderedDict)


class IntelFeeds:
    """The feeds of the policy in force, the index of their indicators, and
    the callers those matched."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics
        self.index: IntelIndex = EMPTY
        self.config: IntelConfig | None = None
        self._feeds: dict[str, FeedState] = {}
        self._loaded: dict[str, FeedState] = {}
        self._matched: OrderedDict[str, Matched] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._polls: dict[str, asyncio.Task[None]] = {}  # feed name -> its poll in flight
        self._started = False
        self._built = 0.0

    # --- configuration ---------------------------------------------------------------------

    def configure(self, config: IntelConfig | None) -> None:
        """Take the feeds of a (re)loaded policy; rebuild the index."""
        self.config = config
        feeds = config.feeds if config is not None else ()
        kept: dict[str, FeedState] = {}
        for feed in feeds:
            held = self._feeds.get(feed.name)
            kept[feed.name] = held if held is not None and held.config == feed else FeedState(feed)
        for name in set(self._feeds) - set(kept):
            self._gauge(name, None)
        self._feeds = kept
        self.rebuild(time.time())
        if self._started and self._task is None and kept:
            self._spawn()

    @property
    def terms(self) -> Terms:
        config = self.config
        if config is None:
            return Terms()
        return Terms(config.salt, config.match, config.signal.min_confidence)

    # --- the background poller --------------------------------------------------------------

    def start(self) -> None:
        """Poll in the background from now on (in a running event loop)."""
        self._started = True
        if self._task is None and self._feeds:
            self._spawn()

    def _spawn(self) -> None:
        try:
            self._task = asyncio.get_running_loop().create_task(self._run())
        except RuntimeError:
            self._task = None  # no loop yet: start() spawns it

    async def _run(self) -> None:
        while True:
            try:
                self._launch(every=False)
                if time.time() - self._built >= REBUILD_EVERY:
                    self.rebuild(time.time())
            except Exception as exc:  # noqa: BLE001 -- the poller outlives any one failure
                log.error("intel poller failed", error=repr(exc))
            await asyncio.sleep(TICK)

    def _launch(self, *, every: bool) -> list[asyncio.Task[None]]:
        """A task polling each feed that is due (``every``: each feed), unless
        one is in flight already: one slow feed never holds the others."""
        now = time.time()
        tasks = []
        for state in self._feeds.values():
            name = state.config.name
            task = self._polls.get(name)
            if task is None and (every or now >= state.due):
                task = self._polls[name] = asyncio.get_running_loop().create_task(
                    self._poll_one(state, every))
                task.add_done_callback(functools.partial(self._done, name))
            if task is not None:
                tasks.append(task)
        return tasks

    def _done(self, name: str, task: asyncio.Task[None]) -> None:
        if self._polls.get(name) is task:
            del self._polls[name]

    async def _poll_one(self, state: FeedState, forced: bool) -> None:
        try:
            if await self._poll(state, forced):
                self.rebuild(time.time())
        except Exception as exc:  # noqa: BLE001 -- the poller outlives any one failure
            log.error("intel poll failed", feed=state.config.name, error=repr(exc))

    async def refresh(self, *, every: bool = False) -> None:
        """Poll the feeds that are due (``every``: all of them, now), each in
        a task of its own, and wait for them; then rebuild the index if it is
        due (each poll that changed something rebuilt it already)."""
        tasks = self._launch(every=every)
        if tasks:
            await asyncio.wait(tasks)
        if time.time() - self._built >= REBUILD_EVERY:
            self.rebuild(time.time())

    async def _poll(self, state: FeedState, forced: bool) -> bool:
        """One poll of ``state``'s feed; whether what it holds changed."""
        config = state.config
        now = time.time()
        state.due = now + (FILE_CHECK if config.file is not None else config.every)
        if config.file is not None:
            stamp_now = file_stamp(config.file)
            if stamp_now is not None and stamp_now == state.stamp and not forced:
                return False
        since = None
        if config.taxii is not None and state.added_after is not None \
                and state.polls % FULL_EVERY:
            since = stamp(state.added_after - OVERLAP)
        try:
            if config.file is not None:
                reading = await asyncio.to_thread(self._read_file, config, now)
            else:
                reading = await _off_loop(lambda: self._read_taxii(config, since, now))
        except FeedError as err:
            self._failed(state, err, now)
            return False
        if config.file is not None:
            state.stamp = file_stamp(config.file)
        if since is None:  # everything the feed holds
            state.indicators, state.campaigns = reading.indicators, reading.campaigns
        else:  # what was added since the last poll: new ones, new versions, withdrawals
            for key, held in reading.indicators.items():
                if key in state.indicators or len(state.indicators) < MAX_INDICATORS:
                    state.indicators[key] = held
                else:
                    reading.skipped["too_many"] += 1
            state.campaigns.update(reading.campaigns)
            for withdrawn in reading.revoked:
                state.indicators.pop(withdrawn, None)
        state.added_after = now
        state.polls += 1
        self._succeeded(state, reading, now)
        return True

    def _read_file(self, config: FeedConfig, now: float) -> Reading:
        assert config.file is not None
        try:
            with open(config.file, "rb") as source:
                data = source.read()
        except OSError as exc:
            raise FeedError("unreachable", f"cannot read {config.file}: "
                                           f"{exc.strerror or exc}") from None
        return read(data, config.name, now, self.terms)

    def _read_taxii(self, config: FeedConfig, since: str | None, now: float) -> Reading:
        from guardgate.intel import taxii

        assert config.taxii is not None
        objects = taxii.fetch(config.taxii, config.user, config.password, config.timeout,
                              since)
        return read({"objects": objects}, config.name, now, self.terms)

    def _failed(self, state: FeedState, err: FeedError, now: float) -> None:
        """Counted on every failed poll; logged once per failure, until it changes."""
        if (state.outcome, state.error) != (err.reason, err.message):
            log.warning("intel feed failed: its last good indicators stay",
                        feed=state.config.name, reason=err.reason, error=err.message,
                        kept=len(state.in_force(now)))
        state.outcome, state.error, state.last_poll = err.reason, err.message, now
        if state.config.file is not None:
            state.stamp = file_stamp(state.config.file)  # read again once it changes
        self._count(state.config.name, err.reason)

    def _succeeded(self, state: FeedState, reading: Reading, now: float) -> None:
        changed = state.outcome != "ok"
        state.outcome, state.error, state.last_poll, state.last_ok = "ok", None, now, now
        state.skipped = dict(reading.skipped)
        if changed or reading.indicators:
            log.info("intel feed read", feed=state.config.name, **reading.summary())
        self._count(state.config.name, "ok")

    def _count(self, feed: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.intel_polls.labels(feed, outcome).inc()

    def _gauge(self, feed: str, count: int | None) -> None:
        if self.metrics is None:
            return
        if count is None:
            with contextlib.suppress(KeyError):
                self.metrics.intel_indicators.remove(feed)
        else:
            self.metrics.intel_indicators.labels(feed).set(count)

    # --- the index ---------------------------------------------------------------------------

    def rebuild(self, now: float) -> None:
        """Merge the indicators in force into a new index and swap it in."""
        config = self.config
        self._built = now
        for name, state in list(self._loaded.items()):
            if not state.in_force(now):
                del self._loaded[name]
        if config is None or config.signal.weight <= 0:
            self.index = EMPTY
            return
        indicators: list[Indicator] = []
        for state in [*self._feeds.values(), *self._loaded.values()]:
            live = state.in_force(now)
            indicators += live
            self._gauge(state.config.name, len(live))
        self.index = IntelIndex(indicators, config.salt, config.signal.half_life)

    def load(self, name: str, data: Any, now: float | None = None, *,
             quiet: bool = False) -> dict[str, Any]:
        """An operator's bundle, in force in this process until its
        indicators expire (a bundle of the same name replaces it).
        `FeedError` when it is refused; logged unless ``quiet``."""
        now = time.time() if now is None else now
        return self.take(name, read(data, name, now, self.terms), now, quiet=quiet)

    def take(self, name: str, reading: Reading, now: float | None = None, *,
             quiet: bool = False) -> dict[str, Any]:
        """`load` of a bundle already read (off the event loop)."""
        now = time.time() if now is None else now
        state = FeedState(FeedConfig(name), reading.indicators, reading.campaigns,
                          dict(reading.skipped), "ok", None, now, now, loaded=True)
        self._loaded[name] = state
        self.rebuild(now)
        if not quiet:
            log.info("intel bundle imported", feed=name, **reading.summary())
        return {"feed": name, **reading.summary()}

    async def close(self) -> None:
        """Stop polling: the poller and every poll in flight are cancelled
        (a poll's worker thread ends at its deadline, unawaited)."""
        self._started = False
        task, self._task = self._task, None
        tasks = [*self._polls.values(), *([task] if task is not None else [])]
        self._polls.clear()
        for each in tasks:
            each.cancel()
        for each in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await each

    # --- what matched ------------------------------------------------------------------------

    def matched(self, principal: str, matches: list[Match], now: float) -> None:
        """Called by the risk engine when ``principal``'s request matched."""
        kept = self._matched
        kinds: set[str] = set()
        for indicator, _ in matches:
            entry = kept.get(indicator.id)
            if entry is None:
                entry = kept[indicator.id] = Matched(indicator, first=now)
                if len(kept) > MATCHED_KEPT:
                    kept.popitem(last=False)
            else:
                kept.move_to_end(indicator.id)
            entry.matches += 1
            entry.last = now
            entry.callers[principal] = now
            entry.callers.move_to_end(principal)
            if len(entry.callers) > CALLERS_KEPT:
                entry.callers.popitem(last=False)
            kinds.add(indicator.kind)
        if self.metrics is not None:
            for kind in kinds:
                self.metrics.intel_matches.labels(kind).inc()

    def status(self, now: float | None = None) -> dict[str, Any]:
        """The feeds, and the indicators that matched callers (most recent first)."""
        now = time.time() if now is None else now
        feeds = []
        for state in [*self._feeds.values(), *self._loaded.values()]:
            feeds.append({
                "name": state.config.name, "source": state.source, "outcome": state.outcome,
                "error": state.error, "in_force": len(state.in_force(now)),
                "campaigns": len(state.campaigns), "skipped": state.skipped,
                "last_poll": state.last_poll, "last_ok": state.last_ok,
            })
        matched = [
            {"indicator": m.indicator.id, "kind": m.indicator.kind, "value": m.indicator.value,
             "feed": m.indicator.feed, "campaign": m.indicator.campaign,
             "confidence": m.indicator.confidence, "valid_until": m.indicator.valid_until,
             "in_force": m.indicator.strength(now, self.index.half_life) > 0,
             "matches": m.matches, "first_matched": m.first, "last_matched": m.last,
             "callers": list(reversed(m.callers))}
            for m in reversed(self._matched.values())
        ]
        return {"indicators": self.index.size, "feeds": feeds, "matched": matched}


async def _off_loop(work: Callable[[], Reading]) -> Reading:
    """``work()`` in a daemon thread of its own, not the loop's executor: a
    poll cancelled in flight holds neither the loop nor its shutdown."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Reading] = loop.create_future()

    def settle(result: Reading | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            assert result is not None
            future.set_result(result)

    def run() -> None:
        result: Reading | None = None
        error: BaseException | None = None
        try:
            result = work()
        except BaseException as exc:  # noqa: BLE001 -- handed to the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="guardgate-intel-poll", daemon=True).start()
    return await future

