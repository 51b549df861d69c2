"""The synthetic data set's files: :func:`generate` writes the posts of
:mod:`mmie.data.synthetic.generator` in the real data sets' own formats::

    OUT_DIR/ner/{train,valid,test}.txt        CoNLL: IMGID:<id>, token<TAB>BIO tag, blank line
    OUT_DIR/re/mnre_{train,val,test}.txt      MNRE: one Python-literal dict per line
    OUT_DIR/typing/{train,valid,test}.jsonl   MFIGER-style JSON lines (zero-shot typing)
    OUT_DIR/typing/types.json                 the 12 types: name, description, group, attributes
    OUT_DIR/images/<id>.png                   one picture per post
    OUT_DIR/summary.json                      counts, ceilings and chance levels

The files are read back by :mod:`mmie.data.readers` like the real data sets.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mmie.data.synthetic.generator import (NER_CUES, RE_CUES, RE_LABELS, RE_SPLIT_FILE, SPLITS,
                                           TYPING_TYPES, Post, gen_ner, gen_re, gen_typing,
                                           ner_text_only_ceiling, post_rng, re_text_only_ceiling,
                                           render)
from mmie.errors import DataError

__all__ = ["generate", "conll_text", "mnre_text", "typing_text"]


def _bio(n: int, spans: Sequence[tuple[int, int]], labels: Sequence[str]) -> list[str]:
    tags = ["O"] * n
    for (s, e), lab in zip(spans, labels):
        tags[s] = f"B-{lab}"
        for i in range(s + 1, e):
            tags[i] = f"I-{lab}"
    return tags


def conll_text(posts: Sequence[Post]) -> str:
    """NER posts as Twitter-2015 CoNLL: ``IMGID:<id>``, ``token<TAB>tag`` lines, a blank line."""
    out: list[str] = []
    for p in posts:
        out.append(f"IMGID:{p.id}")
        out.extend(f"{t}\t{g}" for t, g in zip(p.tokens, _bio(len(p.tokens), p.spans, p.labels)))
        out.append("")
    return "\n".join(out) + "\n"


def mnre_text(posts: Sequence[Post]) -> str:
    """RE posts as MNRE lines: one Python-literal dict (token, h, t, img_id, relation) each."""
    lines = []
    for p in posts:
        (hs, he), (ts, te) = p.spans
        d = {"token": p.tokens, "h": {"name": p.names[0], "pos": [hs, he]},
             "t": {"name": p.names[1], "pos": [ts, te]}, "img_id": f"{p.id}.png",
             "relation": p.labels[0]}
        lines.append(repr(d))
    return "\n".join(lines) + "\n"


def typing_text(posts: Sequence[Post]) -> str:
    """Typing posts as MFIGER-style JSON lines (one annotated mention each)."""
    lines = []
    for p in posts:
        (s, e), = p.spans
        d = {"id": p.id, "tokens": p.tokens, "image": f"{p.id}.png",
             "annotations": [{"mention_id": f"{p.id}_0", "labels": [p.labels[0]], "start": s,
                              "end": e}]}
        lines.append(json.dumps(d, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")


def _write_pictures(rng: np.random.Generator, size: int, img_dir: Path,
                    posts: Sequence[Post]) -> None:
    """Render and save the pictures of one split from its own random stream, so that the text
    files do not depend on whether pictures are written."""
    for p in posts:
        buf = io.BytesIO()
        render(rng, size, p.cues).save(buf, format="PNG", compress_level=1)
        (img_dir / f"{p.id}.png").write_bytes(buf.getvalue())


def generate(out_dir: str | Path, *, seed: int = 0, n_train: int = 600, n_valid: int = 150,
             n_test: int = 150, image_size: int = 128, images: bool = True) -> dict[str, Any]:
    """Write the synthetic data set to ``out_dir`` (see the module docstring) and return a
    summary: counts per task and split, text-only ceilings per split, chance levels, time.

    Every one of the three tasks gets ``n_train`` / ``n_valid`` / ``n_test`` posts per split.
    ``images=False`` skips the pictures (the text files come out the same). Existing files of
    the same names are overwritten; nothing else is removed.
    """
    t0 = time.perf_counter()
    sizes = {"train": n_train, "valid": n_valid, "test": n_test}
    for k, v in sizes.items():
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise DataError(f"n_{k} must be a positive integer, got {v!r}", field=f"n_{k}")
    if not isinstance(image_size, (int, np.integer)) or image_size < 32:
        raise DataError(f"image_size must be an integer >= 32, got {image_size!r}",
                        field="image_size")
    out = Path(out_dir)
    dirs = {name: out / name for name in ("ner", "re", "typing", "images")}
    for name, p in dirs.items():
        if images or name != "images":
            p.mkdir(parents=True, exist_ok=True)

    def pictures(task: int, split: int, posts: Sequence[Post]) -> None:
        if images:
            _write_pictures(post_rng(seed, task, split, 1), image_size, dirs["images"], posts)

    counts: dict[str, dict[str, Any]] = {"ner": {}, "re": {}, "typing": {}}
    ceilings: dict[str, dict[str, float]] = {"ner_f1": {}, "re_accuracy": {}, "re_f1": {}}
    pooled: dict[str, float] = {}
    for si, split in enumerate(SPLITS):
        posts, st = gen_ner(post_rng(seed, 0, si, 0), sizes[split], split)
        pictures(0, si, posts)
        _write(dirs["ner"] / f"{split}.txt", conll_text(posts))
        counts["ner"][split] = st
        ceilings["ner_f1"][split] = ner_text_only_ceiling([p.example("ner") for p in posts])
        # A pooled image vector tells which types are present but not where: in a post with
        # two neutral mentions of different types it can only guess the assignment (1/2).
        pooled[split] = 1.0 - st.get("two_ambiguous_mention_posts", 0) / st["entities"]

        posts, st = gen_re(post_rng(seed, 1, si, 0), sizes[split], split)
        pictures(1, si, posts)
        _write(dirs["re"] / f"mnre_{RE_SPLIT_FILE[split]}.txt", mnre_text(posts))
        counts["re"][split] = st
        exs = [p.example("re") for p in posts]
        ceilings["re_accuracy"][split] = re_text_only_ceiling(exs, metric="accuracy")
        ceilings["re_f1"][split] = re_text_only_ceiling(exs, metric="f1")

        posts, st = gen_typing(post_rng(seed, 2, si, 0), sizes[split], split)
        pictures(2, si, posts)
        _write(dirs["typing"] / f"{split}.jsonl", typing_text(posts))
        counts["typing"][split] = st
    _write(dirs["typing"] / "types.json",
           json.dumps(TYPING_TYPES, indent=2, ensure_ascii=False) + "\n")

    summary: dict[str, Any] = {
        "seed": seed, "image_size": image_size, "sizes": sizes, "counts": counts,
        "text_only_ceiling": ceilings,
        "pooled_image_ceiling_ner_f1": pooled,
        "chance": {"typing_zero_shot_within_group": 0.25, "typing_generalized_all_12": 1 / 12,
                   "ner_type_of_ambiguous_mention": 0.25,
                   "re_relation_of_ambiguous_instance": 1 / len(RE_LABELS)},
        "cues": {"ner": NER_CUES, "re": RE_CUES,
                 "regions": "two mentions: first (text order) left half, second right half; "
                            "one mention: a random half"},
        "images": sum(sizes.values()) * 3 if images else 0,
    }
    _write(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary
