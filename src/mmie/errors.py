"""The error types of mmie. Every bad input raises one of these with a message that names
the file, line or field and says what was expected."""

from __future__ import annotations

from pathlib import Path


class MMIEError(Exception):
    """Base class of every error mmie raises on purpose."""


class DataError(MMIEError, ValueError):
    """Malformed data: names the source (file), the line (1-based) and what was expected."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.reason = message
        where = ""
        if self.path is not None:
            where = self.path + (f", line {line}" if line is not None else "")
        elif line is not None:
            where = f"line {line}"
        if field is not None:
            where = f"{where}, field '{field}'" if where else f"field '{field}'"
        super().__init__(f"{where}: {message}" if where else message)


class ImageError(DataError):
    """A missing, corrupt, oversized or otherwise unusable image."""


class ConfigError(MMIEError, ValueError):
    """A bad configuration key or value (names the key and the closest valid ones)."""
