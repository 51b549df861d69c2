"""Prediction core path, comparable across source trees (A/B of two checkouts).

    PYTHONPATH=<checkout>/src python benchmarks/predict_ab.py [--model text] [--batch 16 64 256]
        [--device cpu] [--output FILE]

Only APIs that every mmie version since issue 8 has: ``Collator(task, text, max_length,
features, phase)``, ``model.predict`` and ``task.decode`` -- so the same script measures the
code of ``main`` before a change and of a branch after it. A step = collate ``batch`` new
posts (tokenisation, no token cache) + copy to the device + ``model.predict`` (encoder, CRF
decoding, marginals) + ``task.decode`` (output formatting), on cached picture features for
image models; the same warm-up / timing rule as ``benchmarks/speed.py`` (until three
consecutive steps agree within 10 %, then 30 timed steps, median and p10 / p90). With
``--profile``, 5 more steps at the last batch size under cProfile (top 15 by own time) and
under torch.profiler (top 15 operators by self time) are printed.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="text", choices=["text", "mmib", "mg_vmoe"])
    ap.add_argument("--batch", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--synthetic-size", type=int, default=600)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--output", default=None)
    a = ap.parse_args(argv)
    import mmie
    from mmie.config import load_config
    from mmie.models.factory import build_model
    from mmie.training.data import Collator, compute_image_features, load_examples
    from mmie.registry import new_task
    from mmie.training.train import build_encoders, model_uses_image

    cfg_file = {"text": "text_synthetic_ner", "mmib": "mmib_synthetic_ner",
                "mg_vmoe": "mg_vmoe_synthetic_typing"}[a.model]
    cfg = load_config(HERE.parent / "configs" / f"{cfg_file}.yaml",
                      [f"data.synthetic_size={a.synthetic_size}"])
    torch.manual_seed(0)
    splits = {s: load_examples(cfg, s) for s in ("train", "dev", "test")}
    task = new_task(cfg, splits)
    splits = task.filter_splits(splits)
    text, vision = build_encoders(cfg, model_uses_image(cfg))
    feats, rows = None, None
    if model_uses_image(cfg):
        feats, splits = compute_image_features(cfg, vision, splits, {})
        rows = feats.rows["train"]
    device = torch.device(a.device)
    model = build_model(cfg.model, task, text, vision).to(device).eval()
    exs = splits["train"]
    rows = rows or [-1] * len(exs)
    phase = "train" if getattr(task, "zero_shot", False) else "eval"
    collate = Collator(task, text, cfg.data.max_length, feats, phase=phase)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = {"mmie": mmie.__file__, "model": a.model, "device": str(device),
           "threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS"),
           "load_1min_start": round(os.getloadavg()[0], 2), "rows": []}
    for bs in a.batch:
        chunks = [[(i % len(exs)) for i in range(k, k + bs)] for k in range(0, len(exs), bs)]
        state = {"k": 0}

        def step():
            idx = chunks[state["k"] % len(chunks)]
            state["k"] += 1
            batch = collate([(i, exs[i], rows[i]) for i in idx])
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                     for k, v in batch.items()}
            with torch.no_grad():
                preds = model.predict(batch)
            task.decode([exs[i] for i in idx], preds)

        def once():
            sync()
            t0 = time.perf_counter()
            step()
            sync()
            return time.perf_counter() - t0

        warm = []
        while len(warm) < 60:
            warm.append(once())
            if len(warm) >= 3 and max(warm[-3:]) <= 1.1 * min(warm[-3:]):
                break
        ts = sorted(once() for _ in range(a.steps))
        med = statistics.median(ts)
        r = {"batch": bs, "posts_per_s": round(bs / med, 1),
             "posts_per_s_p10": round(bs / ts[round(0.9 * (len(ts) - 1))], 1),
             "posts_per_s_p90": round(bs / ts[round(0.1 * (len(ts) - 1))], 1),
             "warmup_steps": len(warm), "load_1min": round(os.getloadavg()[0], 2)}
        out["rows"].append(r)
        print(f"{a.model} b{bs}: {r['posts_per_s']} posts/s [{r['posts_per_s_p10']}, "
              f"{r['posts_per_s_p90']}] (warm-up {len(warm)}, load {r['load_1min']})", flush=True)
    if a.profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(5):
            step()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as tprof:
            for _ in range(5):
                step()
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(tprof.key_averages().table(sort_by=key, row_limit=15))
    if a.output:
        Path(a.output).parent.mkdir(parents=True, exist_ok=True)
        Path(a.output).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
