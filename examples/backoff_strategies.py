"""Print the first waits of each backoff strategy (seeded, so the output is stable).

Run: python examples/backoff_strategies.py
"""

from __future__ import annotations

import itertools
import random

from asyncres import backoff

strategies = [
    backoff.Constant(0.5),
    backoff.Exponential(base=0.1, cap=10.0),
    backoff.FullJitter(base=0.1, cap=10.0),  # Retry's default
    backoff.EqualJitter(base=0.1, cap=10.0),
    backoff.DecorrelatedJitter(base=0.1, cap=10.0),
]

for strategy in strategies:
    waits = itertools.islice(strategy.delays(random.Random(1)), 8)
    print(f"{type(strategy).__name__:>18}:", " ".join(f"{w:5.2f}" for w in waits))
