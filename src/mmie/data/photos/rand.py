"""Random draws that are the same with every NumPy version.

NumPy guarantees the streams of its bit generators (``SeedSequence`` + ``PCG64``) across
versions, not those of ``Generator`` methods such as ``integers`` or ``permutation``. The
photo benchmark has to give the same posts on the GPU machine (another NumPy), so its draws
are built here from the raw 64-bit words: integers by rejection sampling, floats from the top
53 bits, permutations by Fisher-Yates.
"""

from __future__ import annotations

import numpy as np

__all__ = ["StableRng", "stable_rng"]


class StableRng:
    """The few draws the generator needs, from a PCG64 stream's raw words."""

    def __init__(self, seed_seq: np.random.SeedSequence):
        self._bg = np.random.PCG64(seed_seq)

    def _word(self) -> int:
        return int(self._bg.random_raw())

    def integers(self, low: int, high: int | None = None) -> int:
        """Uniform in ``[low, high)`` (or ``[0, low)`` with one argument)."""
        if high is None:
            low, high = 0, low
        n = int(high) - int(low)
        if n <= 0:
            raise ValueError(f"empty range [{low}, {high})")
        limit = (1 << 64) - ((1 << 64) % n)  # reject the short last block: exactly uniform
        while True:
            w = self._word()
            if w < limit:
                return int(low) + w % n

    def random(self) -> float:
        """Uniform in ``[0, 1)``."""
        return (self._word() >> 11) * (1.0 / (1 << 53))

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.random()

    def permutation(self, n: int) -> list[int]:
        out = list(range(n))
        for i in range(n - 1, 0, -1):
            j = self.integers(i + 1)
            out[i], out[j] = out[j], out[i]
        return out


def stable_rng(*key: int) -> StableRng:
    return StableRng(np.random.SeedSequence(list(key)))
