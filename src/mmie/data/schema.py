"""Plain typed objects shared by every part of mmie.

One :class:`Example` type serves every task:

* NER: ``tokens`` + ``entities`` (all gold spans of the post);
* RE (MNRE): ``tokens`` + the two mentions in ``entities`` + one :class:`Relation` in
  ``relations`` whose ``head``/``tail`` index into ``entities``;
* entity typing: ``tokens`` + one or more mention spans in ``entities`` (each with its type).

Spans use token offsets, ``start`` inclusive and ``end`` exclusive (Python slicing). The JSON
lines form is lossless: ``Example.from_dict(e.to_dict()) == e``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from mmie.data.io import iter_json_objects
from mmie.errors import DataError

__all__ = ["Span", "Relation", "Example", "write_jsonl", "read_jsonl"]


@dataclass(frozen=True)
class Span:
    """An entity mention: tokens ``[start, end)`` of a post with a type label.

    ``labels`` holds extra types for multi-label data (MFIGER); ``label`` is the first one.
    """

    start: int
    end: int
    label: str
    score: float | None = None
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (not isinstance(self.start, int) or not isinstance(self.end, int)
                or isinstance(self.start, bool) or isinstance(self.end, bool)):
            raise DataError(f"span offsets must be integers, got ({self.start!r}, {self.end!r})")
        if self.start < 0 or self.end <= self.start:
            raise DataError(f"span [{self.start}, {self.end}) is empty or negative")

    @property
    def all_labels(self) -> tuple[str, ...]:
        return self.labels if self.labels else (self.label,)

    def text(self, tokens: list[str]) -> str:
        return " ".join(tokens[self.start:self.end])

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"start": self.start, "end": self.end, "label": self.label}
        if self.score is not None:
            d["score"] = self.score
        if self.labels:
            d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Span":
        return cls(start=d["start"], end=d["end"], label=d["label"], score=d.get("score"),
                   labels=tuple(d.get("labels", ())))


@dataclass(frozen=True)
class Relation:
    """A relation between two entity mentions, given as indices into ``Example.entities``."""

    head: int
    tail: int
    label: str
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"head": self.head, "tail": self.tail, "label": self.label}
        if self.score is not None:
            d["score"] = self.score
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Relation":
        return cls(head=d["head"], tail=d["tail"], label=d["label"], score=d.get("score"))


@dataclass
class Example:
    """A post: its words, the id/path of its image, and its annotations."""

    id: str
    tokens: list[str]
    image: str | None = None
    entities: list[Span] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def validate(self, *, path: str | Path | None = None, line: int | None = None) -> "Example":
        """Check spans and relation indices; raise :class:`DataError` naming the source."""
        n = len(self.tokens)
        if n == 0:
            raise DataError(f"post {self.id!r} has no tokens", path=path, line=line, field="tokens")
        for i, t in enumerate(self.tokens):
            if not isinstance(t, str) or t == "":
                raise DataError(f"token {i} of post {self.id!r} is empty or not a string: {t!r}",
                                path=path, line=line, field="tokens")
        for s in self.entities:
            if s.end > n:
                raise DataError(f"span [{s.start}, {s.end}) is out of range for a post of {n} "
                                f"tokens", path=path, line=line, field="entities")
        for r in self.relations:
            for which, idx in (("head", r.head), ("tail", r.tail)):
                if not 0 <= idx < len(self.entities):
                    raise DataError(f"relation {which} index {idx} does not name one of the "
                                    f"{len(self.entities)} entities", path=path, line=line,
                                    field="relations")
        return self

    # --- convenience for single-relation (MNRE-style) examples -------------------------------
    @property
    def head(self) -> Span:
        return self.entities[self.relations[0].head]

    @property
    def tail(self) -> Span:
        return self.entities[self.relations[0].tail]

    @property
    def relation(self) -> str:
        return self.relations[0].label

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "tokens": list(self.tokens), "image": self.image,
                             "entities": [s.to_dict() for s in self.entities],
                             "relations": [r.to_dict() for r in self.relations]}
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, path: str | Path | None = None,
                  line: int | None = None) -> "Example":
        if not isinstance(d, dict):
            raise DataError(f"expected a JSON object, got {type(d).__name__}", path=path, line=line)
        for key in ("id", "tokens"):
            if key not in d:
                raise DataError(f"missing required field '{key}'", path=path, line=line, field=key)
        if not isinstance(d["tokens"], list):
            raise DataError("'tokens' must be a list of strings", path=path, line=line,
                            field="tokens")
        try:
            ents = [Span.from_dict(s) for s in d.get("entities", [])]
            rels = [Relation.from_dict(r) for r in d.get("relations", [])]
        except KeyError as e:
            raise DataError(f"missing key {e} in an entity or relation", path=path,
                            line=line) from None
        except DataError as e:
            raise DataError(e.reason, path=path, line=line, field="entities") from None
        except (TypeError, AttributeError) as e:
            raise DataError(f"malformed entity or relation: {e}", path=path, line=line) from None
        ex = cls(id=str(d["id"]), tokens=list(d["tokens"]), image=d.get("image"), entities=ents,
                 relations=rels, meta=dict(d.get("meta", {})))
        return ex.validate(path=path, line=line)


def write_jsonl(examples: Iterable[Example], path: str | Path) -> int:
    """Write examples as JSON lines atomically (write to a temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for ex in examples:
                f.write(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n")
                n += 1
    except BaseException:
        tmp.unlink(missing_ok=True)  # never leave a half-written file behind
        raise
    tmp.replace(path)
    return n


def read_jsonl(path: str | Path) -> Iterator[Example]:
    """Read mmie's own JSON lines form (as written by :func:`write_jsonl`)."""
    for lineno, d in iter_json_objects(path):
        yield Example.from_dict(d, path=path, line=lineno)
