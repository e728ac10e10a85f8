"""Recent probe outcomes of search filters, so the pages of one search probe its filter once.

A default-order page (and, on SQLite, a search with two or more index filters) first probes
how many index rows each filter has (``SqlStore._plan_filters``): a capped count on SQLite,
a planning-only ``EXPLAIN`` round trip on PostgreSQL. The outcome only picks a plan (which
filter drives; whether the type's lastUpdated index is walked, and how far), never a
result: a walk that finds too few matches falls back to the filter. So a recent outcome is
as good as a fresh one, at worst it costs time until it expires: the ten ``next`` pages of
one patient's Observations probe once, not ten times (21 statements became 12 on SQLite).

Kept per store for :data:`LIFETIME` seconds, at most :data:`ENTRIES` of them (all forgotten
at once when full, as the store's compiled conditions are); nothing invalidates them
earlier. No lock: one ``dict`` get or set each (atomic), so a forked child simply keeps
its parent's outcomes.
"""

from __future__ import annotations

import time
from typing import Any, Callable

__all__ = ["ProbeCache", "LIFETIME", "ENTRIES"]

#: Seconds a probe's outcome is used again (a client following ``next`` links, a dashboard
#: polled again); a filter that grew or shrank meanwhile costs at most a slower plan.
LIFETIME = 30.0
#: Outcomes kept per store at most.
ENTRIES = 1024


class ProbeCache:
    """Probe outcomes by key (resource type, filter), each with the cap it was counted to."""

    def __init__(self, lifetime: float = LIFETIME, entries: int = ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self.entries = entries
        #: seconds, monotonic (replaceable in tests)
        self.clock = clock
        self._outcomes: dict[Any, tuple[float, int, int | None]] = {}

    def __len__(self) -> int:
        return len(self._outcomes)

    def get(self, key: Any, cap: int) -> int | None:
        """The probe's outcome capped at ``cap`` (None: not known, or too old).

        An outcome counted up to a smaller cap and reaching it says nothing beyond that cap:
        not known for a larger one.
        """
        try:
            entry = self._outcomes.get(key)
        except TypeError:  # a value that cannot be a dict key: probed every time
            return None
        if entry is None:
            return None
        expires, found, counted_to = entry
        if self.clock() >= expires:
            return None
        if counted_to is None or found < counted_to:  # the whole count (or an estimate)
            return min(found, cap)
        return cap if cap <= counted_to else None

    def put(self, key: Any, found: int, counted_to: int | None) -> None:
        """Keep ``found``, counted up to ``counted_to`` (None: not capped, an estimate)."""
        if len(self._outcomes) >= self.entries:
            self._outcomes.clear()
        try:
            self._outcomes[key] = (self.clock() + self.lifetime, found, counted_to)
        except TypeError:
            pass
