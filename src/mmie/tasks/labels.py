"""Label vocabularies: a fixed, JSON-serialisable mapping between label strings and ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from mmie.errors import DataError

__all__ = ["LabelMap", "bio_label_map"]

_LIST_AT_MOST = 50  # labels listed in an "unknown label" message


class LabelMap:
    """An ordered list of distinct labels; a label's id is its position.

    >>> m = LabelMap(["O", "B-PER", "I-PER"])
    >>> m.id("B-PER"), m.label(2)
    (1, 'I-PER')
    """

    def __init__(self, labels: Iterable[str]):
        labels = list(labels)
        for i, l in enumerate(labels):
            if not isinstance(l, str) or not l:
                raise DataError(f"label {i} is {l!r}; labels must be non-empty strings",
                                field="labels")
        seen: set[str] = set()
        dup = [l for l in labels if l in seen or seen.add(l)]
        if dup:
            raise DataError(f"duplicate labels: {sorted(set(dup))}", field="labels")
        self._labels: tuple[str, ...] = tuple(labels)
        self._ids: dict[str, int] = {l: i for i, l in enumerate(labels)}

    @property
    def labels(self) -> list[str]:
        """The labels in id order (a copy)."""
        return list(self._labels)

    def __len__(self) -> int:
        return len(self._labels)

    def __iter__(self) -> Iterator[str]:
        return iter(self._labels)

    def __contains__(self, label: object) -> bool:
        return label in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and self._labels == other._labels

    def __hash__(self) -> int:
        return hash(self._labels)

    def __repr__(self) -> str:
        return f"LabelMap({list(self._labels)!r})"

    def id(self, label: str) -> int:
        """The id of ``label``; an unknown label raises DataError listing the known ones."""
        try:
            return self._ids[label]
        except (KeyError, TypeError):
            known = ", ".join(self._labels[:_LIST_AT_MOST])
            if len(self) > _LIST_AT_MOST:
                known += f", ... ({len(self) - _LIST_AT_MOST} more)"
            raise DataError(f"unknown label {label!r}; known labels: {known}",
                            field="label") from None

    def label(self, id: int) -> str:
        """The label of ``id``; an id out of range raises DataError."""
        if isinstance(id, bool) or not isinstance(id, int) or not 0 <= id < len(self):
            raise DataError(f"label id {id!r} out of range: there are {len(self)} labels "
                            f"(ids 0..{len(self) - 1})", field="label")
        return self._labels[id]

    def encode(self, labels: Iterable[str]) -> list[int]:
        """Ids of a sequence of labels."""
        return [self.id(l) for l in labels]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Labels of a sequence of ids (accepts numpy / torch integer scalars)."""
        return [self.label(int(i)) for i in ids]

    # serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"labels": list(self._labels)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LabelMap":
        if not isinstance(d, dict) or not isinstance(d.get("labels"), list):
            raise DataError(f"expected an object with a 'labels' list, got {d!r:.200}",
                            field="labels")
        return cls(d["labels"])

    def save(self, path: str | Path) -> None:
        """Write ``{"labels": [...]}`` as UTF-8 JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n",
                              encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "LabelMap":
        """Read a file written by :meth:`save`; errors name the file."""
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as e:
            raise DataError(f"cannot read label map: {e.strerror or e}", path=path) from None
        except UnicodeDecodeError as e:
            raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", path=path) from None
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", path=path,
                            line=e.lineno) from None
        try:
            return cls.from_dict(d)
        except DataError as e:
            raise DataError(e.reason, path=path, field=e.field) from None


def bio_label_map(types: Sequence[str]) -> LabelMap:
    """``O`` = 0, then ``B-<type>``, ``I-<type>`` for each distinct type in sorted order."""
    for t in types:
        if not isinstance(t, str) or not t:
            raise DataError(f"entity type {t!r} must be a non-empty string", field="types")
    labels = ["O"]
    for t in sorted(set(types)):
        labels += [f"B-{t}", f"I-{t}"]
    return LabelMap(labels)
