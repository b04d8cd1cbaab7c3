"""Choosing the variant that answers a request.

Without a unit id a request goes to a variant drawn at random with the plan's weights. With
``sticky`` plans a unit id (a user, a session) is hashed to a fixed point in [0, 1) that is
looked up in the cumulative weights, so a unit reaches the same variant for as long as the
split stays the same. The point depends only on the endpoint and the unit id, not on the
weights: when a ramp moves the split from 10/90 to 20/80, only the units whose point falls in
the moved tenth change variant, instead of reshuffling everybody.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Mapping


class Router:
    """Weighted choice over the live variants of one plan (immutable once built)."""

    def __init__(self, endpoint: str, weights: Mapping[str, float], sticky: bool = False,
                 rng: random.Random | None = None):
        # Sorted by name so the sticky assignment does not depend on the plan's list order.
        live = sorted((name, w) for name, w in weights.items() if w > 0)
        if not live:
            raise ValueError("no variant has a positive weight")
        total = sum(w for _, w in live)
        self.endpoint = endpoint
        self.sticky = sticky
        self.names = [name for name, _ in live]
        self.shares = {name: w / total for name, w in live}
        self._cumulative = []
        running = 0.0
        for _, w in live:
            running += w / total
            self._cumulative.append(running)
        self._cumulative[-1] = 1.0  # no gap above the last edge from rounding
        self._random = (rng or random.Random()).random

    def choose(self, unit_id: str | None = None) -> str:
        point = self._random() if unit_id is None or not self.sticky else self.unit_point(unit_id)
        return self.names[bisect.bisect_right(self._cumulative, point)]

    def unit_point(self, unit_id: str) -> float:
        """The unit's fixed position in [0, 1): 64 bits of sha256(endpoint, unit id)."""
        digest = hashlib.sha256(f"{self.endpoint}\x00{unit_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64
