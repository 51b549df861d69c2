"""Speed benchmark of mmie: training / inference throughput, feature cache, memory, pipeline.

Measures, with the embedded encoders (MiniLM-L6 text, EfficientNet-Lite0 vision) on distinct
synthetic posts and pictures (``mmie.data.paths.synthetic_dir``):

1. training throughput (posts/s; optimizer steps of ``--batch-size`` posts, timed after
   warm-up, calling ``model(batch).loss.backward()`` + ``optimizer.step()`` directly) for
   text-only, MMIB (NER) and MG-VMoE (typing), with cached image features (FeatureCache hit)
   and without the cache (pixels -> frozen vision encoder inside every step, image decoding
   and preprocessing included);
2. a *reference loop* as the incumbent research code does it (eager fp32, no feature cache,
   each post's picture encoded alone, batch size 1 through the vision encoder) against mmie's
   default path (cached features, batched), MMIB NER, same run: the speed-up ratio;
3. inference throughput and per-post latency through ``mmie.load(dir).predict`` (batch 1) /
   ``.predict_batch`` (batch 32) of the same models (saved with ``save_pretrained`` after the
   timed training steps: briefly trained, not converged);
4. the feature cache: computing features of N distinct images the first time vs reading them
   back (a new cache object over the same folder: hits);
5. peak memory (``ru_maxrss`` of the process after each phase; ``torch.cuda.max_memory_allocated``
   per phase on GPU);
6. the extraction pipeline (``mmie.pipeline(ner=, re=).extract_batch``) vs NER then RE pair by
   pair with ``Predictor.predict`` in a Python loop (same models, same ordered pairs).

Nothing here is asserted by tests; numbers go to ``docs/performance.md``.

    python benchmarks/speed.py --device cpu --output results/speed_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

CONFIGS = {  # name -> (config file, task split to read)
    "text": ROOT / "configs" / "text_synthetic_ner.yaml",
    "mmib": ROOT / "configs" / "mmib_synthetic_ner.yaml",
    "mg_vmoe": ROOT / "configs" / "mg_vmoe_synthetic_typing.yaml",
    "mmib_re": ROOT / "configs" / "mmib_synthetic_re.yaml",
}


# ---- helpers ------------------------------------------------------------------------------------
def load_1min() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(threshold: float, poll_s: float, max_wait_s: float) -> dict[str, Any]:
    """Poll the 1-minute load average until it is below ``threshold`` (or time runs out)."""
    t0 = time.time()
    first = load_1min()
    while load_1min() >= threshold and time.time() - t0 < max_wait_s:
        print(f"[speed] load average {load_1min():.2f} >= {threshold}; waiting", flush=True)
        time.sleep(poll_s)
    return {"load_1min_initial": round(first, 2), "load_1min_at_start": round(load_1min(), 2),
            "waited_s": round(time.time() - t0, 1), "threshold": threshold,
            "quiet": load_1min() < threshold}


def maxrss_mb() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(r / 1024 if sys.platform != "darwin" else r / 2 ** 20, 1)


class Clock:
    """Wall time with a CUDA synchronise around it when running on a GPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


def reset_cuda_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def cuda_peak_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
    return None


def autocast(device: torch.device, precision: str):
    """bf16 autocast (the GPU fast path) or a no-op context for fp32."""
    import contextlib

    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


PRECISION = "fp32"  # set from --precision in main()


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# ---- setup of one model kind ---------------------------------------------------------------------
class Setup:
    """Config, task, examples, image paths, encoders and model of one benchmarked model."""

    def __init__(self, name: str, synthetic_size: int, device: torch.device, seed: int = 0,
                 keep: dict[str, int] | None = None):
        from mmie.config import load_config
        from mmie.models.factory import build_model
        from mmie.training.data import image_dir_for, load_examples
        from mmie.registry import new_task
        from mmie.training.train import build_encoders, model_uses_image

        torch.manual_seed(seed)
        self.name = name
        self.cfg = load_config(CONFIGS[name], [f"data.synthetic_size={synthetic_size}"])
        splits = {s: load_examples(self.cfg, s) for s in ("train", "dev", "test")}
        self.task = new_task(self.cfg, splits)
        splits = self.task.filter_splits(splits)
        # only the posts the benchmark uses (their pictures are all that is encoded / cached)
        self.splits = {s: v[:keep[s]] if keep else v for s, v in splits.items()}
        self.uses_image = model_uses_image(self.cfg)
        self.text, self.vision = build_encoders(self.cfg, self.uses_image)
        self.model = build_model(self.cfg.model, self.task, self.text, self.vision).to(device)
        self.device = device
        self.image_dirs = {s: image_dir_for(self.cfg, s) for s in splits}
        self.features = None
        self.rows: dict[str, list[int]] | None = None

    def image_path(self, split: str, ex) -> str:
        from mmie.data.images import resolve_image

        path = resolve_image(self.image_dirs[split], ex.image)
        if path is None:
            raise SystemExit(f"{self.name}: no image file for {ex.image!r} in {self.image_dirs[split]}")
        return str(path)

    def prime_cache(self) -> dict[str, Any]:
        """Features of every split through :func:`compute_image_features` (FeatureCache)."""
        from mmie.training.data import compute_image_features

        report: dict[str, Any] = {}
        if self.uses_image:
            self.features, self.splits = compute_image_features(
                self.cfg, self.vision, self.splits, report)
            self.rows = self.features.rows
        return report


# ---- 1. training throughput ----------------------------------------------------------------------
def make_optimizer(model: torch.nn.Module, cfg) -> torch.optim.Optimizer:
    text_ids = {id(p) for p in model.text.parameters()}
    text_p = [p for p in model.parameters() if p.requires_grad and id(p) in text_ids]
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in text_ids]
    return torch.optim.AdamW([{"params": text_p, "lr": cfg.trainer.lr},
                              {"params": rest, "lr": cfg.trainer.head_lr}],
                             weight_decay=cfg.trainer.weight_decay)


def train_batches(su: Setup, mode: str, batch_size: int, n: int) -> list[Callable[[], dict]]:
    """``n`` batch builders over distinct training posts. ``mode``: ``cached`` (feature rows),
    ``pixels`` (decode + preprocess the batch's pictures; the model encodes them batched) or
    ``reference`` (features of each picture computed alone, batch 1 through the encoder)."""
    from mmie.data.images import load_image
    from mmie.encoders.vision import pool_regions
    from mmie.training.data import Collator

    exs = su.splits["train"]
    need = batch_size * n
    if len(exs) < need:
        raise SystemExit(f"{su.name}: {len(exs)} training posts < {need} needed; raise "
                         "--synthetic-size or lower --steps")
    feats = su.features if mode == "cached" else None
    collate = Collator(su.task, su.text, su.cfg.data.max_length, feats, phase="train")
    rows = su.rows["train"] if (su.rows is not None) else [-1] * len(exs)
    builders = []
    for b in range(n):
        idx = list(range(b * batch_size, (b + 1) * batch_size))

        def build(idx=idx) -> dict:
            batch = collate([(i, exs[i], rows[i]) for i in idx])
            if su.uses_image and mode == "pixels":
                pils = [load_image(su.image_path("train", exs[i])) for i in idx]
                batch["pixel_values"] = su.vision.preprocess(pils)
                batch["image_present"] = torch.ones(len(idx), dtype=torch.bool)
            elif su.uses_image and mode == "reference":
                gs, rs = [], []
                with torch.no_grad():
                    for i in idx:
                        pix = su.vision.preprocess([load_image(su.image_path("train", exs[i]))])
                        g, r = su.vision(pix.to(su.device))
                        gs.append(g)
                        rs.append(r)
                batch["image_global"] = torch.cat(gs)
                batch["image_regions"] = pool_regions(torch.cat(rs).float(),
                                                      su.cfg.model.region_grid)
                batch["image_present"] = torch.ones(len(idx), dtype=torch.bool)
            return to_device(batch, su.device)

        builders.append(build)
    return builders


def bench_training(su: Setup, mode: str, batch_size: int, warmup: int, steps: int,
                   clock: Clock) -> dict[str, Any]:
    su.model.train()
    opt = make_optimizer(su.model, su.cfg)
    builders = train_batches(su, mode, batch_size, warmup + steps)
    reset_cuda_peak(su.device)

    def step(build):
        batch = build()  # batch building (collate, pictures) is inside the timed step
        opt.zero_grad(set_to_none=True)
        with autocast(su.device, PRECISION):
            out = su.model(batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(su.model.parameters(), su.cfg.trainer.grad_clip)
        opt.step()
        return float(out.loss.detach())

    for b in builders[:warmup]:
        step(b)
    times = []
    for b in builders[warmup:]:
        t0 = clock.now()
        step(b)
        times.append(clock.now() - t0)
    total = sum(times)
    return {"model": su.name, "mode": mode, "batch_size": batch_size, "warmup_steps": warmup,
            "precision": PRECISION, "steps": steps, "seconds": round(total, 3),
            "posts_per_s": round(batch_size * steps / total, 2),
            "s_per_step_median": round(statistics.median(times), 4),
            "maxrss_mb": maxrss_mb(), "cuda_peak_mb": cuda_peak_mb(su.device)}


# ---- 1b. batch-size sweep (cached features): training and prediction, collate vs model ---------
def bench_sweep(su: Setup, batch_sizes: list[int], warmup: int, steps: int,
                clock: Clock) -> list[dict[str, Any]]:
    """Posts/s of training steps and of prediction (``model.predict`` on collated batches with
    cached image features, no gradients) per batch size; the share of batch building (collate:
    tokenisation, padding, feature rows) is timed separately to show where time goes."""
    from mmie.training.data import Collator

    exs = su.splits["train"]
    rows_all = su.rows["train"] if su.rows is not None else [-1] * len(exs)
    out = []
    for bs in batch_sizes:
        n = warmup + steps
        if len(exs) < bs * n:
            print(f"[speed]   sweep: skip batch {bs} ({len(exs)} posts < {bs * n})", flush=True)
            continue
        r = bench_training(su, "cached", bs, warmup, steps, clock)
        collate = Collator(su.task, su.text, su.cfg.data.max_length, su.features, phase="eval")
        su.model.eval()
        items = [[(i, exs[i], rows_all[i]) for i in range(b * bs, (b + 1) * bs)] for b in range(n)]
        t_col = t_model = 0.0
        with torch.no_grad():
            for b, chunk in enumerate(items):
                t0 = clock.now()
                batch = to_device(collate(chunk), su.device)
                t1 = clock.now()
                with autocast(su.device, PRECISION):
                    su.model.predict(batch)
                t2 = clock.now()
                if b >= warmup:
                    t_col += t1 - t0
                    t_model += t2 - t1
        posts = bs * steps
        out.append({"model": su.name, "batch_size": bs, "precision": PRECISION,
                    "train_posts_per_s": r["posts_per_s"],
                    "predict_posts_per_s": round(posts / (t_col + t_model), 1),
                    "predict_model_only_posts_per_s": round(posts / t_model, 1),
                    "collate_share": round(t_col / (t_col + t_model), 3),
                    "cuda_peak_mb": cuda_peak_mb(su.device)})
        print(f"[speed]   sweep {su.name} b{bs}: train {r['posts_per_s']} predict "
              f"{out[-1]['predict_posts_per_s']} posts/s", flush=True)
    return out


# ---- 3. inference ----------------------------------------------------------------------------------
def inference_items(su: Setup, n: int, split: str = "test") -> list[dict[str, Any]]:
    from mmie.data.tokenize import words_to_text

    exs = su.splits[split]
    if len(exs) < n:
        exs = exs + su.splits["dev"]
    items = []
    for ex in exs[:n]:
        text, offs = words_to_text(ex.tokens)
        item: dict[str, Any] = {"text": text}
        if ex.image is not None:
            item["image"] = su.image_path(split if ex in su.splits[split] else "dev", ex)
        if su.task.name != "ner":
            h = ex.entities[0]
            item["head"] = [offs[h.start][0], offs[h.end - 1][1]]
        items.append(item)
    return items


def bench_inference(pred, items: list[dict[str, Any]], n_single: int, n_batch: int,
                    clock: Clock, device: torch.device) -> dict[str, Any]:
    reset_cuda_peak(device)
    for it in items[:2]:  # warm-up
        pred.predict(**it)
    lat = []
    for it in items[:n_single]:
        t0 = clock.now()
        pred.predict(**it)
        lat.append(clock.now() - t0)
    pred.predict_batch(items[:32], batch_size=32)  # warm-up at batch 32
    t0 = clock.now()
    pred.predict_batch(items[:n_batch], batch_size=32)
    tb = clock.now() - t0
    lat_sorted = sorted(lat)
    return {"batch1_posts": n_single,
            "batch1_latency_ms_mean": round(1000 * statistics.mean(lat), 1),
            "batch1_latency_ms_p50": round(1000 * statistics.median(lat), 1),
            "batch1_latency_ms_p90": round(1000 * lat_sorted[int(0.9 * (len(lat) - 1))], 1),
            "batch1_posts_per_s": round(n_single / sum(lat), 2),
            "batch32_posts": n_batch, "batch32_seconds": round(tb, 3),
            "batch32_posts_per_s": round(n_batch / tb, 2),
            "batch32_ms_per_post": round(1000 * tb / n_batch, 1),
            "maxrss_mb": maxrss_mb(), "cuda_peak_mb": cuda_peak_mb(device)}


# ---- 4. feature cache ------------------------------------------------------------------------------
def bench_cache(vision, paths: list[str], clock: Clock, device: torch.device) -> dict[str, Any]:
    from mmie.encoders.cache import FeatureCache

    with tempfile.TemporaryDirectory(prefix="mmie-speed-cache-") as d:
        reset_cuda_peak(device)
        first = FeatureCache(d, vision, progress=False)
        t0 = clock.now()
        g1, _ = first.get_or_compute([(p, p) for p in paths])
        t_first = clock.now() - t0
        second = FeatureCache(d, vision, progress=False)  # a later run: same folder, new object
        t0 = clock.now()
        g2, _ = second.get_or_compute([(p, p) for p in paths])
        t_second = clock.now() - t0
        same = bool(torch.equal(g1, g2))
    return {"images": len(paths), "first_s": round(t_first, 3), "second_s": round(t_second, 3),
            "first_images_per_s": round(len(paths) / t_first, 1),
            "second_images_per_s": round(len(paths) / t_second, 1),
            "speedup": round(t_first / t_second, 1),
            "first_stats": first.stats(), "second_stats": second.stats(),
            "identical_features": same, "maxrss_mb": maxrss_mb(),
            "cuda_peak_mb": cuda_peak_mb(device)}


# ---- 6. pipeline -----------------------------------------------------------------------------------
def bench_pipeline(ner_dir: Path, re_dir: Path, items: list[dict[str, Any]], clock: Clock,
                   device: torch.device) -> dict[str, Any]:
    import mmie

    # no type constraints: the loop below classifies every ordered pair, so both do the same work
    pipe = mmie.pipeline(ner=str(ner_dir), re=str(re_dir), device=device, type_constraints=False)
    ner, re = pipe.ner, pipe.re
    pipe.extract_batch(items[:2])  # warm-up
    reset_cuda_peak(device)
    t0 = clock.now()
    out = pipe.extract_batch(items)
    t_pipe = clock.now() - t0
    n_ent = sum(len(o["entities"]) for o in out)
    n_pairs = sum(len(o["entities"]) * (len(o["entities"]) - 1) for o in out)

    def loop() -> tuple[int, int]:
        ents_total = rels = 0
        for it in items:
            ents = ner.predict(text=it["text"], image=it.get("image"))
            ents_total += len(ents)
            for i, h in enumerate(ents):
                for j, t in enumerate(ents):
                    if i == j:
                        continue
                    r = re.predict(text=it["text"], image=it.get("image"),
                                   head=[h["start"], h["end"]], tail=[t["start"], t["end"]])
                    rels += r["relation"] != "None"
        return ents_total, rels

    t0 = clock.now()
    loop_ents, _ = loop()
    t_loop = clock.now() - t0
    return {"posts": len(items), "entities": n_ent, "ordered_pairs": n_pairs,
            "loop_entities": loop_ents, "type_constraints": False,
            "pipeline_s": round(t_pipe, 3), "pipeline_posts_per_s": round(len(items) / t_pipe, 2),
            "loop_s": round(t_loop, 3), "loop_posts_per_s": round(len(items) / t_loop, 2),
            "speedup": round(t_loop / t_pipe, 2), "maxrss_mb": maxrss_mb(),
            "cuda_peak_mb": cuda_peak_mb(device)}


# ---- main ------------------------------------------------------------------------------------------
def machine_info(device: torch.device) -> dict[str, Any]:
    import mmie

    info = {"python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "mmie": mmie.__version__, "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def print_table(res: dict[str, Any]) -> None:
    print("\n== training (posts/s, batch %d, %d timed steps after %d warm-up) ==" % (
        res["params"]["batch_size"], res["params"]["steps"], res["params"]["warmup"]))
    print(f"{'model':<10}{'mode':<12}{'posts/s':>10}{'s/step':>10}{'maxrss MiB':>12}")
    for r in res["training"]:
        print(f"{r['model']:<10}{r['mode']:<12}{r['posts_per_s']:>10}{r['s_per_step_median']:>10}"
              f"{r['maxrss_mb']:>12}")
    ref = res["reference"]
    print(f"reference loop -> mmie default (cached, batched), MMIB: x{ref['speedup']}")
    if res.get("sweep"):
        print("\n== batch-size sweep (cached features) ==")
        print(f"{'model':<8}{'batch':>6}{'train p/s':>11}{'predict p/s':>13}{'model-only':>12}"
              f"{'collate %':>10}")
        for r in res["sweep"]:
            print(f"{r['model']:<8}{r['batch_size']:>6}{r['train_posts_per_s']:>11}"
                  f"{r['predict_posts_per_s']:>13}{r['predict_model_only_posts_per_s']:>12}"
                  f"{100 * r['collate_share']:>10.0f}")
    print("\n== inference ==")
    print(f"{'model':<10}{'b1 ms p50':>10}{'b1 ms p90':>10}{'b1 post/s':>10}{'b32 post/s':>11}"
          f"{'b32 ms/post':>12}")
    for name, r in res["inference"].items():
        print(f"{name:<10}{r['batch1_latency_ms_p50']:>10}{r['batch1_latency_ms_p90']:>10}"
              f"{r['batch1_posts_per_s']:>10}{r['batch32_posts_per_s']:>11}"
              f"{r['batch32_ms_per_post']:>12}")
    c = res["feature_cache"]
    print(f"\n== feature cache: {c['images']} images, first {c['first_s']} s, second "
          f"{c['second_s']} s (x{c['speedup']}) ==")
    p = res["pipeline"]
    print(f"== pipeline: {p['posts']} posts ({p['entities']} entities, {p['ordered_pairs']} "
          f"pairs): extract_batch {p['pipeline_posts_per_s']} posts/s vs loop "
          f"{p['loop_posts_per_s']} posts/s (x{p['speedup']}) ==")
    print(f"peak RSS {res['peak_maxrss_mb']} MiB; total {res['total_s']} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--output", default=str(ROOT / "results" / "speed_cpu.json"))
    ap.add_argument("--synthetic-size", type=int, default=600,
                    help="training posts of the synthetic set (distinct pictures)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=1, help="untimed training steps")
    ap.add_argument("--steps", type=int, default=4, help="timed training steps per variant")
    ap.add_argument("--latency-posts", type=int, default=16, help="posts predicted one by one")
    ap.add_argument("--batch-posts", type=int, default=64, help="posts through predict_batch")
    ap.add_argument("--cache-images", type=int, default=32)
    ap.add_argument("--pipeline-posts", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--load-threshold", type=float, default=1.5)
    ap.add_argument("--max-wait", type=float, default=300.0)
    ap.add_argument("--no-wait", action="store_true")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="bf16: torch.autocast(bfloat16) around forward passes (GPU fast path)")
    ap.add_argument("--sweep", type=int, nargs="*", default=[],
                    help="batch sizes for the cached-feature sweep of text and MMIB "
                         "(training and prediction posts/s); needs synthetic-size >= 5 x max")
    args = ap.parse_args(argv)
    global PRECISION
    PRECISION = args.precision

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = Clock(device)
    load = ({"load_1min_at_start": round(load_1min(), 2), "waited_s": 0.0} if args.no_wait
            else wait_for_quiet(args.load_threshold, 20.0, args.max_wait))
    t_start = time.perf_counter()
    res: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, "benchmarks/speed.py", *sys.argv[1:]]),
        "machine": machine_info(device), "load": load,
        "params": {"synthetic_size": args.synthetic_size, "batch_size": args.batch_size,
                   "warmup": args.warmup, "steps": args.steps,
                   "latency_posts": args.latency_posts, "batch_posts": args.batch_posts,
                   "cache_images": args.cache_images, "pipeline_posts": args.pipeline_posts,
                   "precision": f"{args.precision} eager", "sweep": args.sweep,
                   "text_encoder": "minilm",
                   "vision_encoder": "efficientnet_lite0"},
        "training": [], "inference": {}}
    from mmie.models.factory import save_pretrained

    work = Path(tempfile.mkdtemp(prefix="mmie-speed-"))
    n_items = max(args.latency_posts, args.batch_posts, args.pipeline_posts, 32)
    keep = {"train": max([args.batch_size, *args.sweep]) * (args.warmup + args.steps),
            "dev": n_items,
            "test": n_items}
    model_dirs: dict[str, Path] = {}
    setups: dict[str, Setup] = {}
    for name in ("text", "mmib", "mg_vmoe"):
        print(f"[speed] training: {name}", flush=True)
        su = Setup(name, args.synthetic_size, device, keep=keep)
        su.prime_cache()
        modes = ["cached"] if not su.uses_image else ["cached", "pixels"]
        if name == "mmib":
            modes.append("reference")
        for mode in modes:
            r = bench_training(su, mode, args.batch_size, args.warmup, args.steps, clock)
            res["training"].append(r)
            print(f"[speed]   {mode}: {r['posts_per_s']} posts/s", flush=True)
        if args.sweep and name in ("text", "mmib"):
            res.setdefault("sweep", []).extend(
                bench_sweep(su, args.sweep, args.warmup, args.steps, clock))
        model_dirs[name] = save_pretrained(su.model, su.task, su.cfg, work / name)
        setups[name] = su
    by = {(r["model"], r["mode"]): r for r in res["training"]}
    res["reference"] = {
        "what": "MMIB NER training: eager fp32, no feature cache, each picture encoded alone "
                "(batch 1) vs mmie default (cached features, batched)",
        "reference_posts_per_s": by[("mmib", "reference")]["posts_per_s"],
        "mmie_default_posts_per_s": by[("mmib", "cached")]["posts_per_s"],
        "speedup": round(by[("mmib", "cached")]["posts_per_s"]
                         / by[("mmib", "reference")]["posts_per_s"], 2),
        "pixels_batched_speedup": round(by[("mmib", "pixels")]["posts_per_s"]
                                        / by[("mmib", "reference")]["posts_per_s"], 2)}

    # RE model for the pipeline (trained the same brief way, not timed)
    print("[speed] RE model for the pipeline", flush=True)
    su_re = Setup("mmib_re", args.synthetic_size, device, keep=keep)
    su_re.prime_cache()
    bench_training(su_re, "cached", args.batch_size, 0, args.steps, clock)
    model_dirs["mmib_re"] = save_pretrained(su_re.model, su_re.task, su_re.cfg, work / "mmib_re")
    del su_re

    import mmie

    for name in ("text", "mmib", "mg_vmoe"):
        print(f"[speed] inference: {name}", flush=True)
        items = inference_items(setups[name], n_items)
        pred = mmie.load(model_dirs[name], device=device)
        with autocast(device, PRECISION):
            res["inference"][name] = bench_inference(pred, items, args.latency_posts,
                                                     args.batch_posts, clock, device)
        del pred

    print("[speed] feature cache", flush=True)
    su = setups["mmib"]
    seen, paths = set(), []
    for split in ("test", "dev", "train"):
        for ex in su.splits[split]:
            p = su.image_path(split, ex)
            if p not in seen:
                seen.add(p)
                paths.append(p)
    res["feature_cache"] = bench_cache(su.vision, paths[:args.cache_images], clock, device)

    print("[speed] pipeline", flush=True)
    with autocast(device, PRECISION):
        res["pipeline"] = bench_pipeline(model_dirs["mmib"], model_dirs["mmib_re"],
                                         inference_items(setups["mmib"], args.pipeline_posts),
                                         clock, device)
    res["peak_maxrss_mb"] = maxrss_mb()
    res["load"]["load_1min_at_end"] = round(load_1min(), 2)
    res["total_s"] = round(time.perf_counter() - t_start, 1)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print_table(res)
    print(f"\nwrote {out}")
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
