"""Fleet-wide policy state on Redis (extra ``asyncres[redis]``, through coredis).

::

    store = asyncres.redis.RedisStore("redis://127.0.0.1:6379/0", prefix="checkout")
    breaker = asyncres.CircuitBreaker(name="payments", store=store)
    async with store:  # syncs every 100 ms while the service runs
        ...

The call path stays local: each policy decides from its own state plus the fleet's view
that the store's background task refreshed at its last sync. Every ``flush_interval``
(default 0.1 s) the task sends each policy's local counts since the last sync in one Lua
script call (atomic on the server) and reads back the fleet's state — so a breaker opened by
one process is open in every process within one interval (plus a round trip), well inside
the documented bound of 1 s.

Redis trouble never fails a call. A sync that fails or takes longer than ``timeout``
(default 0.25 s) marks the store unavailable: `StoreUnavailable` is emitted, every policy
drops the fleet's view and decides on local state alone (fail open for the store, never
for the dependency: a local breaker still opens on local failures), and the store retries
with exponential backoff (0.1 s doubling to ``max_backoff``, 2 s). The first sync that
succeeds emits `StoreRecovered` and resyncs. Counts made while Redis was unreachable are
not replayed.

Keys: ``{prefix}:{kind}:{name}:...``, every one with a TTL (the window's length, or a
minute for circuit state and rate-limit TATs), so the state of a policy nobody runs any
more expires by itself. Times come from the Redis server's clock (``TIME``), so the
processes' clocks need not agree.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import anyio

from . import _validation
from ._events import Listener, StoreRecovered, StoreUnavailable, emit, logger
from ._store import ReplicaBase, SharedBreaker, SharedRate, SharedWindow

__all__ = ["RedisStore", "RedisStoreStatistics"]

# One sliding window of counters per policy: a hash per slice holding the fleet's total of
# each field ("t<i>") and each member's share ("<member>:<i>"), so a process learns the
# others' totals without double-counting its own.
_WINDOW = """
local function now_seconds()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function window(base, width, n, member, deltas)
  local now = now_seconds()
  local slice = math.floor(now / width)
  local key = base .. ':' .. slice
  local touched = false
  for i, d in ipairs(deltas) do
    if d ~= 0 then
      redis.call('HINCRBYFLOAT', key, 't' .. i, d)
      redis.call('HINCRBYFLOAT', key, member .. ':' .. i, d)
      touched = true
    end
  end
  if touched then redis.call('PEXPIRE', key, math.ceil(width * (n + 1) * 1000)) end
  local names = {}
  for i = 1, #deltas do
    names[#names + 1] = 't' .. i
    names[#names + 1] = member .. ':' .. i
  end
  local totals, others = {}, {}
  for i = 1, #deltas do totals[i] = 0; others[i] = 0 end
  for s = slice - n + 1, slice do
    local values = redis.call('HMGET', base .. ':' .. s, unpack(names))
    for i = 1, #deltas do
      local total = tonumber(values[2 * i - 1]) or 0
      totals[i] = totals[i] + total
      others[i] = others[i] + total - (tonumber(values[2 * i]) or 0)
    end
  end
  return now, slice, totals, others
end
"""

# KEYS: window base. ARGV: width, slices, member, deltas... -> the others' totals.
_WINDOW_SYNC = (
    _WINDOW
    + """
local deltas = {}
for i = 4, #ARGV do deltas[#deltas + 1] = tonumber(ARGV[i]) end
local _, _, _, others = window(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], deltas)
local out = {}
for i, v in ipairs(others) do out[i] = tostring(v) end
return out
"""
)

# KEYS: window base, state hash. ARGV: width, slices, member, calls, failures, trailing,
# succeeded, transition ("", "open", "closed"), its delay, threshold, rate, min_calls,
# delay when the fleet's counts trip it, state TTL (ms).
# -> state, seconds it stays open, epoch, the others' calls, the others' failures.
_BREAKER_SYNC = (
    _WINDOW
    + """
local width, n, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local calls, failures = tonumber(ARGV[4]), tonumber(ARGV[5])
local trailing, succeeded = tonumber(ARGV[6]), ARGV[7] == '1'
local transition, delay = ARGV[8], tonumber(ARGV[9])
local threshold, rate, min_calls = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local trip_delay, ttl = tonumber(ARGV[13]), tonumber(ARGV[14])
local now, slice, totals, others = window(KEYS[1], width, n, member, {calls, failures})
local st = redis.call('HMGET', KEYS[2], 'state', 'until', 'epoch', 'streak')
local state, open_until = st[1] or 'closed', tonumber(st[2]) or 0
local epoch, streak = tonumber(st[3]) or 0, tonumber(st[4]) or 0
if succeeded then streak = trailing else streak = streak + failures end
local changed = false
if transition == 'open' then
  state, open_until, changed = 'open', now + delay, true
elseif transition == 'closed' and state ~= 'closed' then
  state, streak, changed = 'closed', 0, true
  for s = slice - n + 1, slice do redis.call('DEL', KEYS[1] .. ':' .. s) end
  others = {0, 0}
elseif state == 'closed' then
  local by_streak = threshold > 0 and streak >= threshold
  local by_rate = rate > 0 and totals[1] >= min_calls and totals[1] > 0
    and totals[2] / totals[1] >= rate
  if by_streak or by_rate then
    state, open_until, changed = 'open', now + trip_delay, true
  end
end
if changed then epoch = epoch + 1 end
redis.call('HSET', KEYS[2], 'state', state, 'until', string.format('%.6f', open_until),
  'epoch', epoch, 'streak', streak)
redis.call('PEXPIRE', KEYS[2], ttl)
local remaining = 0
if state == 'open' then remaining = math.max(0, open_until - now) end
return {state, tostring(remaining), epoch, tostring(others[1]), tostring(others[2])}
"""
)

# GCRA leases for a rate limit: its shared key and its keys (``key()``), in one call.
# KEYS: TAT and members of each. ARGV: emission interval, burst, TTL (ms), member, then per
# key: tokens returned, tokens wanted, active (1/0) -> per key: tokens granted, members
# active in the last 3 s.
_RATE_SYNC = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local emission, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local ttl, member = tonumber(ARGV[3]), ARGV[4]
local out = {}
for i = 1, #KEYS / 2 do
  local tat_key, members_key = KEYS[2 * i - 1], KEYS[2 * i]
  local a = 4 + 3 * (i - 1)
  local unused, wanted = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local tat = tonumber(redis.call('GET', tat_key) or '0')
  tat = math.max(tat - unused * emission, now)
  local room = math.floor((now + emission * (burst - 1) - tat) / emission + 1e-9) + 1
  local granted = math.max(0, math.min(wanted, room))
  tat = tat + granted * emission
  redis.call('SET', tat_key, string.format('%.6f', tat), 'PX', ttl)
  if ARGV[a + 3] == '1' then redis.call('ZADD', members_key, now, member) end
  redis.call('ZREMRANGEBYSCORE', members_key, '-inf', now - 3)
  redis.call('PEXPIRE', members_key, ttl)
  out[2 * i - 1] = granted
  out[2 * i] = redis.call('ZCARD', members_key)
end
return out
"""

_STATE_TTL_MS = 60_000


@dataclass(frozen=True, slots=True)
class RedisStoreStatistics:
    """A snapshot of a `RedisStore`."""

    __module__ = "asyncres.redis"

    #: Whether the last sync reached Redis.
    available: bool
    #: Policies attached.
    policies: int
    #: Syncs that reached Redis, and syncs that failed (or timed out).
    syncs: int
    failures: int
    #: Script calls sent to Redis since the store started.
    commands: int
    #: Seconds since the last successful sync (``None`` before the first one).
    staleness: float | None


class RedisStore:
    """Shared state for `CircuitBreaker`, `RetryBudget`, `Throttle` and `RateLimit` on Redis.

    ``url``: a ``redis://`` URL, or give ``client=`` (an existing ``coredis.Redis``, which
    the store uses as is and does not close). ``prefix`` namespaces the keys (one per
    fleet). The policies that name this store in ``store=`` — each with a ``name=`` that
    identifies the shared state — are synced while the store runs (``async with store``).
    ``flush_interval``: seconds between syncs (the staleness bound of the fleet's view);
    ``timeout``: a sync taking longer counts as Redis being unavailable; ``max_backoff``:
    the longest wait between retries while it is.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "asyncres",
        flush_interval: float = 0.1,
        timeout: float = 0.25,
        max_backoff: float = 2.0,
        listeners: Iterable[Listener] = (),
    ) -> None:
        if (url is None) == (client is None):
            raise ValueError("give exactly one of `url` (a redis:// URL) and `client`")
        if url is not None and (not isinstance(url, str) or "://" not in url):
            raise ValueError(f"`url` must be a redis:// URL, got {url!r}")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"`prefix` must be a non-empty string, got {prefix!r}")
        self._url = url
        self._client = client
        self._prefix = prefix
        self._flush_interval = _validation.finite_positive("flush_interval", flush_interval)
        self._timeout = _validation.finite_positive("timeout", timeout)
        self._max_backoff = _validation.finite_positive("max_backoff", max_backoff)
        self._listeners = tuple(listeners)
        self._member = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._replicas: weakref.WeakSet[ReplicaBase] = weakref.WeakSet()
        self._scripts: dict[str, Any] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self._available = True
        self._down_since: float | None = None
        self._last_sync: float | None = None
        self._syncs = 0
        self._failures = 0
        self._commands = 0

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self._prefix!r}, flush_interval={self._flush_interval:g})"

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def flush_interval(self) -> float:
        return self._flush_interval

    # -- the Store interface -------------------------------------------------------------

    def attach(self, replica: ReplicaBase) -> None:
        for other in self._replicas:
            if other is not replica and (other.kind, other.name) == (replica.kind, replica.name):
                raise ValueError(
                    f"`name` {replica.name!r} is already used by another {replica.kind} on "
                    "this store: give each shared policy its own name"
                )
        self._replicas.add(replica)

    def detach(self, replica: ReplicaBase) -> None:
        self._replicas.discard(replica)

    # -- running ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._stack is not None:
            raise RuntimeError("this RedisStore is already running")
        stack = contextlib.AsyncExitStack()
        await stack.__aenter__()
        try:
            if self._url is not None:
                import coredis
                from coredis.retry import NoRetryPolicy

                client = coredis.Redis.from_url(
                    self._url,
                    connect_timeout=self._timeout,
                    stream_timeout=self._timeout,
                    retry_policy=NoRetryPolicy(),
                )
                self._client = await stack.enter_async_context(client)
            self._scripts = {
                kind: self._client.register_script(source)
                for kind, source in (
                    ("window", _WINDOW_SYNC),
                    ("breaker", _BREAKER_SYNC),
                    ("rate", _RATE_SYNC),
                )
            }
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)
            tg.start_soon(self._run)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)
        if self._url is not None:
            self._client = None
        for replica in list(self._replicas):
            replica.stale()

    async def sync(self) -> bool:
        """Sync every policy now (the background task does it every ``flush_interval``);
        ``True`` when Redis answered. Never raises for Redis trouble."""
        if self._client is None or not self._scripts:
            return False
        try:
            with anyio.fail_after(self._timeout):
                for replica in list(self._replicas):
                    await self._sync_one(replica)
        except Exception as exc:  # Redis slow or unreachable: local state until it returns
            self._lost(exc)
            return False
        self._reached()
        return True

    def statistics(self) -> RedisStoreStatistics:
        last = self._last_sync
        return RedisStoreStatistics(
            available=self._available,
            policies=len(self._replicas),
            syncs=self._syncs,
            failures=self._failures,
            commands=self._commands,
            staleness=None if last is None else time.monotonic() - last,
        )

    async def _run(self) -> None:
        failures = 0
        while True:
            if failures:
                # Exponential backoff with jitter while Redis is away (0.1 s doubling).
                ceiling = min(self._max_backoff, self._flush_interval * 2.0**failures)
                await anyio.sleep(random.uniform(ceiling / 2, ceiling))
            else:
                # Jittered (never later than the interval), so members sharing a rate limit
                # do not keep one sync order, which would favour the first ones for ever.
                await anyio.sleep(self._flush_interval * random.uniform(0.8, 1.0))
            failures = 0 if await self.sync() else min(failures + 1, 30)

    def _lost(self, exc: Exception) -> None:
        self._failures += 1
        for replica in list(self._replicas):
            replica.stale()
        if self._available:
            self._available = False
            self._down_since = time.monotonic()
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if not _redis_trouble(exc):
                # Still fail open (the service must not go down with its store), but this
                # is not Redis being away: a script error, a key of another type under our
                # prefix, a bug. Say so loudly, once per episode, with the traceback.
                logger.error(
                    "asyncres.redis: store %r failed to sync for an unexpected reason; its "
                    "policies run on local state until a sync succeeds",
                    self._prefix,
                    exc_info=exc,
                )
            emit(self._listeners, StoreUnavailable(self._prefix, error))

    def _reached(self) -> None:
        self._syncs += 1
        self._last_sync = time.monotonic()
        if not self._available:
            self._available = True
            since = self._down_since
            self._down_since = None
            seconds = 0.0 if since is None else self._last_sync - since
            emit(self._listeners, StoreRecovered(self._prefix, seconds))

    def _key(self, replica: ReplicaBase) -> str:
        return f"{self._prefix}:{replica.kind}:{replica.name}"

    async def _sync_one(self, replica: ReplicaBase) -> None:
        key = self._key(replica)
        self._commands += 1
        if isinstance(replica, SharedBreaker):
            await self._sync_breaker(key, replica)
        elif isinstance(replica, SharedWindow):
            width = replica.window / 10
            out = await self._scripts["window"](
                keys=[f"{key}:w"], args=[width, 10, self._member, *replica.take()]
            )
            replica.others([float(v) for v in out])
        elif isinstance(replica, SharedRate):
            await self._sync_rate(key, replica)

    async def _sync_rate(self, key: str, replica: SharedRate) -> None:
        """Lease the limit's shared key and every active key of it their fair shares."""
        unused, wanted = replica.demand()
        # The shared key first; an idle member keeps a single token for its next call.
        entries = [(key, replica, unused, wanted, 1)]
        # A key's idle member keeps none: its next call uses the local share (and the key
        # is forgotten), so a process remembers only the keys it uses.
        entries += [
            (f"{key}:key:{name}", child, u, w, 0) for name, child, u, w in replica.key_demands()
        ]
        keys: list[str] = []
        args: list[Any] = [replica.emission, replica.burst, _STATE_TTL_MS, self._member]
        for base, member, unused, wanted, idle_tokens in entries:
            keys += [f"{base}:tat", f"{base}:members"]
            # An active member leases its fair share of one interval's admissions (the
            # unused ones come back at the next sync), so the members get alike whatever
            # order they sync in.
            fair = math.ceil(self._flush_interval / (replica.emission * member.members))
            want = min(replica.burst, max(1, fair)) if wanted else idle_tokens
            args += [unused, want, 1 if wanted else 0]
        out = await self._scripts["rate"](keys=keys, args=args)
        for index, (_, member, unused, wanted, _) in enumerate(entries):
            member.lease(int(out[2 * index]), int(out[2 * index + 1]), bool(wanted), unused)

    async def _sync_breaker(self, key: str, replica: SharedBreaker) -> None:
        deltas = replica.take()
        trailing, succeeded = replica.take_streak()
        transition = replica.take_transition()
        state, delay = transition if transition is not None else ("", 0.0)
        rule = replica.rule
        try:
            out = await self._scripts["breaker"](
                keys=[f"{key}:w", f"{key}:state"],
                args=[
                    replica.window / 10,
                    10,
                    self._member,
                    deltas[0],
                    deltas[1],
                    trailing,
                    1 if succeeded else 0,
                    state,
                    delay,
                    rule.threshold,
                    rule.rate,
                    rule.min_calls,
                    rule.delay,
                    _STATE_TTL_MS,
                ],
            )
        except BaseException:
            if transition is not None:
                replica.transitioned(*transition)  # report it at the next sync
            raise
        fleet_state, remaining, epoch, calls, failures = out
        replica.others([float(calls), float(failures)])
        replica.fleet(_text(fleet_state), float(remaining), int(epoch))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _redis_trouble(exc: BaseException) -> bool:
    """Whether ``exc`` means Redis is slow, away or not serving writes (the expected kind of
    trouble), as opposed to an error in what we sent or in our own code."""
    if isinstance(
        exc,
        OSError
        | TimeoutError
        | anyio.BrokenResourceError
        | anyio.ClosedResourceError
        | anyio.EndOfStream,
    ):
        return True
    from coredis import exceptions

    return isinstance(
        exc,
        exceptions.ConnectionError  # also BusyLoadingError, ProtocolError
        | exceptions.ReadOnlyError
        | exceptions.TryAgainError
        | exceptions.ClusterDownError
        | exceptions.AuthenticationError
        | exceptions.PersistenceError,
    ) or (isinstance(exc, exceptions.ResponseError) and str(exc).startswith(("OOM", "MISCONF")))
