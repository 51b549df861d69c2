"""Line-level file reading that names the file and line of every problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from mmie.errors import DataError


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` (1-based, newline stripped) of a UTF-8 file.

    Invalid UTF-8 raises :class:`DataError` naming the line and byte column; a missing file
    raises :class:`DataError` naming the path. A UTF-8 byte-order mark is accepted.
    """
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", path=p)
    if p.is_dir():
        raise DataError("expected a file, found a directory", path=p)
    with open(p, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"invalid UTF-8 (byte 0x{raw[e.start]:02x} at column "
                                f"{e.start + 1}); expected UTF-8 text", path=p,
                                line=lineno) from None
            yield lineno, text.rstrip("\r\n")


def iter_json_objects(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` of a JSON-lines file; blank lines are skipped, and a
    line that is not valid JSON or not a JSON object raises :class:`DataError` naming it."""
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON ({e.msg} at column {e.colno})", path=path,
                            line=lineno) from None
        if not isinstance(d, dict):
            raise DataError(f"expected a JSON object, got {type(d).__name__}", path=path,
                            line=lineno)
        yield lineno, d
