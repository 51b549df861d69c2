"""A difference hash (dHash) for near-duplicate pictures, with PIL and numpy only.

The picture is turned grey and shrunk to 9 x 8 (for the row hash) and 8 x 9 (for the column
hash); each bit says whether a pixel is brighter than its right (lower) neighbour. The 128 bits
survive rescaling, recompression and mild colour changes; two pictures whose hashes differ in
at most :data:`NEAR_DUPLICATE_BITS` bits are treated as near-duplicates.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["dhash", "hamming", "pairwise_hamming", "NEAR_DUPLICATE_BITS"]

#: Hamming distance (of 128 bits) at or below which two pictures count as near-duplicates.
NEAR_DUPLICATE_BITS = 12


def dhash(img: Image.Image) -> int:
    """The 128-bit difference hash of ``img`` as a Python int (row bits high, column low)."""
    g = img.convert("L")
    rows = np.asarray(g.resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    cols = np.asarray(g.resize((8, 9), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = np.concatenate([(rows[:, 1:] > rows[:, :-1]).ravel(),
                           (cols[1:, :] > cols[:-1, :]).ravel()])
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    """Number of differing bits."""
    return (a ^ b).bit_count()


def pairwise_hamming(hashes: list[int]) -> np.ndarray:
    """``n x n`` matrix of Hamming distances between 128-bit hashes (uint8)."""
    n = len(hashes)
    if n == 0:
        return np.zeros((0, 0), dtype=np.uint8)
    b = np.array([[(h >> (8 * k)) & 0xFF for k in range(16)] for h in hashes], dtype=np.uint8)
    bits = np.unpackbits(b, axis=1)  # n x 128
    out = np.zeros((n, n), dtype=np.uint16)
    for k in range(bits.shape[1]):
        col = bits[:, k]
        out += col[:, None] != col[None, :]
    return out.astype(np.uint8)
