"""Readers of the benchmark file formats, each returning a :class:`ReadResult`.

=================  ======================================================================
format             reader
=================  ======================================================================
``conll``          :func:`read_conll`: Twitter-2015/2017 (``IMGID:<id>`` + ``token<TAB>tag``)
``mnre``           :func:`read_mnre`: one Python-literal (or JSON) dict per line
``mfiger``         :func:`read_mfiger`: JSON lines with ``tokens`` + ``annotations``
``wikidiverse``    :func:`read_wikidiverse`: JSON list of [sentence, image, topic, mentions]
``jsonl``          mmie's own lossless JSON lines (:func:`mmie.data.schema.read_jsonl`)
=================  ======================================================================

Every malformed input raises :class:`~mmie.errors.DataError` naming the file, the line (1-based)
and, where there is one, the field. Oddities that are not errors (an I- tag opening a span, a
mention name that differs from its tokens, ...) are counted in ``ReadResult.stats``, never
silently dropped.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from mmie.data.io import iter_json_objects, iter_lines
from mmie.data.schema import Example, Relation, Span, read_jsonl
from mmie.data.tags import check_tag, tags_to_spans
from mmie.errors import DataError

__all__ = ["ReadResult", "read_conll", "read_mnre", "read_mfiger", "read_wikidiverse",
           "read_mmie_jsonl", "read_any", "sniff_format", "FORMATS"]


@dataclass
class ReadResult:
    """What a reader returns: the examples, counts about them, and where they came from."""

    examples: list[Example]
    stats: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    format: str = ""

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)


def _label_counts(examples: list[Example]) -> dict[str, int]:
    c = Counter(s.label for ex in examples for s in ex.entities)
    return dict(sorted(c.items()))


# --------------------------------------------------------------------------------------------
# CoNLL (Twitter-2015 / Twitter-2017)
# --------------------------------------------------------------------------------------------
def _split_token_line(text: str, path: Path, lineno: int) -> tuple[str, str]:
    """``token<TAB>tag`` (the token may be any non-empty string, even a no-break space), or
    ``token tag`` separated by ASCII spaces when the line has no tab."""
    body = text.rstrip("\r\n")
    if "\t" in body:
        parts = body.rstrip("\t").split("\t")
        if len(parts) != 2:
            raise DataError(f"expected 2 tab-separated columns (token, tag), found "
                            f"{len(parts)}: {body!r}", path=path, line=lineno)
        token, tag = parts[0], parts[1].strip()
    else:
        parts = [p for p in body.split(" ") if p]
        if len(parts) != 2:
            raise DataError(f"expected 'token<TAB>tag' (or 'token tag'), found {len(parts)} "
                            f"column(s): {body!r}", path=path, line=lineno)
        token, tag = parts
    if token == "" or token.strip(" ") == "":
        raise DataError("empty token (a line must hold token<TAB>tag)", path=path, line=lineno,
                        field="token")
    return token, tag


def read_conll(path: str | Path, *, scheme: str = "BIO",
               label_map: Mapping[str, str] | None = None,
               image_suffix: str = ".jpg") -> ReadResult:
    """Read a Twitter-2015/2017 style CoNLL file.

    A post is an optional ``IMGID:<id>`` line, then one ``token<TAB>tag`` line per token, then
    a blank line. Stray or repeated blank lines, ``-DOCSTART-`` lines, posts without ``IMGID``
    (their ``image`` is None) and a last post without a final blank line are accepted.

    ``Example.id`` is the IMGID (``<IMGID>#2``, ``#3``... for repeats within the file) or
    ``<file stem>-<post index>`` for a post without one; ``Example.image`` is
    ``<IMGID><image_suffix>``. Spans are decoded the CoNLL way (see :mod:`mmie.data.tags`);
    ``label_map`` renames entity types (e.g. ``{"OTHER": "MISC"}`` to unify Twitter-2015 with
    Twitter-2017; the default keeps the file's names).

    ``stats``: posts, tokens, entities (CoNLL count), entities_b_only, i_opened_spans,
    entities_by_label, i_opened_by_label, posts_without_image, duplicate_image_ids,
    docstart_lines.
    """
    path = Path(path)
    label_map = dict(label_map or {})
    examples: list[Example] = []
    seen_ids: Counter[str] = Counter()
    st: Counter[str] = Counter()
    i_by_label: Counter[str] = Counter()

    imgid: str | None = None
    imgid_line = 0
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []

    def flush() -> None:
        nonlocal imgid, tokens, tags, lines
        if not tokens:
            return
        spans, n_i = tags_to_spans(tags, scheme, path=path, line=lines)
        if n_i:
            for s in spans:
                if tags[s.start][0] in ("I", "E"):
                    i_by_label[label_map.get(s.label, s.label)] += 1
        if label_map:
            spans = [Span(s.start, s.end, label_map.get(s.label, s.label)) for s in spans]
        st["i_opened_spans"] += n_i
        index = len(examples)
        if imgid is None:
            ex_id, image = f"{path.stem}-{index}", None
            st["posts_without_image"] += 1
        else:
            seen_ids[imgid] += 1
            k = seen_ids[imgid]
            ex_id = imgid if k == 1 else f"{imgid}#{k}"
            if k > 1:
                st["duplicate_image_ids"] += 1
            image = imgid + image_suffix
        examples.append(Example(id=ex_id, tokens=tokens, image=image, entities=spans))
        st["tokens"] += len(tokens)
        imgid, tokens, tags, lines = None, [], [], []

    for lineno, text in iter_lines(path):
        if text.strip() == "":
            flush()  # a blank line ends a post; stray blanks (no tokens yet) are ignored
            continue
        if text.startswith("-DOCSTART-"):
            if imgid is not None and not tokens:
                raise DataError(f"-DOCSTART- follows IMGID:{imgid} (line {imgid_line}), whose "
                                "post has no tokens", path=path, line=lineno)
            flush()
            st["docstart_lines"] += 1
            continue
        if text.startswith("IMGID:") and "\t" not in text:
            if tokens:
                raise DataError("IMGID line inside a post; a blank line must end the previous "
                                f"post (started line {lines[0]})", path=path, line=lineno)
            if imgid is not None:
                raise DataError(f"IMGID line follows IMGID:{imgid} (line {imgid_line}), whose "
                                "post has no tokens", path=path, line=lineno)
            value = text[len("IMGID:"):].strip()
            if not value or any(c.isspace() for c in value):
                raise DataError(f"IMGID line without a valid id: {text!r}", path=path,
                                line=lineno, field="IMGID")
            imgid, imgid_line = value, lineno
            continue
        token, tag = _split_token_line(text, path, lineno)
        check_tag(tag, scheme, path=path, line=lineno)
        tokens.append(token)
        tags.append(tag)
        lines.append(lineno)
    if imgid is not None and not tokens:
        raise DataError(f"IMGID:{imgid} at the end of the file has no tokens", path=path,
                        line=imgid_line)
    flush()

    by_label = _label_counts(examples)
    n_ent = sum(by_label.values())
    stats: dict[str, Any] = {
        "posts": len(examples), "tokens": st["tokens"], "entities": n_ent,
        "entities_b_only": n_ent - st["i_opened_spans"], "i_opened_spans": st["i_opened_spans"],
        "entities_by_label": by_label, "i_opened_by_label": dict(sorted(i_by_label.items())),
        "posts_without_image": st["posts_without_image"],
        "duplicate_image_ids": st["duplicate_image_ids"], "docstart_lines": st["docstart_lines"],
    }
    return ReadResult(examples, stats, path, "conll")


# --------------------------------------------------------------------------------------------
# MNRE
# --------------------------------------------------------------------------------------------
def _parse_dict_line(line: str, path: Path, lineno: int) -> dict:
    """JSON first (fast, and accepts true/false/null); else a Python literal through
    :func:`ast.literal_eval` (never ``eval``)."""
    try:
        d = json.loads(line)
    except json.JSONDecodeError:
        try:
            d = ast.literal_eval(line.strip())
        except (SyntaxError, ValueError, MemoryError, RecursionError, TypeError) as e:
            msg = getattr(e, "msg", None) or str(e) or type(e).__name__
            col = getattr(e, "offset", None)
            where = f" at column {col}" if col else ""
            raise DataError(f"not a Python literal or JSON object ({msg}{where})", path=path,
                            line=lineno) from None
    if not isinstance(d, dict):
        raise DataError(f"expected a dict per line, got {type(d).__name__}", path=path,
                        line=lineno)
    return d


def _require(d: dict, key: str, kind: type | tuple[type, ...], path: Path, lineno: int,
             name: str | None = None) -> Any:
    name = name or key
    if key not in d:
        raise DataError(f"missing field '{name}'", path=path, line=lineno, field=name)
    v = d[key]
    if not isinstance(v, kind) or isinstance(v, bool):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(f"field '{name}' must be a {want}, got {type(v).__name__}", path=path,
                        line=lineno, field=name)
    return v


def _check_tokens(tokens: list, path: Path, lineno: int, name: str = "token") -> list[str]:
    if not tokens:
        raise DataError(f"field '{name}' is empty", path=path, line=lineno, field=name)
    for i, t in enumerate(tokens):
        if not isinstance(t, str) or t == "":
            raise DataError(f"{name}[{i}] must be a non-empty string, got {t!r}", path=path,
                            line=lineno, field=name)
    return tokens


def _offsets(start: Any, end: Any, n: int, path: Path, lineno: int, name: str) -> tuple[int, int]:
    """Validate token offsets ``[start, end)`` (ints, or strings of digits) for ``n`` tokens."""
    vals = []
    for v in (start, end):
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool):
            raise DataError(f"'{name}' offsets must be integers, got ({start!r}, {end!r})",
                            path=path, line=lineno, field=name)
        vals.append(v)
    s, e = vals
    if not 0 <= s < e <= n:
        raise DataError(f"'{name}' span [{s}, {e}) is out of range or empty for {n} tokens",
                        path=path, line=lineno, field=name)
    return s, e


def read_mnre(path: str | Path) -> ReadResult:
    """Read MNRE: one dict per line, ``{'token': [...], 'h': {'name', 'pos': [s, e)},
    't': {...}, 'img_id': str, 'relation': str}`` as a Python literal (``ast.literal_eval``)
    or JSON. ``image_id`` is accepted for ``img_id``.

    One :class:`Example` per line: ``entities = [head, tail]`` (label ``h['type']`` when
    present, else ``"ENTITY"``), ``relations = [Relation(0, 1, relation)]``, ``image = img_id``,
    ``meta = {"h_name", "t_name"}``. A name that differs from its tokens is a counted warning
    (``stats['name_mismatch']``, its 1-based lines in ``stats['name_mismatch_lines']``, the
    span is what counts); an out-of-range position is an error.
    """
    path = Path(path)
    examples: list[Example] = []
    rel_counts: Counter[str] = Counter()
    mismatch = 0
    mismatch_lines: list[int] = []
    for lineno, line in iter_lines(path):
        if not line.strip():
            continue
        d = _parse_dict_line(line, path, lineno)
        tokens = _check_tokens(_require(d, "token", list, path, lineno), path, lineno)
        ents, names = [], []
        for key in ("h", "t"):
            ent = _require(d, key, dict, path, lineno)
            name = _require(ent, "name", str, path, lineno, f"{key}.name")
            pos = _require(ent, "pos", (list, tuple), path, lineno, f"{key}.pos")
            if len(pos) != 2:
                raise DataError(f"'{key}.pos' must be [start, end], got {pos!r}", path=path,
                                line=lineno, field=f"{key}.pos")
            s, e = _offsets(pos[0], pos[1], len(tokens), path, lineno, f"{key}.pos")
            label = ent.get("type") or "ENTITY"
            if not isinstance(label, str):
                raise DataError(f"'{key}.type' must be a string", path=path, line=lineno,
                                field=f"{key}.type")
            if " ".join(tokens[s:e]) != name:
                mismatch += 1
                if not mismatch_lines or mismatch_lines[-1] != lineno:
                    mismatch_lines.append(lineno)
            ents.append(Span(s, e, label))
            names.append(name)
        img_key = "img_id" if "img_id" in d or "image_id" not in d else "image_id"
        img = _require(d, img_key, str, path, lineno)
        rel = _require(d, "relation", str, path, lineno)
        if not rel:
            raise DataError("field 'relation' is empty", path=path, line=lineno,
                            field="relation")
        rel_counts[rel] += 1
        examples.append(Example(id=f"{path.stem}-{len(examples)}", tokens=tokens, image=img,
                                entities=ents, relations=[Relation(0, 1, rel)],
                                meta={"h_name": names[0], "t_name": names[1]}))
    stats = {"instances": len(examples), "relations_by_label": dict(sorted(rel_counts.items())),
             "labels_present": len(rel_counts), "name_mismatch": mismatch}
    if mismatch_lines:
        stats["name_mismatch_lines"] = mismatch_lines
    return ReadResult(examples, stats, path, "mnre")


# --------------------------------------------------------------------------------------------
# MFIGER
# --------------------------------------------------------------------------------------------
_IMAGE_KEYS = ("image", "img_id", "image_id")
LABEL_FIXES = {"geograpy": "geography"}
"""Label typos of the MFIGER release, fixed as its authors' code fixes them (counted)."""


def read_mfiger(path: str | Path) -> ReadResult:
    """Read MFIGER JSON lines: ``{"tokens": [...], "annotations": [{"mention_id", "labels":
    [...], "start", "end"}, ...], "image"|"img_id"|"image_id": ...}`` (``end`` exclusive).

    One :class:`Example` per line with every mention as a :class:`Span` (``label`` = first
    label, ``labels`` = all of them); ``meta["mention_ids"]`` keeps the mention ids.
    ``stats``: posts, mentions, labels_by_count, posts_without_image, labels_fixed.
    """
    path = Path(path)
    examples: list[Example] = []
    labels_c: Counter[str] = Counter()
    no_image = fixed = 0
    for lineno, d in iter_json_objects(path):
        tokens = _check_tokens(_require(d, "tokens", list, path, lineno), path, lineno,
                               "tokens")
        anns = _require(d, "annotations", list, path, lineno)
        spans, mids = [], []
        for k, a in enumerate(anns):
            fname = f"annotations[{k}]"
            if not isinstance(a, dict):
                raise DataError(f"'{fname}' must be an object", path=path, line=lineno,
                                field=fname)
            labels = _require(a, "labels", list, path, lineno, f"{fname}.labels")
            if not labels or not all(isinstance(x, str) and x for x in labels):
                raise DataError(f"'{fname}.labels' must be a non-empty list of strings, got "
                                f"{labels!r}", path=path, line=lineno, field=f"{fname}.labels")
            new = []
            for x in labels:
                y = x
                for bad, good in LABEL_FIXES.items():
                    y = y.replace(bad, good)
                fixed += y != x
                new.append(y)
            for key in ("start", "end"):
                if key not in a:
                    raise DataError(f"missing field '{fname}.{key}'", path=path, line=lineno,
                                    field=f"{fname}.{key}")
            s, e = _offsets(a["start"], a["end"], len(tokens), path, lineno, fname)
            spans.append(Span(s, e, new[0], labels=tuple(new)))
            labels_c.update(new)
            mids.append(a.get("mention_id", f"{len(examples)}-{k}"))
        image = next((d[k] for k in _IMAGE_KEYS if d.get(k) not in (None, "")), None)
        if image is not None and not isinstance(image, str):
            image = str(image)
        no_image += image is None
        ex_id = str(d["id"]) if d.get("id") not in (None, "") else f"{path.stem}-{len(examples)}"
        examples.append(Example(id=ex_id, tokens=tokens, image=image, entities=spans,
                                meta={"mention_ids": mids}))
    stats = {"posts": len(examples), "mentions": sum(len(e.entities) for e in examples),
             "labels_by_count": dict(sorted(labels_c.items())), "posts_without_image": no_image,
             "labels_fixed": fixed}
    return ReadResult(examples, stats, path, "mfiger")


# --------------------------------------------------------------------------------------------
# WikiDiverse-derived entity typing (MG-VMoE)
# --------------------------------------------------------------------------------------------
def _iter_json_items(path: Path) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(item index, line number, value)`` of a top-level JSON list, or of JSON lines
    (one item per line), keeping the line where each item starts."""
    lines = list(iter_lines(path))
    text = "\n".join(t for _, t in lines)
    dec = json.JSONDecoder()
    line_starts = [0]
    for _, t in lines:
        line_starts.append(line_starts[-1] + len(t) + 1)

    def line_at(pos: int) -> int:
        lo, hi = 0, len(line_starts) - 1
        while lo < hi:  # last start <= pos
            mid = (lo + hi + 1) // 2
            if line_starts[mid] <= pos:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    def skip_ws(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    def decode(pos: int) -> tuple[Any, int]:
        try:
            return dec.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON ({e.msg} at column {e.colno})", path=path,
                            line=line_at(e.pos)) from None

    pos = skip_ws(0)
    if pos >= len(text):
        return
    # a top-level list of items, or JSON lines (each line an item, itself a list)
    first, _ = decode(pos)
    wrapped = isinstance(first, list) and bool(first) and isinstance(first[0], list)
    if wrapped or first == []:
        pos = skip_ws(pos + 1)  # past '['
        idx = 0
        if pos < len(text) and text[pos] == "]":
            return
        while True:
            start = skip_ws(pos)
            value, pos = decode(start)
            yield idx, line_at(start), value
            idx += 1
            pos = skip_ws(pos)
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            if pos < len(text) and text[pos] == "]":
                rest = skip_ws(pos + 1)
                if rest < len(text):
                    raise DataError("unexpected content after the top-level list",
                                    path=path, line=line_at(rest))
                return
            raise DataError("expected ',' or ']' between items", path=path,
                            line=line_at(min(pos, len(text) - 1)))
    else:
        idx = 0
        while pos < len(text):
            value, end = decode(pos)
            yield idx, line_at(pos), value
            idx += 1
            pos = skip_ws(end)


_WORD = re.compile(r"\S+")


def read_wikidiverse(path: str | Path) -> ReadResult:
    """Read MG-VMoE's WikiDiverse-derived typing data: a JSON list of items
    ``[sentence, image_url, topic, [[name, type, start_char, end_char, url], ...]]``
    (``end_char`` exclusive); one item per line (JSON lines) is accepted too.

    The sentence is split at whitespace, keeping each word's character offsets, and words are
    further split at every mention boundary that falls inside a word (``"Packers,"`` ->
    ``"Packers" ","`` when the mention is ``Packers``), so every mention maps exactly onto
    whole tokens (counted in ``stats['split_words']``). A mention with surrounding spaces is
    trimmed to its text (``stats['trimmed_mentions']``); a name that differs from the
    sentence's characters is counted (``stats['name_mismatch']``). Errors name the item index
    and the line where the item starts.

    ``Example.image`` is the image URL; ``meta`` holds ``text`` (the sentence), ``topic``,
    ``char_spans`` and ``urls`` (Wikipedia links) of the mentions.
    """
    path = Path(path)
    examples: list[Example] = []
    st: Counter[str] = Counter()
    types: Counter[str] = Counter()
    for idx, lineno, item in _iter_json_items(path):
        where = f"item {idx}"
        if not isinstance(item, list) or len(item) != 4:
            raise DataError(f"{where} must be [sentence, image_url, topic, mentions], got "
                            f"{type(item).__name__} of length "
                            f"{len(item) if isinstance(item, list) else '-'}",
                            path=path, line=lineno, field=where)
        sentence, image, topic, mentions = item
        for val, name, kind in ((sentence, "sentence", str), (image, "image_url", str),
                                (topic, "topic", str), (mentions, "mentions", list)):
            if not isinstance(val, kind):
                raise DataError(f"{where}: '{name}' must be a {kind.__name__}, got "
                                f"{type(val).__name__}", path=path, line=lineno,
                                field=f"{where}.{name}")
        if not sentence.strip():
            raise DataError(f"{where}: empty sentence", path=path, line=lineno,
                            field=f"{where}.sentence")
        chars: list[tuple[int, int]] = []
        names, mtypes, urls = [], [], []
        for k, m in enumerate(mentions):
            mf = f"{where}.mentions[{k}]"
            if (not isinstance(m, list) or len(m) < 4 or not isinstance(m[0], str)
                    or not isinstance(m[1], str) or not m[1]):
                raise DataError(f"{mf} must be [name, type, start_char, end_char, url], got "
                                f"{m!r}", path=path, line=lineno, field=mf)
            s, e = m[2], m[3]
            if (not isinstance(s, int) or not isinstance(e, int) or isinstance(s, bool)
                    or isinstance(e, bool) or not 0 <= s < e <= len(sentence)):
                raise DataError(f"{mf}: character span [{s!r}, {e!r}) is out of range for a "
                                f"sentence of {len(sentence)} characters", path=path,
                                line=lineno, field=mf)
            s2 = s + len(sentence[s:e]) - len(sentence[s:e].lstrip())
            e2 = e - (len(sentence[s:e]) - len(sentence[s:e].rstrip()))
            if s2 >= e2:
                raise DataError(f"{mf}: character span [{s}, {e}) holds only whitespace",
                                path=path, line=lineno, field=mf)
            st["trimmed_mentions"] += (s2, e2) != (s, e)
            st["name_mismatch"] += sentence[s:e].strip() != m[0].strip()
            chars.append((s2, e2))
            names.append(m[0])
            mtypes.append(m[1])
            urls.append(m[4] if len(m) > 4 else None)
        cuts = sorted({c for se in chars for c in se})
        words: list[tuple[int, int]] = []
        for w in _WORD.finditer(sentence):
            a = w.start()
            inner = [c for c in cuts if w.start() < c < w.end()]
            st["split_words"] += bool(inner)
            for c in inner + [w.end()]:
                words.append((a, c))
                a = c
        start_of = {a: i for i, (a, _) in enumerate(words)}
        end_of = {b: i + 1 for i, (_, b) in enumerate(words)}
        spans = []
        for (s, e), t in zip(chars, mtypes):
            spans.append(Span(start_of[s], end_of[e], t))
            types[t] += 1
        examples.append(Example(id=f"{path.stem}-{idx}", tokens=[sentence[a:b] for a, b in words],
                                image=image or None, entities=spans,
                                meta={"text": sentence, "topic": topic,
                                      "char_spans": [list(c) for c in chars], "urls": urls,
                                      "names": names}))
    stats = {"posts": len(examples), "mentions": sum(types.values()),
             "entities_by_label": dict(sorted(types.items())),
             "split_words": st["split_words"], "trimmed_mentions": st["trimmed_mentions"],
             "name_mismatch": st["name_mismatch"]}
    return ReadResult(examples, stats, path, "wikidiverse")


# --------------------------------------------------------------------------------------------
# mmie's own JSON lines, format sniffing and dispatch
# --------------------------------------------------------------------------------------------
def read_mmie_jsonl(path: str | Path) -> ReadResult:
    """Read mmie's own lossless JSON lines (``Example.to_dict`` per line)."""
    path = Path(path)
    exs = list(read_jsonl(path))
    rels = Counter(r.label for e in exs for r in e.relations)
    stats = {"posts": len(exs), "entities": sum(len(e.entities) for e in exs),
             "entities_by_label": _label_counts(exs),
             "relations_by_label": dict(sorted(rels.items()))}
    return ReadResult(exs, stats, path, "jsonl")


FORMATS: dict[str, Callable[[Path], ReadResult]] = {
    "conll": read_conll, "mnre": read_mnre, "mfiger": read_mfiger,
    "wikidiverse": read_wikidiverse, "jsonl": read_mmie_jsonl,
}
"""Format name -> reader (called with the path only)."""


def sniff_format(path: str | Path) -> str:
    """Guess a file's format from its first non-blank line."""
    path = Path(path)
    first = ""
    for _, text in iter_lines(path):
        if text.strip():
            first = text.strip()
            break
    if not first:
        raise DataError("file is empty; cannot tell its format", path=path)
    if first.startswith(("IMGID:", "-DOCSTART-")):
        return "conll"
    if first.startswith("["):
        return "wikidiverse"
    if first.startswith("{"):
        try:
            d = json.loads(first)
        except json.JSONDecodeError:
            try:
                d = ast.literal_eval(first)
            except (SyntaxError, ValueError, MemoryError, RecursionError, TypeError):
                raise DataError("the first line starts with '{' but is neither JSON nor a "
                                "Python literal", path=path, line=1) from None
        if isinstance(d, dict):
            if "token" in d and "h" in d:
                return "mnre"
            if "annotations" in d:
                return "mfiger"
            if "id" in d and "tokens" in d:
                return "jsonl"
        raise DataError("a dict per line, but with none of the known field sets (MNRE: token/"
                        "h/t; MFIGER: tokens/annotations; mmie: id/tokens)", path=path)
    if "\t" in first or len(first.split(" ")) == 2:
        return "conll"
    raise DataError(f"cannot tell the format from the first line {first[:60]!r}; pass format="
                    f"one of {', '.join(FORMATS)}", path=path)


def read_any(path: str | Path, format: str | None = None, **kwargs: Any) -> ReadResult:
    """Read ``path`` with the reader of ``format`` (see :data:`FORMATS`), or of the format
    sniffed from its content; ``kwargs`` go to the reader (e.g. ``label_map`` for conll)."""
    path = Path(path)
    fmt = format or sniff_format(path)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}",
                        path=path, field="format")
    return FORMATS[fmt](path, **kwargs)
