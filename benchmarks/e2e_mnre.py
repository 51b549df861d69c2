"""End-to-end relation extraction on MNRE: raw post -> NER -> RE, scored against MNRE.

MNRE gives one instance per (post, head, tail) pair. Instances of one post (same tokens and
image id) are grouped: the gold entities are the post's unique mention spans, the gold
relations its non-``None`` (head span, tail span, label) triples. The pipeline runs on the
post's tokens joined by single spaces (re-split by ``split_words``); predicted character spans
are mapped back to MNRE token spans (the tokens they cover).

Reported:

* end-to-end relation micro P/R/F1: a predicted relation is correct when its head span, tail
  span (exact token spans) and label all match a gold relation;
* NER span P/R/F1 against the MNRE mentions (untyped: MNRE mentions carry no types, so type
  constraints use the NER model's predicted types);
* ``unannotated``: predicted relations between pairs MNRE did not annotate at all (neither
  direction, ``None`` included) -- not necessarily wrong, MNRE annotates only some pairs.

    python benchmarks/e2e_mnre.py --ner runs/ner/model --re runs/re/model \
        --output results/e2e_mnre.json [--data-dir ../shared/data] [--image-dir img_org/test]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

TokSpan = tuple[int, int]


@dataclass
class Post:
    """One MNRE post with all its annotated pairs."""

    tokens: list[str]
    image: str
    entities: list[TokSpan] = field(default_factory=list)
    #: non-None gold relations (head span, tail span, label)
    relations: set[tuple[TokSpan, TokSpan, str]] = field(default_factory=set)
    #: every annotated ordered pair, None included
    annotated: set[tuple[TokSpan, TokSpan]] = field(default_factory=set)


def group_posts(examples: Iterable[Any]) -> list[Post]:
    """Group MNRE instances (``Example`` with entities [head, tail] and one relation) by
    (tokens, image id), in order of first appearance."""
    posts: dict[tuple[tuple[str, ...], str], Post] = {}
    for ex in examples:
        key = (tuple(ex.tokens), ex.image or "")
        post = posts.setdefault(key, Post(list(ex.tokens), ex.image or ""))
        h, t = ex.head, ex.tail
        hs, ts = (h.start, h.end), (t.start, t.end)
        for s in (hs, ts):
            if s not in post.entities:
                post.entities.append(s)
        post.annotated.add((hs, ts))
        if ex.relation != "None":
            post.relations.add((hs, ts, ex.relation))
    return list(posts.values())


def token_char_offsets(tokens: Sequence[str]) -> list[TokSpan]:
    """Character offsets of each token in ``" ".join(tokens)``."""
    out, pos = [], 0
    for tok in tokens:
        out.append((pos, pos + len(tok)))
        pos += len(tok) + 1
    return out


def char_to_token_span(start: int, end: int, offsets: Sequence[TokSpan]) -> TokSpan | None:
    """The tokens a character span ``[start, end)`` covers (``None`` if it covers none)."""
    idx = [i for i, (s, e) in enumerate(offsets) if s < end and e > start]
    return (idx[0], idx[-1] + 1) if idx else None


def prf(tp: int, n_pred: int, n_gold: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "tp": tp, "n_pred": n_pred, "n_gold": n_gold}


def score(posts: Sequence[Post], outputs: Sequence[dict]) -> dict[str, Any]:
    """Compare pipeline outputs (on ``" ".join(tokens)``) with the grouped gold posts."""
    e_tp = e_pred = e_gold = r_tp = r_pred = r_gold = unannotated = off_gold = 0
    for post, out in zip(posts, outputs):
        offs = token_char_offsets(post.tokens)
        spans = [char_to_token_span(e["start"], e["end"], offs) for e in out["entities"]]
        pred_ents = {s for s in spans if s is not None}
        gold_ents = set(post.entities)
        e_tp += len(pred_ents & gold_ents)
        e_pred += len(pred_ents)
        e_gold += len(gold_ents)
        pred_rels = set()
        for r in out["relations"]:
            h, t = spans[r["head"]], spans[r["tail"]]
            if h is None or t is None:
                continue
            pred_rels.add((h, t, r["label"]))
        for h, t, _ in pred_rels:
            if (h, t) not in post.annotated and (t, h) not in post.annotated:
                unannotated += 1
                if h not in gold_ents or t not in gold_ents:
                    off_gold += 1
        r_tp += len(pred_rels & post.relations)
        r_pred += len(pred_rels)
        r_gold += len(post.relations)
    return {"relations": prf(r_tp, r_pred, r_gold), "ner_spans": prf(e_tp, e_pred, e_gold),
            "unannotated": unannotated, "unannotated_non_gold_mention": off_gold,
            "posts": len(posts)}


def find_image(image_dir: Path | None, img_id: str) -> Path | None:
    if image_dir is None:
        return None
    for p in (image_dir / img_id, image_dir / "test" / img_id):
        if p.is_file():
            return p
    return None


def default_data_dir() -> Path:
    env = os.environ.get("MMIE_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ner", required=True, help="NER model directory")
    ap.add_argument("--re", required=True, help="RE model directory")
    ap.add_argument("--data-dir", type=Path, default=None,
                    help="data root holding mnre/mnre_test.txt (default: $MMIE_DATA or "
                         "<repo>/../shared/data)")
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--image-dir", type=Path, default=None,
                    help="folder of MNRE pictures (img_org/test); without it posts run text-only")
    ap.add_argument("--no-type-constraints", action="store_true")
    ap.add_argument("--limit", type=int, default=None, help="first N posts only")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--output", type=Path, default=None, help="write the JSON result here")
    a = ap.parse_args(argv)

    import mmie
    from mmie.data.readers import read_mnre

    data_dir = a.data_dir or default_data_dir()
    path = data_dir / "mnre" / f"mnre_{a.split}.txt"
    posts = group_posts(read_mnre(path).examples)
    if a.limit:
        posts = posts[:a.limit]
    pipe = mmie.pipeline(ner=a.ner, re=a.re, type_constraints=not a.no_type_constraints,
                         device=a.device)
    items, with_image = [], 0
    for post in posts:
        img = find_image(a.image_dir, post.image)
        with_image += img is not None
        items.append({"text": " ".join(post.tokens), "image": str(img) if img else None})
    t0 = time.perf_counter()
    outputs = pipe.extract_batch(items, progress=True)
    seconds = time.perf_counter() - t0
    res = {"data": str(path), "split": a.split, "ner_model": str(a.ner), "re_model": str(a.re),
           "type_constraints": not a.no_type_constraints, "posts_with_image": with_image,
           "seconds": round(seconds, 2), **score(posts, outputs)}
    if a.output:
        a.output.parent.mkdir(parents=True, exist_ok=True)
        a.output.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    r, e = res["relations"], res["ner_spans"]
    print("| NER | RE | posts | images | NER P/R/F1 | E2E RE P/R/F1 | unannotated | s |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {a.ner} | {a.re} | {res['posts']} | {with_image} | "
          f"{e['precision']:.3f}/{e['recall']:.3f}/{e['f1']:.3f} | "
          f"{r['precision']:.3f}/{r['recall']:.3f}/{r['f1']:.3f} | {res['unannotated']} | "
          f"{seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
