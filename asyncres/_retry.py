"""Retry: re-run a failed async call with backoff, bounded by attempts, time and a budget."""

from __future__ import annotations

import functools
import math
import random
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import anyio

from . import _telemetry, _testing_state, _validation
from ._backoff import Backoff, FullJitter
from ._budget import _FOLD_EVERY, RetryBudget
from ._deadline import DeadlineScope, remaining
from ._events import (
    Listener,
    RetryBudgetExhausted,
    RetryGaveUp,
    RetryScheduled,
    emit,
)
from ._exceptions import RejectedError
from ._matching import ErrorFilter, matcher
from ._policy import PolicyFaces
from ._setting import Setting

if TYPE_CHECKING:
    from typing import Self

__all__ = ["Attempt", "Retry"]

T = TypeVar("T")
P = ParamSpec("P")


assert _FOLD_EVERY == 32, "the Retry fast path inlines this constant"

_DEFAULT_BACKOFF = FullJitter(base=0.1, cap=10.0)
_DEFAULT_BUDGET: Any = object()  # sentinel: "give this Retry a budget of its own"


class Retry(PolicyFaces):
    """Retry an async call on chosen errors, with jittered backoff and a retry budget.

    ``on`` (required) picks what is retried: an exception type, a tuple of types, or a
    predicate on the exception. Cancellation is never retried. ``max_attempts`` counts the
    first attempt (a call of ``max_attempts=3`` runs the function at most three times);
    ``timeout`` bounds all attempts *and* sleeps together (a cancel scope).

    Before each wait, Retry compares it with the tightest enclosing deadline
    (`asyncres.remaining()`): when the next attempt could not start in time, it re-raises
    the last error at once. An error with a ``retry_after`` attribute (seconds, e.g.
    `CircuitOpenError` or an HTTP ``Retry-After``) makes it wait ``max(retry_after, backoff)``.

    When it gives up, the last exception propagates unchanged, with a note saying how many
    attempts were made. A result rejected by ``on_result`` that runs out of attempts is
    returned as it is.

    The wait before retry ``n`` is the ``n``-th item of ``backoff.delays(rng)``.

    Configuration is read-only after construction (`Setting`): build a new `Retry` to
    change it.
    """

    __slots__ = (
        "_backoff",
        "_budget",
        "_listeners",
        "_match",
        "_max_attempts",
        "_name",
        "_on",
        "_on_result",
        "_rng",
        "_slow",
        "_timeout",
    )

    __module__ = "asyncres"

    on: Setting[ErrorFilter] = Setting()
    max_attempts: Setting[int] = Setting()
    timeout: Setting[float | None] = Setting()
    backoff: Setting[Backoff] = Setting()
    budget: Setting[RetryBudget | None] = Setting()
    on_result: Setting[Callable[[Any], bool] | None] = Setting()
    name: Setting[str | None] = Setting()
    rng: Setting[random.Random | None] = Setting()

    def __init__(
        self,
        *,
        on: ErrorFilter,
        max_attempts: int = 3,
        timeout: float | None = None,
        backoff: Backoff = _DEFAULT_BACKOFF,
        budget: RetryBudget | None = _DEFAULT_BUDGET,
        on_result: Callable[[Any], bool] | None = None,
        name: str | None = None,
        listeners: Iterable[Listener] = (),
        rng: random.Random | None = None,
        attempts: int | None = None,
    ) -> None:
        checked_name = "max_attempts"
        if attempts is not None:  # the name before 0.2
            warnings.warn(
                "Retry(attempts=...) is deprecated, use Retry(max_attempts=...)",
                DeprecationWarning,
                stacklevel=2,
            )
            max_attempts, checked_name = attempts, "attempts"
        if on == ():
            raise ValueError("`on` must name at least one exception type")
        self._match = matcher(on, "on")
        self._on = on
        self._max_attempts = _validation.count(checked_name, max_attempts, minimum=1)
        self._timeout = _validation.optional_limit("timeout", timeout)
        if not callable(getattr(backoff, "delays", None)):
            raise ValueError(f"`backoff` must have a delays() method, got {backoff!r}")
        self._backoff = backoff
        if budget is _DEFAULT_BUDGET:
            budget = RetryBudget(name=name)
        elif budget is not None and not isinstance(budget, RetryBudget):
            raise ValueError(f"`budget` must be a RetryBudget or None, got {budget!r}")
        self._budget = budget
        if on_result is not None and not callable(on_result):
            raise ValueError(f"`on_result` must be callable, got {on_result!r}")
        self._on_result = on_result
        self._name = name
        self._listeners = tuple(listeners)
        self._rng = rng
        self._slow = timeout is not None or on_result is not None

    def __repr__(self) -> str:
        on = getattr(self._on, "__name__", None) or repr(self._on)
        name = f", name={self._name!r}" if self._name else ""
        return (
            f"Retry(on={on}, max_attempts={self._max_attempts}, timeout={self._timeout!r}, "
            f"backoff={self._backoff!r}{name})"
        )

    # The success path of call() and of the decorator is deliberately flat: one await in a
    # try, one deposit in the budget. Everything else lives in _retry_loop.

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)``, retrying as configured."""
        if self._slow or _telemetry.hooks is not None:
            return await self._call_slow(fn, args, kwargs)
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            error = exc
        else:
            budget = self._budget
            if budget is not None:
                pending = budget._pending + 1
                budget._pending = pending
                if pending >= 32:  # _FOLD_EVERY, inlined
                    budget._advance()
            return result
        # Outside the except block, so that later errors do not chain onto this one.
        return await self._retry_loop(fn, args, kwargs, _first=(error, None))

    async def _call_slow(
        self, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> T:
        """``call`` with a total timeout, an ``on_result`` predicate or telemetry."""
        hooks = _telemetry.hooks
        if hooks is not None:  # attempts observed; a whole call is timed by its pipeline
            return await self._call_observed(hooks, fn, args, kwargs)
        if self._timeout is not None:
            with DeadlineScope(self._timeout, math.inf):
                return await self._retry_loop(fn, args, kwargs)
        return await self._retry_loop(fn, args, kwargs)

    async def _call_observed(
        self,
        hooks: _telemetry.Hooks,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> T:
        """``call`` with each attempt inside ``hooks.attempt``."""
        name = self._name
        number = 0

        async def attempt(*args: Any, **kwargs: Any) -> T:
            nonlocal number
            number += 1
            with hooks.attempt("retry", name, number):
                return await fn(*args, **kwargs)

        if self._timeout is not None:
            with DeadlineScope(self._timeout, math.inf):
                return await self._retry_loop(attempt, args, kwargs)
        return await self._retry_loop(attempt, args, kwargs)

    def __call__(self, fn: Callable[P, Awaitable[T]], /) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate an async function: every call is retried as configured."""
        if self._slow:
            return super().__call__(fn)
        retry_loop = self._retry_loop
        call_slow = self._call_slow
        budget = self._budget

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            if _telemetry.hooks is not None:
                return await call_slow(fn, args, kwargs)
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                error = exc
            else:
                if budget is not None:
                    pending = budget._pending + 1
                    budget._pending = pending
                    if pending >= 32:  # _FOLD_EVERY, inlined
                        budget._advance()
                return result
            return await retry_loop(fn, args, kwargs, _first=(error, None))

        return wrapper

    def attempts(self) -> AsyncIterator[Attempt]:
        """The block form, for code that cannot be a function::

            async for attempt in retry.attempts():
                with attempt:
                    response = await client.get(url)

        ``on_result`` does not apply here (a block has no result).
        """
        return _Attempts(self)

    async def _retry_loop(
        self,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        _first: tuple[Exception | None, Any] | None = None,
    ) -> T:
        """Run attempts until one succeeds or the retry gives up.

        ``_first`` is the outcome of a first attempt already made by the fast path.
        """
        budget = self._budget
        if budget is not None:
            budget.deposit()
        on_result = self._on_result
        state = _RetryState(self)
        outcome = _first
        while True:
            if outcome is None:
                try:
                    result = await fn(*args, **kwargs)
                except Exception as exc:
                    error: Exception | None = exc
                else:
                    if on_result is None or not on_result(result):
                        if budget is not None and state.attempt > 1:
                            budget.refund()  # the retry paid off
                        return result
                    error = None
            else:
                (error, result), outcome = outcome, None
            wait = state.decide(error)
            if wait is None:
                if error is not None:
                    raise error
                return result
            await anyio.sleep(wait)  # a checkpoint even when the wait is zero
            if not state.charge(error):
                assert error is not None  # only an error's Retry-After defers the charge
                raise error


class _RetryState:
    """The bookkeeping of one retried call: attempt count, backoff iterator, decisions."""

    __slots__ = ("_charge_later", "_delays", "_overdrawn", "_server_paced", "attempt", "retry")

    def __init__(self, retry: Retry) -> None:
        self.retry = retry
        self.attempt = 1
        self._delays: Iterator[float] | None = None
        self._charge_later = False
        self._server_paced = False  # the retry being charged waited out a server's hint
        self._overdrawn = False  # this call's one server-paced retry on an empty budget

    def decide(self, error: Exception | None, until: float = math.inf) -> float | None:
        """Return the wait before the next attempt, or ``None`` to give up (noted).

        ``until`` is an extra absolute deadline (the block form's total timeout).
        """
        retry = self.retry
        if error is not None and not retry._match(error):
            return None  # not ours to retry: propagate untouched
        hint = getattr(error, "retry_after", None)
        budget = retry._budget
        if budget is not None and (hint is not None or isinstance(error, RejectedError)):
            budget.signal_overload()  # the dependency asks for room: retry at the floor
        attempt = self.attempt
        max_attempts = retry._max_attempts
        testing = _testing_state.attempts_cap
        if testing is not None:
            max_attempts = min(max_attempts, testing)
        if attempt >= max_attempts:
            self._give_up(error, "attempts", RetryGaveUp)
            return None
        if self._delays is None:
            self._delays = retry._backoff.delays(retry._rng)
        wait = next(self._delays)
        asked = False  # the server said when to come back
        if isinstance(hint, int | float) and hint > wait:
            wait, asked = float(hint), True
        if testing is not None:
            wait = 0.0
        left = remaining()
        if until != math.inf:
            own = until - anyio.current_time()
            left = own if left is None or own < left else left
        if left is not None and wait >= left:
            self._give_up(error, "deadline", RetryGaveUp)
            return None
        if budget is not None:
            if asked:
                # The server said when to come back: charge the retry when it is sent, by
                # the budget of that moment — the overload it reported may be over by then.
                self._charge_later = True
                # A server's Retry-After, not a local rejection (an open breaker's wait).
                self._server_paced = not isinstance(error, RejectedError)
            elif not budget.try_withdraw():
                self._give_up(error, "budget", RetryBudgetExhausted)
                return None
        emit(retry._listeners, RetryScheduled(retry._name, attempt, wait, error))
        self.attempt = attempt + 1
        return wait

    def charge(self, error: Exception | None) -> bool:
        """After the wait: pay for a retry scheduled on the server's ``Retry-After``;
        ``False`` (noted, the retry gives up) when the budget has no room now."""
        if not self._charge_later:
            return True
        self._charge_later = False
        budget = self.retry._budget
        assert budget is not None  # set by decide() only with a budget
        # A server asked for this retry and paced it: the first such retry of a call may
        # overdraw an empty budget (the overload that emptied it is often over by now: a
        # slow database's last statements holding every slot as recovery begins). Later
        # ones need room. Without a server's Retry-After nothing overdraws, so the outage
        # bound holds; with one, a call sends at most one retry beyond the budget.
        if budget.try_withdraw():
            return True
        if self._server_paced and not self._overdrawn:
            self._overdrawn = True
            budget._overdraw()
            return True
        self.attempt -= 1
        self._give_up(error, "budget", RetryBudgetExhausted)
        return False

    def _give_up(self, error: Exception | None, reason: str, event: type[RetryGaveUp]) -> None:
        """Note on the error why the retry stops, and tell the listeners."""
        retry = self.retry
        attempts = self.attempt
        if error is not None:
            label = f" {retry._name!r}" if retry._name else ""
            detail = {
                "attempts": "no attempts left",
                "deadline": "the next attempt could not start before the deadline",
                "budget": "the retry budget is exhausted",
            }[reason]
            plural = "s" if attempts != 1 else ""
            error.add_note(
                f"asyncres.Retry{label}: gave up after {attempts} attempt{plural} ({detail})"
            )
        emit(retry._listeners, event(retry._name, attempts, error, reason))


class _Attempts:
    """``async for attempt in retry.attempts():`` — the block form of a retry."""

    __slots__ = ("_deadline", "_done", "_error", "_state", "_wait", "retry")

    def __init__(self, retry: Retry) -> None:
        self.retry = retry
        self._state: _RetryState | None = None
        self._wait = 0.0
        self._error: Exception | None = None
        self._done = False
        self._deadline = math.inf

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Attempt:
        if self._done:
            raise StopAsyncIteration
        state = self._state
        if state is None:
            retry = self.retry
            if retry._timeout is not None:
                self._deadline = anyio.current_time() + retry._timeout
            if retry._budget is not None:
                retry._budget.deposit()
            state = self._state = _RetryState(retry)
            return Attempt(self, 1)
        await anyio.sleep(self._wait)
        error, self._error = self._error, None
        if not state.charge(error):
            self._done = True
            assert error is not None
            raise error  # the retry gives up after all: the error leaves the loop
        return Attempt(self, state.attempt)


class Attempt:
    """One attempt of a block-form retry; use it as ``with attempt:``.

    A retryable error raised in the block is swallowed and the loop goes on after the
    backoff wait; when the retry gives up, the error leaves the block (and the loop)
    with its note. Leaving the block without an error ends the loop.
    """

    __slots__ = ("_attempts", "_observer", "_scope", "number")

    __module__ = "asyncres"

    def __init__(self, attempts: _Attempts, number: int) -> None:
        self._attempts = attempts
        self.number = number
        self._scope: DeadlineScope | None = None
        self._observer: AbstractContextManager[None] | None = None

    def __repr__(self) -> str:
        return f"<Attempt {self.number}>"

    def __enter__(self) -> Self:
        hooks = _telemetry.hooks
        if hooks is not None:
            self._observer = hooks.attempt("retry", self._attempts.retry._name, self.number)
            self._observer.__enter__()
        at = self._attempts._deadline
        if at != math.inf:
            self._scope = DeadlineScope(None, at)
            self._scope.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        attempts = self._attempts
        observer = self._observer
        if observer is not None:
            self._observer = None
            try:
                self._exit_scope(exc_type, exc, tb)
            except BaseException as error:
                observer.__exit__(type(error), error, error.__traceback__)
                raise
            observer.__exit__(exc_type, exc, tb)
        else:
            self._exit_scope(exc_type, exc, tb)
        if exc is None:
            attempts._done = True
            budget = attempts.retry._budget
            if budget is not None and self.number > 1:
                budget.refund()  # the retry paid off
            return False
        if not isinstance(exc, Exception):
            attempts._done = True
            return False  # cancellation and other BaseExceptions pass untouched
        state = attempts._state
        assert state is not None
        wait = state.decide(exc, attempts._deadline)
        if wait is None:
            attempts._done = True
            return False
        attempts._wait = wait
        attempts._error = exc
        return True

    def _exit_scope(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._scope is not None:
            # Raises TimeoutExceededError when the total timeout fired in this attempt.
            self._scope.__exit__(exc_type, exc, tb)
