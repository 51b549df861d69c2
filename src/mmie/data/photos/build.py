"""Build the real-photo benchmark: ``mmie data photos OUT``.

Writes::

    OUT/photos_ner/{train,valid,test}.txt            CoNLL with IMGID: lines
    OUT/photos_re/{train,valid,test}.txt             MNRE dict lines (h, t, relation, img_id)
    OUT/photos_typing/{train,valid,test}.jsonl       MFIGER-style JSON lines
    OUT/photos_typing/types.json                     the 12 types: name, description, group
    OUT/<task>/<split>.subsets.jsonl                 {"id", "subsets": [...]} per post, in order
                                                     (id: the reader's example id)
    OUT/images/<post id>.jpg                         one picture per post (224 x 224)
    OUT/MANIFEST.json                                every picture's sources, licences, sha256
    OUT/summary.json                                 counts, shares, ceilings, pool, skipped

Always through the pool (:mod:`mmie.data.photos.pool`): from the cache the pool is built in
memory, from ``--pool DIR`` it is read; the same pool and seed give the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from mmie.data.photos import add_arguments, augment
from mmie.data.photos.ceiling import ner_ceiling, re_ceiling, typing_ceiling
from mmie.data.photos.dhash import NEAR_DUPLICATE_BITS, pairwise_hamming
from mmie.data.photos.pool import SPLITS, Pool, export_pool, load_pool, pool_from_items
from mmie.data.photos.posts import TAGS, Post, _Bag, gen_ner, gen_re, gen_typing, rng
from mmie.data.photos.text import (CATEGORIES, COARSE, NAMES, RELATIONS, TYPING_TYPES)
from mmie.errors import DataError

__all__ = ["build", "SIZES", "fixture_pool_dir", "add_arguments", "run_cli", "main"]

#: posts per split (train, valid, test) of each task
SIZES: dict[str, tuple[int, int, int]] = {"default": (6000, 1500, 1500),
                                          "small": (1200, 300, 300), "tiny": (48, 16, 16)}
TASK_DIRS = {"ner": "photos_ner", "re": "photos_re", "typing": "photos_typing"}


def fixture_pool_dir() -> Path:
    """The tiny pool the tests ship (``tests/fixtures/photos/pool`` of a source checkout)."""
    return Path(__file__).resolve().parents[4] / "tests" / "fixtures" / "photos" / "pool"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def _jsonl(rows: Sequence[Any]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _bio(p: Post) -> list[str]:
    tags = ["O"] * len(p.tokens)
    for m in p.mentions:
        tags[m.start] = f"B-{m.label}"
        for i in range(m.start + 1, m.end):
            tags[i] = f"I-{m.label}"
    return tags


def _ner_text(posts: Sequence[Post]) -> str:
    out = []
    for p in posts:
        out.append(f"IMGID:{p.id}")
        out.extend(f"{t}\t{g}" for t, g in zip(p.tokens, _bio(p)))
        out.append("")
    return "\n".join(out) + "\n"


def _re_text(posts: Sequence[Post]) -> str:
    lines = []
    for p in posts:
        h, t = p.mentions
        lines.append(repr({"token": p.tokens, "h": {"name": h.name, "pos": [h.start, h.end]},
                           "t": {"name": t.name, "pos": [t.start, t.end]},
                           "img_id": f"{p.id}.jpg", "relation": p.relation}))
    return "\n".join(lines) + "\n"


def _typing_text(posts: Sequence[Post]) -> str:
    return _jsonl([{"id": p.id, "tokens": p.tokens, "image": f"{p.id}.jpg",
                    "annotations": [{"mention_id": f"{p.id}_0", "labels": [m.label],
                                     "start": m.start, "end": m.end} for m in p.mentions]}
                   for p in posts])


def _check_pool(pool: Pool) -> None:
    by = pool.by_split()
    missing = [f"{c}/{s}" for s in SPLITS for c in CATEGORIES if not by[s][c]]
    if missing:
        raise DataError(f"the picture pool has no picture for {', '.join(missing)} "
                        f"(category/split); {len(pool.entries)} pictures, "
                        f"{len(pool.skipped)} skipped")


class _Painter:
    """Picks pool pictures for one split's panels and renders the post pictures."""

    def __init__(self, pool: Pool, split: str, g, decoded: dict[str, Image.Image]):
        self.pool, self.g, self.decoded = pool, g, decoded
        by = pool.by_split()[split]
        self.cat_bags = {t: _Bag([c for c in CATEGORIES if CATEGORIES[c] == t], g)
                         for t in COARSE}
        self.pic_bags = {c: _Bag([e.id for e in by[c]], g) for c in CATEGORIES}

    def _image(self, pid: str) -> Image.Image:
        if pid not in self.decoded:
            self.decoded[pid] = self.pool.image(pid)
        return self.decoded[pid]

    def paint(self, post: Post) -> tuple[bytes, list[str], list[str]]:
        cats = [self.cat_bags[v].draw() if kind == "coarse" else v for kind, v in post.panels]
        ids = [self.pic_bags[c].draw() for c in cats]
        img = augment.compose([self._image(i) for i in ids], self.g)
        return augment.encode(img, self.g), ids, cats


def _tag_counts(posts: Sequence[Post]) -> dict[str, Any]:
    c = Counter(t for p in posts for t in p.tags)
    n = len(posts)
    return {t: {"posts": c[t], "share": round(c[t] / n, 4)} for t in TAGS}


def _ner_stats(posts: Sequence[Post]) -> dict[str, Any]:
    ms = [m for p in posts for m in p.mentions]
    seen_types: dict[str, set[str]] = {}
    for m in ms:
        seen_types.setdefault(m.name, set()).add(m.label)
    return {"posts": len(posts), "mentions": len(ms),
            "mentions_picture_decides": sum(m.cue is None for m in ms),
            "share_mentions_picture_decides": round(sum(m.cue is None for m in ms) / len(ms), 4),
            "mentions_by_type": dict(sorted(Counter(m.label for m in ms).items())),
            "names_seen_with_2plus_types": sum(len(v) >= 2 for v in seen_types.values()),
            "two_mention_posts_with_different_types": sum(
                len(p.mentions) == 2 and p.mentions[0].label != p.mentions[1].label
                for p in posts),
            "subsets": _tag_counts(posts)}


def _re_stats(posts: Sequence[Post]) -> dict[str, Any]:
    n = len(posts)
    pic = sum("picture_decides" in p.tags for p in posts)
    return {"instances": n, "picture_decides": pic,
            "share_picture_decides": round(pic / n, 4),
            "relations": dict(sorted(Counter(p.relation for p in posts).items())),
            "subsets": _tag_counts(posts)}


def _typing_stats(posts: Sequence[Post]) -> dict[str, Any]:
    groups = {t["name"]: t["group"] for t in TYPING_TYPES}
    return {"posts": len(posts),
            "types": dict(sorted(Counter(p.mentions[0].label for p in posts).items())),
            "groups": dict(sorted(Counter(f"group_{groups[p.mentions[0].label]}"
                                          for p in posts).items())),
            "subsets": _tag_counts(posts)}


def _pool_stats(pool: Pool, used: set[str]) -> dict[str, Any]:
    ents = [e for e in pool.entries if e.id in used]
    by = Counter((e.category, e.split) for e in ents)
    hashes = [int(e.dhash, 16) for e in ents]
    dist = pairwise_hamming(hashes)
    cross = 0
    min_cross = 128
    splits = [e.split for e in ents]
    for i in range(len(ents)):
        for j in range(i + 1, len(ents)):
            if splits[i] != splits[j]:
                d = int(dist[i, j])
                min_cross = min(min_cross, d)
                cross += d <= NEAR_DUPLICATE_BITS
    shas: dict[str, set[str]] = {s: {e.sha256 for e in ents if e.split == s} for s in SPLITS}
    sha_overlap = sum(len(shas[a] & shas[b]) for i, a in enumerate(SPLITS)
                      for b in SPLITS[i + 1:])
    src: dict[str, set[str]] = {s: {e.source_sha256 for e in ents if e.split == s}
                                for s in SPLITS}
    src_overlap = sum(len(src[a] & src[b]) for i, a in enumerate(SPLITS)
                      for b in SPLITS[i + 1:])
    return {"pictures_in_pool": len(pool.entries), "distinct_source_pictures_used": len(ents),
            "pool_bytes": pool.total_bytes(),
            "by_category": {c: {s: by[(c, s)] for s in SPLITS} for c in CATEGORIES},
            "by_package": dict(sorted(Counter(e.package for e in ents).items())),
            "licences": {k: sorted(v) for k, v in sorted(_licences(ents).items())},
            "near_duplicate_bits": NEAR_DUPLICATE_BITS,
            "near_duplicate_clusters": len({e.cluster for e in ents}),
            "cross_split_near_duplicate_pairs": cross,
            "min_cross_split_dhash_distance": min_cross,
            "cross_split_sha256_overlap": sha_overlap + src_overlap}


def _licences(ents) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for e in ents:
        out.setdefault(e.package, set()).add(e.licence)
    return out


def _get_pool(size: str, cache: str | Path | None, pool_dir: str | Path | None) -> Pool:
    if pool_dir is not None:
        return load_pool(pool_dir)
    if size == "tiny" and cache is None:
        fx = fixture_pool_dir()
        if not (fx / "pool.json").is_file():
            raise DataError("--size tiny builds from the test fixture pool, which is not "
                            "here; give --pool DIR (a pool written with --export-pool) or "
                            "--cache DIR", path=fx)
        return load_pool(fx)
    from mmie.data.photos.sources import default_cache, list_items

    return pool_from_items(list_items(Path(cache) if cache else default_cache()))


def build(out_dir: str | Path, *, size: str = "default", seed: int = 0,
          cache: str | Path | None = None, pool: str | Path | Pool | None = None,
          export_pool_dir: str | Path | None = None,
          sizes: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """Build the benchmark into ``out_dir`` and return its summary (plus ``seconds``).

    ``pool``: a pool folder (or a :class:`Pool`); otherwise the pool is built from the
    sources in ``cache`` (fetched when absent), or, for ``size="tiny"`` without a cache, from
    the test fixture pool. ``export_pool_dir`` also writes the pool there."""
    t0 = time.perf_counter()
    if size not in SIZES:
        raise DataError(f"unknown size {size!r}; expected one of {', '.join(SIZES)}",
                        field="size")
    n = dict(zip(SPLITS, sizes or SIZES[size]))
    the_pool = pool if isinstance(pool, Pool) else _get_pool(size, cache, pool)
    if export_pool_dir is not None:
        export_pool(the_pool, export_pool_dir)
    _check_pool(the_pool)
    out = Path(out_dir)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    decoded: dict[str, Image.Image] = {}
    seen_bytes: dict[str, str] = {}
    rerolls = 0
    used: set[str] = set()
    pictures: dict[str, Any] = {}
    counts: dict[str, dict[str, Any]] = {t: {} for t in TASK_DIRS}
    ceilings: dict[str, dict[str, Any]] = {t: {} for t in TASK_DIRS}
    gens = {"ner": gen_ner, "re": gen_re, "typing": gen_typing}
    writers = {"ner": _ner_text, "re": _re_text, "typing": _typing_text}
    ceil = {"ner": ner_ceiling, "re": re_ceiling, "typing": typing_ceiling}
    stats = {"ner": _ner_stats, "re": _re_stats, "typing": _typing_stats}
    ext = {"ner": ".txt", "re": ".txt", "typing": ".jsonl"}
    for ti, task in enumerate(TASK_DIRS):
        tdir = out / TASK_DIRS[task]
        for si, split in enumerate(SPLITS):
            posts = gens[task](seed, si, split, n[split])
            painter = _Painter(the_pool, split, rng(seed, ti, si, 1), decoded)
            for p in posts:
                data, ids, cats = painter.paint(p)
                sha = hashlib.sha256(data).hexdigest()
                while sha in seen_bytes:  # never observed; kept so the property is exact
                    rerolls += 1
                    data, ids, cats = painter.paint(p)
                    sha = hashlib.sha256(data).hexdigest()
                seen_bytes[sha] = p.id
                used.update(ids)
                (img_dir / f"{p.id}.jpg").write_bytes(data)
                pictures[f"images/{p.id}.jpg"] = {"sha256": sha, "sources": ids,
                                                  "categories": cats,
                                                  "layout": "single" if len(ids) == 1 else
                                                  f"collage_{len(ids)}_left_to_right"}
            _write(tdir / f"{split}{ext[task]}", writers[task](posts))
            # ids as the readers give them: IMGID (NER), the post id (typing), and for RE
            # the MNRE reader's instance id "<file stem>-<index>"
            ids_out = ([f"{split}-{k}" for k in range(len(posts))] if task == "re"
                       else [p.id for p in posts])
            _write(tdir / f"{split}.subsets.jsonl",
                   _jsonl([{"id": i, "subsets": p.tags} for i, p in zip(ids_out, posts)]))
            counts[task][split] = stats[task](posts)
            ceilings[task][split] = ceil[task](posts)
    _write(out / TASK_DIRS["typing"] / "types.json",
           json.dumps(TYPING_TYPES, indent=2, ensure_ascii=False) + "\n")
    sources = {e.id: {"package": e.package, "path": e.path, "licence": e.licence,
                      "category": e.category, "coarse_type": e.coarse, "split": e.split,
                      "caption": e.caption, "source_sha256": e.source_sha256,
                      "pool_sha256": e.sha256, "dhash": e.dhash}
               for e in the_pool.entries if e.id in used}
    manifest = {"about": "every picture under images/: the pool pictures it is made of "
                         "(left to right) and their sources (package==version, path "
                         "inside it, licence, category, sha256)",
                "sources": sources, "pictures": pictures}
    _write(out / "MANIFEST.json", json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    summary: dict[str, Any] = {
        "seed": seed, "size": size, "posts_per_split": n, "image_size": augment.SIZE,
        "counts": counts, "text_only_ceiling": ceilings,
        "chance": {"ner_type_of_neutral_mention_by_name": round(
                       sum(1 / len(s) for s in NAMES.values()) / len(NAMES), 4),
                   "re_relation_uniform": round(1 / len(RELATIONS), 4),
                   "typing_zero_shot_within_group": 0.25,
                   "typing_generalized_all_12": round(1 / 12, 4)},
        "names": {"total": len(NAMES),
                  "with_2plus_types": sum(len(s) >= 2 for s in NAMES.values()),
                  "by_type_count": dict(sorted(Counter(len(s) for s in NAMES.values())
                                               .items()))},
        "relations": list(RELATIONS),
        "typing_types": len(TYPING_TYPES),
        "layout": "collage: one picture per mention in vertical strips, left to right in "
                  "the order the mentions appear in the text (two mentions: left half, "
                  "right half); RE: head and tail pictures in text order",
        "pool": _pool_stats(the_pool, used),
        "pictures": {"written": len(pictures), "distinct_bytes": len(seen_bytes),
                     "rerolls_for_identical_bytes": rerolls},
        "skipped_source_pictures": {"count": len(the_pool.skipped),
                                    "pictures": the_pool.skipped},
        "duplicate_source_pictures": {"count": len(the_pool.duplicates),
                                      "pictures": the_pool.duplicates},
    }
    _write(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    return summary


# --------------------------------------------------------------------------------------------
def run_cli(a: argparse.Namespace) -> int:
    try:
        s = build(a.output_dir, size=a.size, seed=a.seed, cache=a.cache, pool=a.pool,
                  export_pool_dir=a.export_pool)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    brief = {"output_dir": a.output_dir, "seconds": s["seconds"],
             "posts_per_split": s["posts_per_split"],
             "text_only_ceiling": s["text_only_ceiling"],
             "pool": {k: s["pool"][k] for k in ("pictures_in_pool",
                                                "distinct_source_pictures_used",
                                                "pool_bytes",
                                                "cross_split_near_duplicate_pairs")},
             "skipped_source_pictures": s["skipped_source_pictures"]["count"]}
    print(json.dumps(brief, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mmie.data.photos.build",
                                 description="Build the real-photo benchmark.")
    add_arguments(ap)
    return run_cli(ap.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
