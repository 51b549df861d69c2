"""The source pool: every chosen source picture, small, with its split and provenance.

The generator only ever reads a :class:`Pool`. Built from the cache (:func:`pool_from_items`),
each source picture is decoded, flattened onto white (cut-outs and logos have transparency),
shrunk to at most :data:`POOL_SIDE` pixels and stored as JPEG bytes; its dHash is computed
from those bytes. Near-duplicates (dHash within :data:`~mmie.data.photos.dhash.NEAR_DUPLICATE_BITS`
bits, joined transitively) form one cluster, and whole clusters are assigned to train / valid /
test (70 / 15 / 15 % of each category's pictures), so the three picture pools are disjoint by
sha256 and by near-duplicate check. The assignment depends on the pictures only, not on the
seed.

:func:`export_pool` writes it as ``DIR/pool.json`` + ``DIR/pics/<id>.jpg`` (a few MB);
:func:`load_pool` reads it back, checking each file's sha256: a missing, changed or
undecodable picture is skipped, named and counted. The split and the dHash are read from
``pool.json``, never recomputed, so a pool gives the same posts on any machine.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from PIL import Image

from mmie.data.photos.dhash import NEAR_DUPLICATE_BITS, dhash, pairwise_hamming
from mmie.data.photos.text import CATEGORIES
from mmie.errors import DataError

__all__ = ["PoolEntry", "Pool", "pool_from_items", "export_pool", "load_pool", "POOL_SIDE",
           "SPLIT_SHARES"]

POOL_SIDE = 160
POOL_QUALITY = 88
POOL_FORMAT = 1
SPLITS = ("train", "valid", "test")
SPLIT_SHARES = {"train": 0.70, "valid": 0.15, "test": 0.15}


@dataclass
class PoolEntry:
    id: str
    category: str
    split: str
    sha256: str
    """of the pool JPEG bytes"""
    dhash: str
    """128-bit difference hash, hex"""
    width: int
    height: int
    caption: str
    package: str
    path: str
    licence: str
    source_sha256: str
    """of the original file bytes inside the package (or the rendered PNG of a logo)"""
    cluster: int = -1

    @property
    def coarse(self) -> str:
        return CATEGORIES[self.category]


@dataclass
class Pool:
    entries: list[PoolEntry]
    data: dict[str, bytes]
    skipped: list[dict[str, str]] = field(default_factory=list)
    """pictures left out: {"picture", "reason"}"""
    duplicates: list[dict[str, str]] = field(default_factory=list)
    """exact duplicates dropped (same pool bytes as an earlier picture)"""

    def by_split(self) -> dict[str, dict[str, list[PoolEntry]]]:
        """``{split: {category: [entries in pool order]}}``."""
        out: dict[str, dict[str, list[PoolEntry]]] = {s: {c: [] for c in CATEGORIES}
                                                      for s in SPLITS}
        for e in self.entries:
            out[e.split][e.category].append(e)
        return out

    def image(self, entry_id: str) -> Image.Image:
        with Image.open(io.BytesIO(self.data[entry_id])) as im:
            return im.convert("RGB")

    def total_bytes(self) -> int:
        return sum(len(b) for b in self.data.values())


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _flatten(im: Image.Image) -> Image.Image:
    """RGB on white (transparent areas become white)."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


def _shrink(im: Image.Image, side: int) -> Image.Image:
    w, h = im.size
    s = side / max(w, h)
    if s < 1:
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
    return im


def encode_pool_picture(raw: bytes, side: int = POOL_SIDE,
                        quality: int = POOL_QUALITY) -> tuple[bytes, tuple[int, int]]:
    """Decode a source picture and re-encode it as a pool JPEG (raises on a corrupt one)."""
    with Image.open(io.BytesIO(raw)) as im:
        im.load()
        rgb = _shrink(_flatten(im), side)
    if min(rgb.size) < 8:
        raise ValueError(f"picture too small ({rgb.size[0]}x{rgb.size[1]})")
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), rgb.size


def _assign_splits(entries: list[PoolEntry]) -> None:
    """Cluster near-duplicates (union-find over dHash distance) and give each cluster a
    split: per category, clusters in a fixed order go to the split furthest below its share."""
    hashes = [int(e.dhash, 16) for e in entries]
    dist = pairwise_hamming(hashes)
    parent = list(range(len(entries)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    close = (dist <= NEAR_DUPLICATE_BITS)
    for i in range(len(entries)):
        for j in close[i, i + 1:].nonzero()[0]:
            a, b = find(i), find(i + 1 + int(j))
            if a != b:
                parent[max(a, b)] = min(a, b)
    clusters: dict[int, list[int]] = {}
    for i in range(len(entries)):
        clusters.setdefault(find(i), []).append(i)
    by_cat: dict[str, list[list[int]]] = {}
    for members in clusters.values():
        cats = [entries[i].category for i in members]
        main = max(sorted(set(cats)), key=cats.count)
        by_cat.setdefault(main, []).append(members)
    cid = 0
    for cat in sorted(by_cat):
        groups = sorted(by_cat[cat], key=lambda m: min(entries[i].sha256 for i in m))
        got = {s: 0 for s in SPLITS}
        for members in groups:
            total = sum(got.values()) + len(members)
            split = max(SPLITS, key=lambda s: SPLIT_SHARES[s] * total - got[s])
            got[split] += len(members)
            for i in members:
                entries[i].split = split
                entries[i].cluster = cid
            cid += 1


def pool_from_items(items: Iterable[Any], *, side: int = POOL_SIDE) -> Pool:
    """Build the pool from :class:`~mmie.data.photos.sources.SourceItem` s (in their order).
    A source picture that cannot be read or decoded is skipped and named in
    ``Pool.skipped``; an exact duplicate of an earlier one is dropped into
    ``Pool.duplicates``."""
    entries: list[PoolEntry] = []
    data: dict[str, bytes] = {}
    skipped: list[dict[str, str]] = []
    dups: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    counters: dict[str, int] = {}
    for it in items:
        try:
            raw = it.load()
            jpg, (w, h) = encode_pool_picture(raw, side)
        except DataError:
            raise
        except Exception as e:  # a corrupt picture: skipped, named, counted
            skipped.append({"picture": it.key, "reason": f"{type(e).__name__}: {e}"})
            continue
        sha = _sha(jpg)
        if sha in seen:
            dups.append({"picture": it.key, "same_as": seen[sha]})
            continue
        counters[it.category] = counters.get(it.category, 0) + 1
        pid = f"{it.category}{counters[it.category]:04d}"
        seen[sha] = pid
        with Image.open(io.BytesIO(jpg)) as im:
            dh = dhash(im.convert("RGB"))
        entries.append(PoolEntry(pid, it.category, "", sha, f"{dh:032x}", w, h, it.caption,
                                 it.package, it.path, it.licence, _sha(raw)))
        data[pid] = jpg
    _assign_splits(entries)
    return Pool(entries, data, skipped, dups)


def pool_subset(pool: Pool, per_category_split: int, *, side: int | None = None,
                exclude_licences: Sequence[str] = ()) -> Pool:
    """A small pool (e.g. the test fixture): the first ``per_category_split`` pictures of
    each category in each split, optionally shrunk further; splits and hashes are kept."""
    keep: list[PoolEntry] = []
    data: dict[str, bytes] = {}
    for split, cats in pool.by_split().items():
        for cat, ents in cats.items():
            ok = [e for e in ents if not any(x in e.licence for x in exclude_licences)]
            for e in ok[:per_category_split]:
                b = pool.data[e.id]
                ne = PoolEntry(**{k: v for k, v in asdict(e).items()})
                if side is not None:
                    b, (ne.width, ne.height) = encode_pool_picture(b, side)
                    ne.sha256 = _sha(b)
                keep.append(ne)
                data[e.id] = b
    return Pool(keep, data)


def export_pool(pool: Pool, out_dir: str | Path) -> dict[str, Any]:
    """Write ``pool.json`` and ``pics/<id>.jpg``; return a short report."""
    out = Path(out_dir)
    (out / "pics").mkdir(parents=True, exist_ok=True)
    for e in pool.entries:
        (out / "pics" / f"{e.id}.jpg").write_bytes(pool.data[e.id])
    doc = {"format": POOL_FORMAT, "near_duplicate_bits": NEAR_DUPLICATE_BITS,
           "split_shares": SPLIT_SHARES, "pictures": [asdict(e) for e in pool.entries],
           "skipped_at_build": pool.skipped, "duplicates_at_build": pool.duplicates}
    (out / "pool.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n",
                                   encoding="utf-8", newline="\n")
    return {"dir": str(out), "pictures": len(pool.entries), "bytes": pool.total_bytes()}


def load_pool(pool_dir: str | Path) -> Pool:
    """Read a pool written by :func:`export_pool` (no network, nothing fetched)."""
    d = Path(pool_dir)
    mf = d / "pool.json"
    if not mf.is_file():
        raise DataError("not a photo pool: pool.json is missing (write one with `mmie data "
                        "photos OUT --export-pool DIR`)", path=mf)
    try:
        doc = json.loads(mf.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg}", path=mf, line=e.lineno) from None
    if doc.get("format") != POOL_FORMAT:
        raise DataError(f"pool format {doc.get('format')!r}, expected {POOL_FORMAT}", path=mf,
                        field="format")
    entries, data, skipped = [], {}, []
    names = set(PoolEntry.__dataclass_fields__)
    for k, rec in enumerate(doc.get("pictures", [])):
        try:
            e = PoolEntry(**{n: rec[n] for n in names if n in rec})
            if e.category not in CATEGORIES or e.split not in SPLITS:
                raise KeyError(f"category {e.category!r} / split {e.split!r}")
        except (TypeError, KeyError) as err:
            raise DataError(f"bad picture record ({err})", path=mf,
                            field=f"pictures[{k}]") from None
        f = d / "pics" / f"{e.id}.jpg"
        if not f.is_file():
            skipped.append({"picture": str(f), "reason": "missing"})
            continue
        b = f.read_bytes()
        if _sha(b) != e.sha256:
            skipped.append({"picture": str(f), "reason": "sha256 differs from pool.json"})
            continue
        try:
            with Image.open(io.BytesIO(b)) as im:
                im.load()
        except Exception as err:
            skipped.append({"picture": str(f), "reason": f"undecodable: {err}"})
            continue
        entries.append(e)
        data[e.id] = b
    return Pool(entries, data, skipped + list(doc.get("skipped_at_build", [])),
                list(doc.get("duplicates_at_build", [])))
