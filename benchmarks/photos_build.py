"""Build time of the photo benchmark (`mmie data photos`), from a pool or from the cache.

    python benchmarks/photos_build.py --pool /work/photos_pool --size default \
        --out results/photos_build_cpu.json

Prints and writes wall and CPU seconds (the pool step separately when building from the
cache), the machine's core count and load, and the build's headline numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", help="exported pool (default: build from --cache)")
    ap.add_argument("--cache", help="source cache (default ~/.cache/mmie/photos)")
    ap.add_argument("--size", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/photos_build_cpu.json")
    a = ap.parse_args()
    from mmie.data.photos.build import build
    from mmie.data.photos.pool import load_pool, pool_from_items

    load0 = os.getloadavg()[0]
    w0, c0 = time.perf_counter(), time.process_time()
    if a.pool:
        pool = load_pool(a.pool)
    else:
        from mmie.data.photos.sources import default_cache, list_items

        pool = pool_from_items(list_items(Path(a.cache) if a.cache else default_cache()))
    w1, c1 = time.perf_counter(), time.process_time()
    tmp = Path(tempfile.mkdtemp(prefix="photos-bench-"))
    try:
        s = build(tmp / "out", size=a.size, seed=a.seed, pool=pool)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    w2, c2 = time.perf_counter(), time.process_time()
    row = {"size": a.size, "seed": a.seed, "source": "pool" if a.pool else "cache",
           "pool_wall_s": round(w1 - w0, 2), "pool_cpu_s": round(c1 - c0, 2),
           "build_wall_s": round(w2 - w1, 2), "build_cpu_s": round(c2 - c1, 2),
           "total_wall_s": round(w2 - w0, 2), "pictures_written": s["pictures"]["written"],
           "pool_pictures": s["pool"]["pictures_in_pool"], "pool_bytes": s["pool"]["pool_bytes"],
           "ner_test_text_only_f1": round(s["text_only_ceiling"]["ner"]["test"]["entity_f1"], 4),
           "cores": os.cpu_count(), "load_before": round(load0, 2),
           "load_after": round(os.getloadavg()[0], 2), "python": platform.python_version(),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    print(json.dumps(row, indent=2))
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(row, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
