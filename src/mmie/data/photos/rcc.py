"""A small reader of Qt resource bundles (``.rcc``, as GCompris ships its pictures).

Format (Qt's ``rcc`` tool, versions 1-3): a 20-byte header ``b"qres"``, version, and the
offsets of the tree, the data and the names (big-endian 32-bit); version 3 adds a flags word.
Tree nodes are 14 bytes (22 from version 2 on, with a modification time): name offset (4),
flags (2), then for a directory the child count and the first child's index (4 + 4), for a
file country and language (2 + 2) and the data offset (4). A name is its length in UTF-16
units (2), a hash (4) and the UTF-16BE text; a datum is its size (4) and the bytes, zlib
compressed (after a 4-byte uncompressed size) when the node's flag 1 is set.
"""

from __future__ import annotations

import struct
import zlib

from mmie.errors import DataError

__all__ = ["read_rcc"]

_COMPRESSED, _DIRECTORY, _ZSTD = 1, 2, 4


def read_rcc(data: bytes, where: str = "<rcc>") -> dict[str, bytes]:
    """``{path inside the bundle: file bytes}`` of every file in the bundle ``data``."""
    if data[:4] != b"qres" or len(data) < 20:
        raise DataError("not a Qt resource bundle (no 'qres' header)", path=where)
    version, tree, dat, names = struct.unpack(">IIII", data[4:20])
    node = 22 if version >= 2 else 14
    out: dict[str, bytes] = {}

    def name(off: int) -> str:
        (n,) = struct.unpack(">H", data[names + off:names + off + 2])
        return data[names + off + 6:names + off + 6 + 2 * n].decode("utf-16-be")

    def walk(i: int, prefix: str, depth: int) -> None:
        if depth > 64:
            raise DataError("resource tree too deep (corrupt bundle?)", path=where)
        p = tree + i * node
        noff, flags = struct.unpack(">IH", data[p:p + 6])
        nm = name(noff) if i else ""
        if flags & _DIRECTORY:
            count, first = struct.unpack(">II", data[p + 6:p + 14])
            for c in range(first, first + count):
                walk(c, f"{prefix}{nm}/" if i else "", depth + 1)
            return
        (doff,) = struct.unpack(">I", data[p + 10:p + 14])
        (size,) = struct.unpack(">I", data[dat + doff:dat + doff + 4])
        blob = data[dat + doff + 4:dat + doff + 4 + size]
        if flags & _ZSTD:
            raise DataError(f"{prefix}{nm}: zstd-compressed resources are not supported",
                            path=where)
        if flags & _COMPRESSED:
            blob = zlib.decompress(blob[4:])
        out[prefix + nm] = blob

    try:
        walk(0, "", 0)
    except (struct.error, zlib.error, UnicodeDecodeError) as e:
        raise DataError(f"corrupt Qt resource bundle ({type(e).__name__}: {e})",
                        path=where) from None
    return out
