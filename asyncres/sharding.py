"""Shuffle sharding: give each key (a tenant, a customer) its own few endpoints.

With ``n`` endpoints and shards of ``k``, there are ``C(n, k)`` shards: one key that takes
its shard down (a poison request, a noisy tenant) fully affects only the keys that drew the
very same shard, ``1 / C(n, k)`` of them (8 endpoints, shards of 2: 28 shards, 3.6 %;
100 endpoints, shards of 5: 75,287,520 shards), where plain sharding into ``n / k`` fixed
groups loses ``k / n`` of all keys with it. (Amazon Builders' Library, "Workload isolation
using shuffle-sharding".)

`shuffle_shard` assigns a shard by rendezvous hashing: each endpoint gets a score from a
hash of the key and its address, the ``k`` best scores win. The shard does not depend on the
order of the list, and adding one endpoint moves a key by at most that one endpoint.
`asyncres.EndpointGroup.for_key` gives a key its shard as a group.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from . import _validation

__all__ = ["BlastRadius", "blast_radius", "shuffle_shard"]


class _Addressed(Protocol):
    @property
    def address(self) -> str: ...


E = TypeVar("E", bound="_Addressed | str")


def _address(endpoint: _Addressed | str) -> str:
    return endpoint if isinstance(endpoint, str) else endpoint.address


def _score(key: bytes, address: str) -> int:
    digest = hashlib.blake2b(address.encode(), key=key, digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shuffle_shard(key: str, endpoints: Sequence[E], k: int) -> list[E]:
    """The ``k`` endpoints of ``key``'s shard (`Endpoint` objects or address strings), best
    score first. Deterministic across processes and runs."""
    if not isinstance(key, str):
        raise ValueError(f"`key` must be a string, got {key!r}")
    addresses = [_address(e) for e in endpoints]
    if not addresses:
        raise ValueError("`endpoints` must name at least one endpoint")
    if len(set(addresses)) != len(addresses):
        raise ValueError("`endpoints` must not repeat an address")
    _validation.count("k", k, minimum=1)
    if k > len(addresses):
        raise ValueError(f"`k` must be <= the number of endpoints ({len(addresses)}), got {k}")
    salt = hashlib.blake2b(key.encode(), digest_size=16).digest()
    ranked = sorted(
        range(len(addresses)),
        key=lambda i: (_score(salt, addresses[i]), addresses[i]),
        reverse=True,
    )
    return [endpoints[i] for i in ranked[:k]]


@dataclass(frozen=True, slots=True)
class BlastRadius:
    """What one lost shard costs the other keys, for ``n`` endpoints and shards of ``k``."""

    __module__ = "asyncres.sharding"

    n: int
    k: int
    #: Distinct shards, ``C(n, k)``.
    shards: int
    #: Probability that another key has the very same shard: fully affected.
    share_all: float
    #: Probability that another key shares at least one endpoint: partly affected.
    share_any: float
    #: ``overlap[j]``: probability that two keys share exactly ``j`` endpoints.
    overlap: tuple[float, ...]


def blast_radius(n: int, k: int) -> BlastRadius:
    """`BlastRadius` of shuffle sharding ``n`` endpoints into shards of ``k``."""
    _validation.count("n", n, minimum=1)
    _validation.count("k", k, minimum=1)
    if k > n:
        raise ValueError(f"`k` must be <= `n`, got k={k} > n={n}")
    shards = math.comb(n, k)
    overlap = tuple(math.comb(k, j) * math.comb(n - k, k - j) / shards for j in range(k + 1))
    return BlastRadius(
        n=n,
        k=k,
        shards=shards,
        share_all=1.0 / shards,
        share_any=1.0 - overlap[0],
        overlap=overlap,
    )
