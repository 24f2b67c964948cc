"""Traffic weights: revision shares → per-replica weights, and a smooth weighted picker.

Pure apart from the picker's own counters. ``replica_weights`` spreads each revision's share
evenly over its ready replicas; ``SmoothWeightedPicker`` is nginx's smooth weighted round robin,
which interleaves choices (weights 1:3 give A B B B, never long runs) and is O(n) per pick.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def replica_weights(
    revision_weights: Mapping[int, float], ready: Mapping[int, Sequence[str]]
) -> dict[str, float]:
    """Per-replica weights from per-revision shares.

    Pure. A revision with no ready replica gets no traffic and its share goes to the others
    (the load balancer never routes to nothing). When every weighted revision is empty, any
    ready replica serves, so traffic never stops while some replica could answer.
    """
    live = {rev: w for rev, w in revision_weights.items() if w > 0 and ready.get(rev)}
    if not live:
        names = [name for names in ready.values() for name in names]
        return dict.fromkeys(names, 1.0)
    total = sum(live.values())
    weights: dict[str, float] = {}
    for rev, share in live.items():
        members = ready[rev]
        for name in members:
            weights[name] = share / total / len(members)
    return weights


class SmoothWeightedPicker:
    """nginx's smooth weighted round robin over a fixed set of weights."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        self._names = [name for name, weight in weights.items() if weight > 0]
        self._weights = [weights[name] for name in self._names]
        self._current = [0.0] * len(self._names)

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def pick(self, exclude: frozenset[str] = frozenset()) -> str | None:
        """The next name, skipping ``exclude``; None when nothing is left."""
        best = -1
        total = 0.0
        for index, name in enumerate(self._names):
            if name in exclude:
                continue
            self._current[index] += self._weights[index]
            total += self._weights[index]
            if best < 0 or self._current[index] > self._current[best]:
                best = index
        if best < 0:
            return None
        self._current[best] -= total
        return self._names[best]
