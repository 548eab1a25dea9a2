"""Delay strategies for `asyncres.Retry`: how long to wait before each retry.

``Constant``, ``Exponential``, ``FullJitter`` (the default), ``EqualJitter`` and
``DecorrelatedJitter``; each has ``delays(rng=None)``, an infinite iterator of seconds.
Any object with such a method can be passed as ``Retry(backoff=...)`` (the `Backoff`
protocol).
"""

from ._backoff import Backoff as Backoff
from ._backoff import Constant as Constant
from ._backoff import DecorrelatedJitter as DecorrelatedJitter
from ._backoff import EqualJitter as EqualJitter
from ._backoff import Exponential as Exponential
from ._backoff import FullJitter as FullJitter

__all__ = [
    "Backoff",
    "Constant",
    "DecorrelatedJitter",
    "EqualJitter",
    "Exponential",
    "FullJitter",
]
