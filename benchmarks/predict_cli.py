"""The user's path: wall time of ``mmie predict MODEL --input FILE`` as a whole command, with
the start-up measured as the same command on one ``--text`` post; writes a JSON file.

    python benchmarks/predict_cli.py runs/demo/model --posts posts.jsonl posts_img.jsonl \
        --repeat 2 --output results/speed/cpu_predict_cli.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--posts", nargs="+", type=Path, required=True, help="JSONL files")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--output", type=Path, default=Path("results/speed/cpu_predict_cli.json"))
    a = ap.parse_args()
    mmie = [sys.executable, "-m", "mmie", "predict", a.model]
    start = [wall(mmie + ["--text", "Jordan in Chicago"]) for _ in range(a.repeat)]
    s0 = statistics.median(start)
    rows = {"model": a.model, "threads": os.environ.get("OMP_NUM_THREADS"),
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "load_avg": os.getloadavg(), "startup_s": start, "files": []}
    with tempfile.TemporaryDirectory() as tmp:
        for f in a.posts:
            n = sum(1 for line in f.read_text(encoding="utf-8").splitlines() if line.strip())
            walls = [wall(mmie + ["--input", str(f), "--output", f"{tmp}/out.jsonl"])
                     for _ in range(a.repeat)]
            w = statistics.median(walls)
            rows["files"].append({"file": f.name, "posts": n, "wall_s": walls,
                                  "after_startup_s": w - s0,
                                  "posts_per_s": n / (w - s0) if w > s0 else None})
    print(json.dumps(rows, indent=1))
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
