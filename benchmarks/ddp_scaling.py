"""DDP scaling (issue 21): the same recipe trained with 1, 2 (and 4) processes, one after the
other in one call, through the real CLI (``python -m mmie train CONFIG --devices N --strategy
ddp``). Every run uses ``--strategy ddp`` (also N=1), the same per-device batch and the same
number of epochs; N processes therefore make 1/N of the optimizer steps per epoch.

Per run it reads the run's summary.json and reports: optimizer steps/s and posts/s of the
training loop alone (``timing.train_loop_seconds``: fit time minus the dev evaluations inside
it), the evaluation time apart, the efficiency ``posts/s(N) / (N x posts/s(1))`` and the dev /
test F1; the feature-cache hits / misses each rank logged (rank 0 computes the picture
features before the other ranks start; they read the cache).

    # CPU (gloo, tiny random encoders, synthetic set; a couple of minutes on 2 cores)
    python benchmarks/ddp_scaling.py --cpu --out results/ddp/cpu_gloo_synthetic.json
    # GPU machine with 2 (or 4: --gpus 4) GPUs, after `source device/env.sh`
    python3 benchmarks/ddp_scaling.py --config configs/mmib_twitter2015.yaml --gpus 2 \\
        --epochs 2 --out results/ddp/h200x2_twitter2015.json --set trainer.deterministic=false
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CPU_SETS = ["data.name=synthetic", "data.synthetic_size=400", "data.max_length=48",
            "data.limit_train=320", "data.limit_eval=40", "model.type=mmib", "model.task=ner",
            "model.text_encoder=random:tiny-bert", "model.vision_encoder=random:tiny-resnet",
            "trainer.batch_size=8", "trainer.eval_batch_size=20", "trainer.patience=50",
            # emissions at head_lr and larger rates: the tiny model then predicts spans
            "trainer.crf_lr_emissions=false", "trainer.lr=1e-3", "trainer.head_lr=3e-3"]
CACHE_RE = re.compile(r"'feature_cache': \{'hits': (\d+), 'misses': (\d+)\}")


def run_one(a, n: int, work: Path) -> dict:
    out = work / f"run_{n}"
    cache = Path(a.cache_dir) if a.cache_dir else work / f"cache_{n}"
    sets = (CPU_SETS if a.cpu else []) + [
        f"trainer.max_epochs={a.epochs}", "trainer.progress=false",
        f"output_dir={out}", f"cache_dir={cache}"] + a.set
    if a.lr_scale:
        sets.append("trainer.lr_scale_with_world_size=true")
    cmd = [sys.executable, "-m", "mmie", "-v", "train"] + ([a.config] if a.config else []) + [
        "--devices", str(n), "--strategy", "ddp",
        "--accelerator", "cpu" if a.cpu else a.accelerator]
    cmd += [x for kv in sets for x in ("--set", kv)]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    t = time.perf_counter()
    try:
        r = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True,
                           timeout=a.timeout)
        rc, err = r.returncode, r.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = "timeout", (e.stderr or b"").decode(errors="replace") if isinstance(
            e.stderr, bytes) else (e.stderr or "")
    wall = time.perf_counter() - t
    (work / f"run_{n}.log").write_text(err, encoding="utf-8")
    row = {"processes": n, "rc": rc, "wall_seconds": round(wall, 2),
           "command": " ".join(cmd[1:]),
           "feature_cache_per_rank": [{"hits": int(h), "misses": int(m)}
                                      for h, m in CACHE_RE.findall(err)]}
    summ = out / "summary.json"
    if rc != 0 or not summ.exists():
        row["error"] = err[-2000:]
        return row
    s = json.loads(summ.read_text())
    tm = s["timing"]
    loop = tm["train_loop_seconds"]
    posts = tm["train_posts"] * s["epochs_run"]
    row.update({"world_size": tm["world_size"], "epochs": s["epochs_run"],
                "optimizer_steps": tm["optimizer_steps"], "train_posts_seen": posts,
                "steps_per_s": round(tm["optimizer_steps"] / loop, 3),
                "posts_per_s": round(posts / loop, 2), "timing": tm,
                "train_seconds": s["train_seconds"], "total_seconds": s["total_seconds"],
                "dev_f1": s["dev"].get("f1"), "test_f1": s["test"].get("f1"),
                "test": s["test"], "lr_scale": s.get("lr_scale"), "ddp": s.get("ddp"),
                "device": s["device"]})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="recipe (e.g. configs/mmib_twitter2015.yaml); --cpu "
                    "without it: the synthetic MMIB NER recipe with tiny encoders")
    ap.add_argument("--cpu", action="store_true", help="gloo processes on the CPU, tiny "
                    "random encoders, the synthetic set (overrides come after the recipe's)")
    ap.add_argument("--gpus", type=int, default=2, choices=(2, 4),
                    help="largest process count: runs 1, 2 (and 4)")
    ap.add_argument("--accelerator", default="gpu")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr-scale", action="store_true",
                    help="trainer.lr_scale_with_world_size=true in every run")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra override for every run (repeatable)")
    ap.add_argument("--cache-dir", help="one feature cache for all runs (default: a fresh "
                    "one per run, so each run's rank 0 computes the features)")
    ap.add_argument("--work-dir", help="run directories (default: a temporary directory)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    ap.add_argument("--out", required=True, help="JSON results file")
    a = ap.parse_args()
    if a.cpu and a.gpus != 2:
        ap.error("--cpu runs 1 and 2 processes")
    counts = [1, 2] + ([4] if a.gpus == 4 else [])
    work = Path(a.work_dir or tempfile.mkdtemp(prefix="ddp_scaling_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in counts:
        row = run_one(a, n, work)
        rows.append(row)
        print(f"N={n}: rc={row['rc']} wall={row['wall_seconds']}s", flush=True)
    base = rows[0].get("posts_per_s")
    for r in rows:
        if base and r.get("posts_per_s"):
            r["speedup"] = round(r["posts_per_s"] / base, 3)
            r["efficiency"] = round(r["posts_per_s"] / (r["processes"] * base), 3)
    result = {"config": a.config, "cpu": a.cpu, "epochs": a.epochs, "overrides": a.set,
              "lr_scale_with_world_size": a.lr_scale, "work_dir": str(work), "runs": rows,
              "python": sys.version.split()[0]}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"{'N':>2} {'steps':>6} {'steps/s':>8} {'posts/s':>8} {'eff':>6} {'loop s':>7} "
          f"{'eval s':>7} {'setup s':>7} {'dev F1':>7} {'test F1':>7}")
    for r in rows:
        if "timing" not in r:
            print(f"{r['processes']:>2} FAILED rc={r['rc']}: {r.get('error', '')[-300:]}")
            continue
        tm = r["timing"]
        ev = tm["fit_eval_seconds"] + tm["final_eval_seconds"]
        print(f"{r['processes']:>2} {r['optimizer_steps']:>6} {r['steps_per_s']:>8.2f} "
              f"{r['posts_per_s']:>8.1f} {r.get('efficiency', float('nan')):>6.2f} "
              f"{tm['train_loop_seconds']:>7.1f} {ev:>7.1f} {tm['setup_seconds']:>7.1f} "
              f"{r['dev_f1']:>7.4f} {r['test_f1']:>7.4f}  cache/rank "
              f"{[(c['hits'], c['misses']) for c in r['feature_cache_per_rank']]}")
    print(f"wrote {out}")
    sys.exit(0 if all("timing" in r for r in rows) else 1)


if __name__ == "__main__":
    main()
