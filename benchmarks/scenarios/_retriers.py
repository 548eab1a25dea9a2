"""The retrying clients of scenarios 2 and 3, each configured as its documentation shows.

The results file prints the source of each factory below, so what is shown is what ran.
Every contender retries `TransientError` (refused connections, 503s) and nothing else.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import asyncres

from ._load import Contender, TransientError

# -- asyncres -----------------------------------------------------------------------------


def asyncres_defaults(dependency: Any) -> Any:
    # Defaults: 3 attempts, FullJitter(base=0.1, cap=10), a RetryBudget of its own
    # (20 % of requests, at least 10 retries/s, over 10 s), shared by every call.
    retry = asyncres.Retry(on=TransientError)
    return retry(dependency.call)


def asyncres_httpx_defaults(transport: Any) -> Any:
    # asyncres.httpx.standard_policy(): total 30 s, 3 attempts, FullJitter(0.5, 10),
    # a RetryBudget, a CircuitBreaker and a Bulkhead per host, attempt timeout 10 s.
    import httpx

    import asyncres.httpx

    return httpx.AsyncClient(transport=asyncres.httpx.ResilientTransport(transport))


class RefundingBudget(asyncres.RetryBudget):
    """PROTOTYPE of a proposed change, not in the library: a retry that succeeds hands its
    token back, so the budget bounds *failed* retries (AWS SDK standard mode refunds the
    retry cost on success in the same way)."""

    def refund(self) -> None:
        self._advance()
        assert self._slice is not None
        self._withdrawals[self._slice % len(self._withdrawals)] -= 1
        self._withdraw_total -= 1


def asyncres_refund_prototype(dependency: Any) -> Any:
    # As asyncres_defaults, with the proposed refund of successful retries.
    budget = RefundingBudget()
    retry = asyncres.Retry(on=TransientError, budget=budget)

    async def call(request: int) -> Any:
        attempt = 0

        async def once() -> Any:
            nonlocal attempt
            attempt += 1
            result = await dependency.call(request)
            if attempt > 1:
                budget.refund()
            return result

        return await retry.call(once)

    return call


# -- peers ----------------------------------------------------------------------------------


def tenacity_recommended(dependency: Any) -> Any:
    import tenacity

    return tenacity.retry(
        stop=tenacity.stop_after_attempt(3),
        wait=tenacity.wait_random_exponential(multiplier=1, max=60),
        retry=tenacity.retry_if_exception_type(TransientError),
    )(dependency.call)


def stamina_defaults(dependency: Any) -> Any:
    # Defaults: 10 attempts, 45 s timeout, wait 0.1 s * 2**n + uniform(0, 1 s), at most 5 s.
    import stamina

    return stamina.retry(on=TransientError)(dependency.call)


def backoff_recommended(dependency: Any) -> Any:
    # backoff.expo: 1, 2, 4... s with full jitter (its default), sleeps with asyncio.sleep.
    import backoff

    return backoff.on_exception(backoff.expo, TransientError, max_tries=3)(dependency.call)


def httpx_retries_defaults(transport: Any) -> Any:
    # httpx_retries.Retry(): total=10 retries, backoff_factor=0 (no wait), retries
    # 429/502/503/504 and network errors on idempotent methods.
    import httpx
    import httpx_retries

    return httpx.AsyncClient(transport=httpx_retries.RetryTransport(transport=transport))


def no_retry(dependency: Any) -> Any:
    return dependency.call


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # pragma: no cover
        return False


def contenders(*, trio_row: bool = True, prototype: bool = False) -> list[Contender]:
    """Every installed contender, asyncres first (peers that are missing are left out)."""
    result = [Contender("asyncres `Retry` defaults", asyncres_defaults)]
    if trio_row:
        result.append(
            Contender(
                "asyncres `Retry` defaults, on trio",
                asyncres_defaults,
                backend="trio",
                note="same code on trio's MockClock",
            )
        )
    if prototype:
        result.append(
            Contender(
                "asyncres + refund of successful retries (prototype)",
                asyncres_refund_prototype,
                note="proposed library change, not released",
            )
        )
    if _has("httpx") and _has("asyncres.httpx"):
        result.append(
            Contender(
                "asyncres.httpx `ResilientTransport()` defaults", asyncres_httpx_defaults, http=True
            )
        )
    peers = [
        (
            "tenacity",
            "tenacity (3 attempts, `wait_random_exponential`)",
            tenacity_recommended,
            False,
        ),
        ("stamina", "stamina defaults", stamina_defaults, False),
        ("backoff", "backoff (`expo`, `max_tries=3`)", backoff_recommended, False),
        ("httpx_retries", "httpx-retries defaults", httpx_retries_defaults, True),
    ]
    for module, label, factory, http in peers:
        if _has(module) and (not http or _has("httpx")):
            result.append(Contender(label, factory, http=http))
    result.append(Contender("no retry (baseline)", no_retry))
    return result


CONFIG_SOURCES = [
    asyncres_defaults,
    asyncres_httpx_defaults,
    tenacity_recommended,
    stamina_defaults,
    backoff_recommended,
    httpx_retries_defaults,
]
