"""Token tags <-> entity spans for the tagging schemes of the field.

Schemes (the tag of a token is ``O`` or ``<PREFIX>-<TYPE>``):

* ``"BIO"`` (IOB2): prefixes ``B`` (begins a span) and ``I`` (inside a span);
* ``"BIOES"``: ``B``, ``I``, ``E`` (ends a span of two or more tokens), ``S`` (one-token span);
* ``"IO"``: only ``I``; consecutive ``I-X`` tokens form one span. IO cannot separate two
  adjacent spans of the same type, so spans -> IO -> spans merges them (lossy); every other
  round trip is exact.

Decoding follows conlleval, as :func:`seqeval.metrics.sequence_labeling.get_entities` (the
function seqeval's default, conlleval-compatible mode scores with) implements it: an ``I-X``
after ``O`` or after a token of another type *opens* a span instead of being dropped.
:func:`conll_chunks` is that function's rules, ported here so that prediction does not import
seqeval (whose package import pulls in scikit-learn, 0.6 s of a CLI start-up); the tests check
it against seqeval on every tag sequence up to length 5 over two types. Such
spans are counted (Twitter-2015 has 186 / 53 / 135 of them in train / valid / test): spans
read "the CoNLL way" = spans opened by ``B-`` (or ``S-``) + spans opened by ``I-`` (or ``E-``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

from mmie.data.schema import Span
from mmie.errors import DataError

__all__ = ["SCHEMES", "check_tag", "tags_to_spans", "spans_to_tags", "convert_tags",
           "tag_type", "conll_chunks"]

SCHEMES: dict[str, tuple[str, ...]] = {"BIO": ("B", "I"), "BIOES": ("B", "I", "E", "S"),
                                       "IO": ("I",)}
"""Tag prefixes each scheme allows (besides ``O``)."""

_ALIASES = {"IOB2": "BIO", "BIOES": "BIOES", "IOBES": "BIOES", "BIO": "BIO", "IO": "IO"}


def _scheme(scheme: str) -> str:
    s = _ALIASES.get(str(scheme).upper())
    if s is None:
        raise DataError(f"unknown tagging scheme {scheme!r}; expected one of "
                        f"{', '.join(SCHEMES)}", field="scheme")
    return s


def _line_of(line: int | Sequence[int] | None, i: int) -> int | None:
    if line is None or isinstance(line, int):
        return line
    return line[i] if 0 <= i < len(line) else None


@lru_cache(maxsize=4096)
def _is_valid(tag: str, scheme: str) -> bool:
    if tag == "O":
        return True
    prefix, sep, typ = tag.partition("-")
    return bool(sep and prefix in SCHEMES[scheme] and typ
                and not any(c.isspace() for c in typ))


def check_tag(tag: object, scheme: str = "BIO", *, path: str | Path | None = None,
              line: int | None = None, index: int | None = None) -> str:
    """Return ``tag`` if it is ``O`` or ``<PREFIX>-<TYPE>`` of ``scheme``; else raise DataError.

    ``TYPE`` must be non-empty and free of whitespace; prefixes are upper case.
    """
    if isinstance(tag, str) and scheme in SCHEMES and _is_valid(tag, scheme):
        return tag
    scheme = _scheme(scheme)
    if isinstance(tag, str) and _is_valid(tag, scheme):
        return tag
    where = f" (token {index})" if index is not None else ""
    expected = " or ".join(f"{p}-<TYPE>" for p in SCHEMES[scheme])
    raise DataError(f"tag {tag!r}{where} is not a {scheme} tag; expected O or {expected}",
                    path=path, line=line, field="tag")


def tag_type(tag: str) -> str | None:
    """The entity type of a tag (``"B-PER"`` -> ``"PER"``), ``None`` for ``O``."""
    return None if tag == "O" else tag.partition("-")[2]


def _chunk_ends(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    # seqeval.metrics.sequence_labeling.end_of_chunk
    return (prev_tag in ("E", "S")
            or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
            or (prev_tag not in ("O", ".") and prev_type != type_))


def _chunk_starts(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    # seqeval.metrics.sequence_labeling.start_of_chunk
    return (tag in ("B", "S")
            or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
            or (tag not in ("O", ".") and prev_type != type_))


def conll_chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """``(type, first, last)`` of every chunk of a tag sequence (``last`` inclusive), by the
    rules of seqeval's ``get_entities`` (conlleval's): the same chunks, in the same order."""
    chunks: list[tuple[str, int, int]] = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate([*tags, "O"]):
        tag = chunk[0]
        type_ = chunk[1:].split("-", maxsplit=1)[-1] or "_"
        if _chunk_ends(prev_tag, tag, prev_type, type_):
            chunks.append((prev_type, begin, i - 1))
        if _chunk_starts(prev_tag, tag, prev_type, type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return chunks


def tags_to_spans(tags: Sequence[str], scheme: str = "BIO", *, path: str | Path | None = None,
                  line: int | Sequence[int] | None = None) -> tuple[list[Span], int]:
    """Decode a tag sequence into spans (token offsets, end exclusive), the CoNLL way.

    Returns ``(spans, i_opened)`` where ``i_opened`` counts spans whose first tag is ``I-``
    (or ``E-`` in BIOES), i.e. spans a B-only reading would miss. It is always 0 for IO,
    where every span starts with ``I-`` by design.

    ``path``/``line`` name the source in errors; ``line`` may be one number or one line
    number per tag. A tag outside the scheme (``"X-PER"``, ``"B"``, ``"b-per"``, ``"E-LOC"``
    in BIO, ...) raises :class:`DataError`.
    """
    scheme = _scheme(scheme)
    tags = list(tags)
    for i, t in enumerate(tags):
        if not (isinstance(t, str) and _is_valid(t, scheme)):
            check_tag(t, scheme, path=path, line=_line_of(line, i), index=i)
    spans: list[Span] = []
    i_opened = 0
    for typ, start, last in conll_chunks(tags):
        spans.append(Span(start, last + 1, typ))
        if scheme != "IO" and tags[start][0] in ("I", "E"):
            i_opened += 1
    return spans, i_opened


def spans_to_tags(spans: Iterable[Span], n: int, scheme: str = "BIO") -> list[str]:
    """Encode spans as ``n`` tags. Spans may come in any order; overlapping or out-of-range
    spans raise :class:`DataError`. Scores and extra labels are not encoded."""
    scheme = _scheme(scheme)
    tags = ["O"] * n
    ordered = sorted(spans, key=lambda s: (s.start, s.end))
    prev: Span | None = None
    for s in ordered:
        if s.start < 0 or s.end > n:
            raise DataError(f"span [{s.start}, {s.end}) {s.label!r} is out of range for "
                            f"{n} tokens", field="entities")
        if prev is not None and s.start < prev.end:
            raise DataError(f"spans [{prev.start}, {prev.end}) {prev.label!r} and "
                            f"[{s.start}, {s.end}) {s.label!r} overlap; tags cannot encode "
                            "overlapping spans", field="entities")
        if not s.label or any(c.isspace() for c in s.label):
            raise DataError(f"span label {s.label!r} cannot be written as a tag type",
                            field="entities")
        length = s.end - s.start
        if scheme == "IO":
            tags[s.start:s.end] = [f"I-{s.label}"] * length
        elif scheme == "BIO":
            tags[s.start:s.end] = [f"B-{s.label}"] + [f"I-{s.label}"] * (length - 1)
        elif length == 1:
            tags[s.start] = f"S-{s.label}"
        else:
            tags[s.start:s.end] = ([f"B-{s.label}"] + [f"I-{s.label}"] * (length - 2)
                                   + [f"E-{s.label}"])
        prev = s
    return tags


def convert_tags(tags: Sequence[str], src: str, dst: str) -> list[str]:
    """Re-encode a tag sequence from scheme ``src`` to scheme ``dst`` (via spans, so an
    I-opened span becomes well formed, e.g. ``O I-PER`` -> ``O B-PER`` in BIO)."""
    spans, _ = tags_to_spans(tags, src)
    return spans_to_tags(spans, len(tags), dst)
