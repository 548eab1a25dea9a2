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
    # Defaults: 3 attempts, FullJitter(base=0.1, cap=10), an adaptive RetryBudget of its
    # own (failed retries up to 10-100 % of requests over 10 s, with the share of retries
    # that succeed; the floor for 1 s after an overload signal; at least 2/s; a retry that
    # succeeds is refunded), shared by every call.
    retry = asyncres.Retry(on=TransientError)
    return retry(dependency.call)


def asyncres_httpx_defaults(transport: Any) -> Any:
    # asyncres.httpx.standard_policy(): total 30 s, 3 attempts, FullJitter(0.5, 10),
    # the adaptive RetryBudget, a CircuitBreaker for hard outages (20 failures in a row or
    # 90 % of >= 20 calls in 10 s; probes after 0.25 s, 0.5 s, then every 1 s) and a
    # Bulkhead per host, attempt timeout 10 s.
    import httpx

    import asyncres.httpx

    return httpx.AsyncClient(transport=asyncres.httpx.ResilientTransport(transport))


def asyncres_larger_budget(dependency: Any) -> Any:
    # As the defaults, with a budget that lets failed retries reach 50 % of requests
    # (instead of 20 %): the knob to turn where partial failures are common.
    retry = asyncres.Retry(on=TransientError, budget=asyncres.RetryBudget(ratio=0.5))
    return retry(dependency.call)


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


#: The row every verdict compares with the peers.
ASYNCRES_DEFAULTS = "asyncres `Retry` defaults"
#: The tuned row: the same `Retry` with a larger budget (`asyncres_larger_budget`).
TUNED_RATIO = 0.5
ASYNCRES_TUNED = f"asyncres `Retry`, `RetryBudget(ratio={TUNED_RATIO})`"
ADAPTER = "asyncres.httpx `ResilientTransport()` defaults"
BASELINE = "no retry (baseline)"


#: Each peer's attempts per request (the first and its retries), as configured below.
PEER_ATTEMPTS = {
    "tenacity (3 attempts, `wait_random_exponential`)": 3,
    "stamina defaults": 10,
    "backoff (`expo`, `max_tries=3`)": 3,
    "httpx-retries defaults": 11,
}


def is_peer(name: str) -> bool:
    """A contender from another library (not asyncres, not the baseline)."""
    return not name.startswith("asyncres") and name != BASELINE


def contenders(*, trio_row: bool = True, tuned: bool = True) -> list[Contender]:
    """Every installed contender, asyncres first (peers that are missing are left out)."""
    result = [Contender(ASYNCRES_DEFAULTS, asyncres_defaults)]
    if trio_row:
        result.append(
            Contender(
                "asyncres `Retry` defaults, on trio",
                asyncres_defaults,
                backend="trio",
                note="same code on trio's MockClock",
            )
        )
    if tuned:
        result.append(Contender(ASYNCRES_TUNED, asyncres_larger_budget))
    if _has("httpx") and _has("asyncres.httpx"):
        result.append(Contender(ADAPTER, asyncres_httpx_defaults, http=True))
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
    result.append(Contender(BASELINE, no_retry))
    return result


CONFIG_SOURCES = [
    asyncres_defaults,
    asyncres_larger_budget,
    asyncres_httpx_defaults,
    tenacity_recommended,
    stamina_defaults,
    backoff_recommended,
    httpx_retries_defaults,
]
