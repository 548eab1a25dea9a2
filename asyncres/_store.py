"""The state-store seam: how stateful policies share their state across processes.

Without a store (``store=None``, the default) a policy keeps its state in process memory and
nothing here runs. With one, the policy still decides every call from local state — the call
path never waits for the store — and exposes a *replica* of its state: an object the store
reads and updates from a background task of its own. A store implements one method pair,
`Store.attach` / `Store.detach`; what it does with the replicas is the engine's business.
`asyncres.redis.RedisStore` is the engine that ships.

Three kinds of replica, one per shape of state:

- `SharedWindow` (`RetryBudget`, `Throttle`): counters in time slices. The store takes the
  local increments since its last sync (`SharedWindow.take`), adds them to the fleet's
  counters, and gives back the *other* processes' totals over the window
  (`SharedWindow.others`), which the policy adds to its own in every decision.
- `SharedBreaker` (`CircuitBreaker`): the same counters (calls, failures, the failures in a
  row) plus the fleet's circuit state. The store runs the trip rule on the fleet's counters
  and tells every replica the fleet's state (`SharedBreaker.fleet`); a replica reports its
  own transitions (`SharedBreaker.take_transition`) so one process's open reaches the rest.
- `SharedRate` (`RateLimit`): the store leases admissions from the fleet's one GCRA in
  small batches (`SharedRate.demand`, `SharedRate.lease`) and returns the unused ones. A
  limit's keys (``limit.key("tenant-7")``) are child replicas (`SharedRate.keys`), each
  leased from a GCRA of its own, all of them synced together.

Losing the store never fails a call: `ReplicaBase.stale` (called by the store when it cannot
reach its engine) drops the fleet's view, and each policy decides on local state alone until
the store syncs again.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

__all__ = [
    "ReplicaBase",
    "SharedBreaker",
    "SharedRate",
    "SharedWindow",
    "Store",
    "TripRule",
    "checked_store",
]


class ReplicaBase:
    """What every replica has: the policy's shared identity and the fallback hook."""

    __slots__ = ("kind", "name")

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name

    def stale(self) -> None:
        """The store lost its engine: decide on local state until the next sync."""


@runtime_checkable
class Store(Protocol):
    """Where policies with ``store=`` share state. Implement both methods for another engine.

    ``attach`` is called once per policy, from its constructor (no event loop needed); the
    store keeps the replica (weakly, so a dropped policy is forgotten) and syncs it from its
    own task while it runs. ``detach`` forgets it.
    """

    def attach(self, replica: ReplicaBase) -> None: ...

    def detach(self, replica: ReplicaBase) -> None: ...


class SharedWindow(ReplicaBase):
    """Sliding-window counters (``fields``) over ``window`` seconds, shared by the fleet.

    The policy adds its increments with `add` (off its hot path: when it folds a batch) and
    reads the other processes' totals from `totals` (zeros when alone or when stale).
    """

    __slots__ = ("__weakref__", "_on_sync", "_pending", "fields", "totals", "window")

    def __init__(
        self,
        kind: str,
        name: str,
        fields: tuple[str, ...],
        window: float,
        on_sync: _Wake | None = None,
    ) -> None:
        super().__init__(kind, name)
        self._on_sync = on_sync
        self.fields = fields
        self.window = window
        self._pending = [0.0] * len(fields)
        #: The other processes' totals over the window, per field (the store's last sync).
        self.totals = [0.0] * len(fields)

    def add(self, index: int, amount: float = 1.0) -> None:
        self._pending[index] += amount

    def take(self) -> list[float]:
        """The increments since the last call (the store flushes them)."""
        pending = self._pending
        self._pending = [0.0] * len(pending)
        return pending

    def others(self, totals: list[float]) -> None:
        """The fleet's totals minus this process's, as the store computed them."""
        self.totals = [max(0.0, value) for value in totals]
        if self._on_sync is not None:
            self._on_sync()

    def stale(self) -> None:
        # Counts made while the store is unreachable stay local: not replayed later.
        self.totals = [0.0] * len(self.fields)
        self._pending = [0.0] * len(self.fields)


class TripRule(NamedTuple):
    """The breaker's trip rule, for the store to apply to the fleet's counts (0: no rule)."""

    threshold: int
    rate: float
    min_calls: int
    #: The recovery delay when the fleet's counts open the circuit.
    delay: float


class SharedBreaker(SharedWindow):
    """A breaker's calls and failures for the fleet's window, and the fleet's circuit state.

    ``fields`` are ``("calls", "failures")``; `trailing` counts the failures in a row at
    the end of the increments not yet taken, and `succeeded` whether a success is among them
    (so the store can keep the fleet's failures in a row). `take_transition` hands the store
    this process's last transition; `fleet` receives the fleet's state.
    """

    __slots__ = ("_apply", "_transition", "epoch", "rule", "succeeded", "trailing")

    def __init__(self, name: str, window: float, rule: TripRule, apply: _ApplyFleet) -> None:
        super().__init__("breaker", name, ("calls", "failures"), window, None)
        self.rule = rule
        self.trailing = 0
        self.succeeded = False
        self.epoch = -1
        self._transition: tuple[str, float] | None = None
        self._apply = apply

    def outcome(self, failed: bool, count: int = 1) -> None:
        pending = self._pending
        pending[0] += count
        if failed:
            pending[1] += count
            self.trailing += count
        else:
            self.trailing = 0
            self.succeeded = True

    def take_streak(self) -> tuple[int, bool]:
        streak = (self.trailing, self.succeeded)
        self.succeeded = False
        return streak

    def transitioned(self, state: str, delay: float) -> None:
        """This process's breaker entered ``state`` ("open" with its recovery ``delay``)."""
        self._transition = (state, delay)

    def take_transition(self) -> tuple[str, float] | None:
        transition, self._transition = self._transition, None
        return transition

    def fleet(self, state: str, remaining: float, epoch: int) -> None:
        """The fleet's state ("open" for ``remaining`` more seconds, or "closed")."""
        if epoch != self.epoch:
            self.epoch = epoch
            self._apply(state, remaining)


class SharedRate(ReplicaBase):
    """Admissions leased from the fleet's one GCRA (`RateLimit` with ``store=``).

    The policy spends `tokens` on its call path and counts the calls that wanted one
    (`wanted`); each sync the store returns the unused tokens, leases this member's fair
    share of an interval's admissions (one token while it is idle, at most the burst) and
    reports how many members were active lately.
    """

    __slots__ = (
        "__weakref__",
        "_live",
        "_max_keys",
        "_woken",
        "burst",
        "cold",
        "emission",
        "fallback_tat",
        "keys",
        "members",
        "tokens",
        "wanted",
    )

    def __init__(
        self, name: str, emission: float, burst: int, woken: _Wake, max_keys: int = 0
    ) -> None:
        super().__init__("rate_limit", name)
        self.emission = emission  # seconds between admissions, fleet-wide
        self.burst = burst
        self.tokens = 0
        self.wanted = 0
        self.members = 1
        #: Idle at the last sync (holding one token): calls beyond it use the local share
        #: until the next lease, so waking up costs no refusals.
        self.cold = True
        #: The GCRA state of the local share (`RateLimit`'s, while no lease is usable).
        self.fallback_tat = -float("inf")
        #: Per-key children, least recently used first (at most ``max_keys``).
        self.keys: dict[str, SharedRate] = {}
        self._max_keys = max_keys
        self._woken = woken
        self._live = False

    def child(self, key: str) -> SharedRate:
        """The replica of one key (made on first use, cold, with the members this limit
        saw lately as its guess until its own first sync)."""
        keys = self.keys
        child = keys.pop(key, None)  # re-inserted last: the most recently used
        if child is None:
            child = SharedRate(self.name, self.emission, self.burst, self._woken)
            child.members = self.members
            child._live = self._live
            if len(keys) >= self._max_keys:
                # Forget the least recently used key (it returns no tokens: at most a burst
                # of one key lingers on the server until its TAT passes).
                del keys[next(iter(keys))]
        keys[key] = child
        return child

    def key_demands(self) -> list[tuple[str, SharedRate, int, int]]:
        """(key, child, unused tokens, calls that wanted one) of every key to sync; keys
        with neither tokens nor demand are forgotten first (their state is a fresh one)."""
        out = []
        for key, child in list(self.keys.items()):
            unused, wanted = child.demand()
            if not unused and not wanted:
                del self.keys[key]
                continue
            out.append((key, child, unused, wanted))
        return out

    @property
    def live(self) -> bool:
        """Whether the lease is current (the store synced lately)."""
        return self._live

    def demand(self) -> tuple[int, int]:
        """(unused tokens to return, calls that wanted one since the last sync).

        The tokens stay spendable while the sync is in flight; `lease` settles the
        difference, so the call path never finds the pool empty because of a round trip.
        """
        wanted, self.wanted = self.wanted, 0
        return self.tokens, wanted

    def lease(self, granted: int, members: int, active: bool, returned: int = 0) -> None:
        # Tokens spent during the round trip came out of the ``returned`` ones.
        self.tokens = max(0, self.tokens - returned + granted)
        self.cold = not active
        self.members = max(1, members)
        self._live = True
        if granted:
            self._woken()

    def stale(self) -> None:
        self._live = False
        self.tokens = 0
        for child in self.keys.values():
            child._live = False
            child.tokens = 0
        self._woken()


def checked_store(store: object, name: object, kind: str) -> Store:
    """``store=`` and the ``name=`` that must come with it, or `ValueError`."""
    if not isinstance(store, Store):
        raise ValueError(
            f"`store` must be a state store (with attach() and detach(), e.g. "
            f"asyncres.redis.RedisStore), got {store!r}"
        )
    if not isinstance(name, str) or not name:
        raise ValueError(
            f"`name` is required with `store`: it identifies the {kind}'s shared state, "
            f"got {name!r}"
        )
    return store


class _ApplyFleet(Protocol):
    def __call__(self, state: str, remaining: float, /) -> None: ...


class _Wake(Protocol):
    def __call__(self) -> None: ...
