"""Bounded metric labels for a multi-model endpoint: the busiest models keep their own.

With hundreds of models behind one endpoint, a ``variant`` label per model multiplies every
series (and the feature bins most of all). ``TopLabels`` keeps at most ``limit`` names as
labels; every other model's requests, errors and latency are counted under ``OTHER`` and its
feature bins are not exported (bins of different models with different baselines cannot be
added up, so drift is computed for the top models only).

The top set is chosen by traffic over fixed windows (``window`` seconds): at the end of a
window the names are ranked by that window's requests, a name already in the set counting
double (hysteresis: a newcomer must beat a member by more than 2x to take its place, so two
models of similar traffic do not swap labels window after window), ties broken by name.
Until the first window ends, the first ``limit`` names asked for take the places, so a fresh
server labels its first models at once. A name that loses its place has its series removed
(``on_drop``), so the labels ever exported stay bounded by ``limit``, not by the models.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

OTHER = "__other__"
DEFAULT_WINDOW = 300.0
HYSTERESIS = 2


class TopLabels:
    def __init__(self, limit: int, *, window: float = DEFAULT_WINDOW,
                 clock: Callable[[], float] = time.monotonic,
                 on_drop: Callable[[set[str]], None] | None = None):
        self.limit = max(0, int(limit))
        self.window = window
        self._clock = clock
        self.on_drop = on_drop  # told the names that lost their label (their series go)
        self._counts: Counter[str] = Counter()
        self._top: set[str] = set()
        self._window_ends = clock() + window

    @property
    def top(self) -> frozenset[str]:
        return frozenset(self._top)

    def label(self, name: str) -> str:
        """Count one request for ``name``; the label its series use."""
        now = self._clock()
        if now >= self._window_ends:
            self._rotate(now)
        self._counts[name] += 1
        if name in self._top:
            return name
        if len(self._top) < self.limit:
            self._top.add(name)
            return name
        return OTHER

    def own_label(self, name: str) -> bool:
        return name in self._top

    def forget(self, name: str) -> None:
        """A model left the catalog: free its place at once."""
        self._counts.pop(name, None)
        if name in self._top:
            self._top.discard(name)
            if self.on_drop is not None:
                self.on_drop({name})

    def _rotate(self, now: float) -> None:
        def score(name: str) -> tuple:
            count = self._counts[name] * (HYSTERESIS if name in self._top else 1)
            return (-count, name)

        ranked = sorted(self._counts, key=score)
        dropped = self._top - set(ranked[:self.limit])
        self._top = set(ranked[:self.limit])
        self._counts.clear()
        if dropped and self.on_drop is not None:
            self.on_drop(dropped)
        # Windows are aligned to the first one, so a quiet spell does not shift them.
        missed = int((now - self._window_ends) // self.window) + 1
        self._window_ends += missed * self.window
