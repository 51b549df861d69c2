"""Per-picture cost of turning new pictures into pixel values (CPU), for issue 20:
decode, each step of timm's eval transform, the batched ``preprocess`` against the transform
picture by picture (and their equality), and the image pool at 1 vs N threads.

    OMP_NUM_THREADS=2 python benchmarks/preprocess_speed.py --posts posts_img.jsonl \
        --output results/speed/cpu_preprocess.json

``--posts``: JSONL with an ``image`` path per line (e.g. the CLI benchmark's posts_img.jsonl).
Medians of ``--repeat`` passes; ms per picture.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch


def _ms_per_picture(fn, n: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--posts", type=Path, required=True)
    ap.add_argument("--pictures", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--output", type=Path, default=Path("results/speed/cpu_preprocess.json"))
    a = ap.parse_args()
    from mmie.data.images import load_image, load_images
    from mmie.encoders.vision import _to_rgb, build_vision_encoder

    enc = build_vision_encoder("efficientnet_lite0")
    paths = [json.loads(line)["image"] for line in a.posts.read_text().splitlines()
             if line.strip()]
    paths = (paths * (a.pictures // len(paths) + 1))[:a.pictures]
    n = len(paths)
    pils = [load_image(p) for p in paths]
    out: dict = {"pictures": n, "first_size": list(pils[0].size), "repeat": a.repeat,
                 "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                 "cpus": os.cpu_count(), "torch": torch.__version__,
                 "machine": platform.processor() or platform.machine(),
                 "load_avg_before": os.getloadavg(), "ms_per_picture": {}}
    ms = out["ms_per_picture"]
    os.environ["MMIE_IMAGE_WORKERS"] = "1"
    ms["decode (load_image)"] = _ms_per_picture(lambda: [load_image(p) for p in paths], n,
                                                a.repeat)
    x = pils
    for t in enc._transform.transforms:  # each step on the previous step's outputs
        prev = x
        ms[f"step {type(t).__name__}"] = _ms_per_picture(lambda: [t(i) for i in prev], n,
                                                         a.repeat)
        x = [t(i) for i in prev]
    per_picture = lambda: torch.stack([enc._transform(_to_rgb(i)) for i in pils])  # noqa: E731
    ms["transform picture by picture"] = _ms_per_picture(per_picture, n, a.repeat)
    ms["preprocess (batched ToTensor + Normalize), 1 thread"] = _ms_per_picture(
        lambda: enc.preprocess(pils), n, a.repeat)
    out["batched_equals_per_picture"] = bool(torch.equal(enc.preprocess(pils), per_picture()))
    for w in (1, a.workers):
        os.environ["MMIE_IMAGE_WORKERS"] = str(w)
        ms[f"load_images + preprocess, {w} thread(s)"] = _ms_per_picture(
            lambda: enc.preprocess(load_images(paths)), n, a.repeat)
    out["load_avg_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
