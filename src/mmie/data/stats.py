"""Counts of a data set per split (what ``mmie data stats`` prints).

For NER the entity count is the CoNLL one (an I- tag after O or another type opens a span);
beside it stand the B-only count (spans that begin with B-) and the number of spans opened by
an I- tag, overall and per label, so both published ways of counting Twitter-2015 come out.
Relations are counted per label; images are checked for presence when an image folder exists.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from mmie.data import catalog
from mmie.data.images import resolve_image
from mmie.data.readers import ReadResult
from mmie.errors import DataError

__all__ = ["dataset_stats", "split_stats", "format_stats"]

_FOLDER_SPLITS = ("train", "valid", "test")


def split_stats(res: ReadResult, image_dir: str | Path | None = None) -> dict[str, Any]:
    """Counts of one read split: posts, tokens, entities (CoNLL / B-only / I-opened, overall
    and per label), relations per label, and images found / missing under ``image_dir``."""
    exs = res.examples
    st = res.stats
    out: dict[str, Any] = {"file": str(res.path) if res.path else None, "format": res.format,
                           "posts": len(exs), "tokens": sum(len(e.tokens) for e in exs)}
    labels = Counter(lab for e in exs for s in e.entities for lab in s.all_labels)
    i_by = st.get("i_opened_by_label", {})
    n_ent = sum(len(e.entities) for e in exs)
    if res.format == "mnre":
        out["instances"] = len(exs)
    else:
        n_i = int(st.get("i_opened_spans", 0))
        out["entities"] = n_ent
        out["entities_b_only"] = n_ent - n_i
        out["i_opened_spans"] = n_i
        out["entities_by_label"] = {
            lab: {"conll": n, "b_only": n - int(i_by.get(lab, 0)),
                  "i_opened": int(i_by.get(lab, 0))}
            for lab, n in sorted(labels.items())}
    rels = Counter(r.label for e in exs for r in e.relations)
    if rels:
        out["relations"] = sum(rels.values())
        out["relation_labels"] = len(rels)
        out["relations_by_label"] = dict(sorted(rels.items(), key=lambda kv: (-kv[1], kv[0])))
    for key in ("name_mismatch", "posts_without_image", "duplicate_image_ids", "split_words",
                "trimmed_mentions", "labels_fixed"):
        if st.get(key):
            out[key] = st[key]
    if st.get("name_mismatch_lines"):
        out["name_mismatch_lines"] = list(st["name_mismatch_lines"])
    out["images"] = _image_stats(exs, image_dir)
    return out


def _image_stats(exs, image_dir: str | Path | None) -> dict[str, Any] | str:
    if image_dir is None:
        return "not present"
    d = Path(image_dir)
    if not d.is_dir():
        return f"not present (expected in {d})"
    refs = [e.image for e in exs if e.image]
    missing = sum(1 for ref in refs if resolve_image(d, ref) is None)
    return {"dir": str(d), "referenced": len(refs), "found": len(refs) - missing,
            "missing": missing, "no_image_reference": len(exs) - len(refs)}


def dataset_stats(name_or_path: str | Path, data_dir: str | Path | None = None,
                  image_dir: str | Path | None = None, task: str | None = None) -> dict[str, Any]:
    """Counts of every split of a catalog data set, of a folder of split files
    (``train``/``valid``/``test``), or of one file. JSON-serialisable.

    ``image_dir`` overrides the catalog's image folder (the same folder for every split).
    """
    name = str(name_or_path)
    out: dict[str, Any] = {"name": name, "splits": {}}
    if name in catalog.DATASETS:
        info = catalog.get_info(name, task)
        root = catalog.data_dir(data_dir)
        out.update(task=info.task, format=info.format, data_dir=str(root))
        if not info.files:
            out["note"] = info.notes
            for key, rel in info.other_files.items():
                p = (root / info.root / rel) if info.root else root / rel
                out[key] = (sum(1 for ln in p.read_text("utf-8").splitlines() if ln.strip())
                            if p.is_file() else f"missing ({p})")
            return out
        for split in info.files:
            res = catalog.load_split(name, split, root, task)
            idir = image_dir if image_dir is not None else catalog.image_dir(name, split, root,
                                                                             task)
            out["splits"][split] = split_stats(res, idir)
        return out
    p = Path(name_or_path)
    if p.is_file():
        res = catalog.load_split(p, "", None, task)
        out["splits"][p.stem] = split_stats(res, image_dir)
        return out
    if p.is_dir():
        idir = image_dir if image_dir is not None else catalog.image_dir(str(p), "")
        for split in _FOLDER_SPLITS:
            try:
                res = catalog.load_split(p, split, None, task)
            except catalog.UnknownSplitError:
                continue
            out["splits"][split] = split_stats(res, idir)
        if not out["splits"]:
            raise DataError(f"no train/valid/test files found in {p}", path=p)
        return out
    catalog.get_info(name)  # raises: unknown data set
    return out


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    return [fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]]


def name_mismatch_where(split: dict[str, Any], show: int = 10) -> str:
    """`` (warning: ...) at FILE lines 3, 7`` for a split's name mismatches: a counted
    warning, not an error (the entity is its token span; the name is only a check)."""
    lines = split.get("name_mismatch_lines") or []
    where = ""
    if lines:
        shown = ", ".join(str(n) for n in lines[:show]) + (", ..." if len(lines) > show else "")
        where = f" at {split.get('file')} line{'s' if len(lines) > 1 else ''} {shown}"
    return (" (warning: an entity name differs from its token span; the span is used)"
            + where)


def format_stats(d: dict[str, Any]) -> str:
    """A plain-text report of :func:`dataset_stats`'s result: one table of splits, one of
    entities per label (CoNLL count, B-only, I-opened), one of relations per label."""
    head = d["name"]
    if d.get("task"):
        head += f" ({d['task']}, {d.get('format')})"
    if d.get("data_dir"):
        head += f"  data dir: {d['data_dir']}"
    lines = [head]
    if d.get("note"):
        lines.append(d["note"])
    for k, v in d.items():
        if k not in ("name", "task", "format", "data_dir", "note", "splits"):
            lines.append(f"{k}: {v}")
    splits = d.get("splits", {})
    if not splits:
        return "\n".join(lines)
    names = list(splits)
    is_re = any("instances" in s for s in splits.values())
    has_ent = any("entities" in s for s in splits.values())
    header = ["split", "posts" if not is_re else "instances", "tokens"]
    if has_ent:
        header += ["entities (CoNLL)", "B-only", "I-opened"]
    if is_re:
        header += ["relation labels"]
    header += ["images"]
    rows = []
    for n in names:
        s = splits[n]
        row: list[Any] = [n, s.get("instances", s["posts"]), s["tokens"]]
        if has_ent:
            row += [s.get("entities", "-"), s.get("entities_b_only", "-"),
                    s.get("i_opened_spans", "-")]
        if is_re:
            row += [s.get("relation_labels", 0)]
        img = s["images"]
        row.append(img if isinstance(img, str) else f"{img['found']}/{img['referenced']} found, "
                   f"{img['missing']} missing")
        rows.append(row)
    lines += [""] + _table(header, rows)
    if has_ent:
        labels = sorted({lab for s in splits.values() for lab in s.get("entities_by_label", {})})
        rows = []
        for lab in labels:
            row = [lab]
            for n in names:
                c = splits[n].get("entities_by_label", {}).get(lab)
                row.append("0" if c is None else
                           f"{c['conll']} ({c['b_only']} B + {c['i_opened']} I)")
            rows.append(row)
        lines += ["", "entities per label: CoNLL count (opened by B- + opened by I-)"]
        lines += _table(["label"] + names, rows)
    if is_re:
        labels = sorted({lab for s in splits.values() for lab in s.get("relations_by_label", {})},
                        key=lambda lab: (-sum(s.get("relations_by_label", {}).get(lab, 0)
                                              for s in splits.values()), lab))
        rows = [[lab] + [splits[n].get("relations_by_label", {}).get(lab, 0) for n in names]
                for lab in labels]
        lines += ["", "relations per label"] + _table(["relation"] + names, rows)
    notes = []
    for n in names:
        for key in ("name_mismatch", "posts_without_image", "duplicate_image_ids",
                    "split_words", "trimmed_mentions", "labels_fixed"):
            if not splits[n].get(key):
                continue
            note = f"{n}: {key.replace('_', ' ')} {splits[n][key]}"
            if key == "name_mismatch":
                note += name_mismatch_where(splits[n])
            notes.append(note)
    if notes:
        lines += [""] + notes
    return "\n".join(lines)

