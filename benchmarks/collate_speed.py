"""Batch building (tokenisation, word alignment, padding, gold tags) throughput, posts/s.

    python benchmarks/collate_speed.py [--data twitter2015] [--posts 2048] [--batch-size 256]
        [--token-cache]

Runs the training collate of the text-only NER task over the first ``--posts`` training posts
in batches, three times, and prints the best posts/s (one CPU core does this work in the
training and prediction loops; on the GPU it was about half the time of a b256 prediction step).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="twitter2015")
    ap.add_argument("--posts", type=int, default=2048)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--token-cache", action="store_true",
                    help="the training loader's collate (TokenCache), timed after one untimed "
                         "pass has filled the cache: what every epoch after the first costs")
    a = ap.parse_args(argv)

    from mmie.config import load_config
    from mmie.training.data import Collator, load_examples
    from mmie.registry import new_task
    from mmie.training.train import build_encoders

    cfg = load_config(None, [f"data.name={a.data}", "model.type=text", "model.task=ner"])
    train = load_examples(cfg, "train")[:a.posts]
    task = new_task(cfg, {"train": train})
    text, _ = build_encoders(cfg, False)
    collate = Collator(task, text, cfg.data.max_length, None, phase="train",
                       cache_tokens=a.token_cache)
    items = [(i, ex, -1) for i, ex in enumerate(train)]
    collate(items[:a.batch_size])  # warm-up
    if a.token_cache:
        for k in range(0, len(items), a.batch_size):
            collate(items[k:k + a.batch_size])
    best = 0.0
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        for k in range(0, len(items), a.batch_size):
            collate(items[k:k + a.batch_size])
        best = max(best, len(items) / (time.perf_counter() - t0))
    print(f"collate{' (token cache filled)' if a.token_cache else ''}: {len(items)} {a.data} "
          f"posts, batch {a.batch_size}: {best:.0f} posts/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
