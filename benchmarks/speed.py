"""Speed benchmark of mmie: training / prediction throughput, feature cache, memory, pipeline.

Measures, with the embedded encoders (MiniLM-L6 text, EfficientNet-Lite0 vision) on the
synthetic posts and their distinct pictures (``mmie.data.paths.synthetic_dir``):

1. ``train``: training throughput (posts/s of ``model(batch).loss.backward()`` + clipping +
   AdamW step, batch building included) for text-only, MMIB (NER) and MG-VMoE (typing), with
   cached image features (``cached``: batches from :func:`mmie.training.data.make_loader`
   with the training loader's token cache, ``--workers`` processes, pinned memory on CUDA)
   and with pixels (``pixels``: the batch's pictures decoded and preprocessed in the step,
   the frozen vision encoder inside the model);
2. the *reference loop* as the incumbent research code does it -- eager fp32, no feature
   cache, each post's picture decoded and encoded alone (batch 1 through the vision
   encoder): MMIB training (``reference``) and MMIB prediction (``predict_reference``, one
   post at a time); ``ratios`` divides every MMIB row by its reference, same run;
3. ``sweep``: per batch size, training (cached features) and prediction posts/s
   (``predict``: collate of new posts -- no token cache -- + transfer + ``model.predict``
   (CRF decoding) + ``task.decode`` (output formatting); ``predict_model``: the model call
   alone on batches already on the device);
4. ``inference``: the Python API, ``mmie.load(dir).predict`` per post (latency) and
   ``.predict_batch`` (each call decodes and encodes its pictures);
5. ``cache``: the feature cache, N distinct images computed vs read back (single pass);
6. ``pipeline``: ``mmie.pipeline(ner=, re=).extract_batch`` vs NER then RE pair by pair
   (single pass).

Method (so that two runs agree): every timed row warms up until three consecutive steps
agree within 10 % (at least ``--warmup`` steps, at most ``--max-warmup``; the row records
whether it converged), then times ``--steps`` (>= 30) steps, each between two CUDA
synchronisations on a GPU; rows report the median step and its p10 / p90, and posts/s =
posts per step / median step time. Every variant runs in one process, in an order that is
recorded (``order``); the machine, torch, CUDA, driver and library versions go into the
JSON. ``--repeat 2`` runs the whole benchmark twice, each in a fresh process, and writes a
comparison saying whether every row agrees within 15 % (``--compare A B`` does the same for
two earlier result files).

Nothing here is asserted by tests; numbers go to ``docs/performance.md``.

    python benchmarks/speed.py --device cpu --output results/speed/speed_cpu.json
    python benchmarks/speed.py --device cuda --precision bf16 --synthetic-size 1400 \\
        --sweep 64 256 1024 --workers 4 --repeat 2 --output results/speed/speed_gpu_h200.json
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

CONFIGS = {  # name -> config file
    "text": ROOT / "configs" / "text_synthetic_ner.yaml",
    "mmib": ROOT / "configs" / "mmib_synthetic_ner.yaml",
    "mg_vmoe": ROOT / "configs" / "mg_vmoe_synthetic_typing.yaml",
    "mmib_re": ROOT / "configs" / "mmib_synthetic_re.yaml",
}
SECTIONS = ("train", "sweep", "reference", "inference", "cache", "pipeline")
AGREE = 0.15  # two runs agree when every row's posts/s differ by at most this fraction
STABLE = 0.10  # warm-up ends when three consecutive steps are within this fraction


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
    """Wall time with a CUDA synchronise before each reading when running on a GPU."""

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
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def quantile(xs: list[float], q: float) -> float:
    """Linear-interpolated quantile (``q`` in [0, 1]) of a non-empty list."""
    ys = sorted(xs)
    pos = q * (len(ys) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ys) - 1)
    return ys[lo] + (ys[hi] - ys[lo]) * (pos - lo)


class Bench:
    """Runs and records timed rows: warm-up to stability, ``steps`` timed steps, order."""

    def __init__(self, clock: Clock, device: torch.device, min_warmup: int, max_warmup: int,
                 steps: int, profile_steps: int = 0):
        self.clock, self.device = clock, device
        self.min_warmup, self.max_warmup, self.steps = min_warmup, max_warmup, steps
        self.profile_steps = profile_steps
        self.rows: list[dict[str, Any]] = []

    @property
    def steps_per_row(self) -> int:
        """The most steps one row takes: the longest warm-up, the timed steps, the profiled
        steps and a prefetch margin (a loader pass of this many batches is never restarted
        inside a row)."""
        return self.max_warmup + self.steps + self.profile_steps + 8

    def profile(self, step: Callable[[], Any], n: int) -> dict[str, Any]:
        """``n`` more steps under torch.profiler (after the timed ones, so the profiler's own
        cost never enters the timings): operators and, on a GPU, kernels and the time the GPU
        spent in them per step. Set against the row's median step, that says whether the
        step waits on the GPU or on the host (Python, launches, batch building)."""
        from torch.autograd import DeviceType
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                         if self.device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            t0 = self.clock.now()
            for _ in range(n):
                step()
            wall = self.clock.now() - t0
        events = prof.events()
        dev = [e for e in events if e.device_type == DeviceType.CUDA]
        cpu_ops = [e for e in events if e.device_type == DeviceType.CPU
                   and e.name.startswith("aten::")]
        out: dict[str, Any] = {"profiled_steps": n,
                               "profiled_s_per_step": round(wall / n, 6),
                               "aten_ops_per_step": round(len(cpu_ops) / n, 1)}
        if self.device.type == "cuda":
            busy_s = sum(e.time_range.elapsed_us() for e in dev) / 1e6
            out.update({"gpu_kernels_per_step": round(len(dev) / n, 1),
                        "gpu_busy_s_per_step": round(busy_s / n, 6)})
        return out

    def timed(self, step: Callable[[], Any]) -> float:
        t0 = self.clock.now()
        step()
        return self.clock.now() - t0

    def measure(self, row_id: str, step: Callable[[], Any], posts_per_step: int,
                steps: int | None = None, **fields) -> dict[str, Any]:
        """Warm up until three consecutive step times are within ``STABLE`` of each other
        (max / min - 1), then time ``steps``; one row, appended in measuring order."""
        steps = steps or self.steps
        reset_cuda_peak(self.device)
        warm: list[float] = []
        converged = False
        while len(warm) < self.max_warmup:
            warm.append(self.timed(step))
            last = warm[-3:]
            if len(warm) >= max(3, self.min_warmup) and max(last) <= (1 + STABLE) * min(last):
                converged = True
                break
        times = [self.timed(step) for _ in range(steps)]
        med = statistics.median(times)
        p10, p90 = quantile(times, 0.1), quantile(times, 0.9)
        row = {"id": row_id, "seq": len(self.rows), **fields, "posts_per_step": posts_per_step,
               "warmup_steps": len(warm), "warmup_converged": converged, "steps": steps,
               "s_per_step_median": round(med, 6), "s_per_step_p10": round(p10, 6),
               "s_per_step_p90": round(p90, 6),
               "posts_per_s": round(posts_per_step / med, 2),
               # posts over the whole timed span: what a stream of steps sustains (below the
               # median's rate when some steps wait, e.g. for a loader that falls behind)
               "posts_per_s_sustained": round(posts_per_step * steps / sum(times), 2),
               "s_per_step_all": [round(t, 6) for t in times],
               # p10 of the rate is the slow end (p90 of the step time) and vice versa
               "posts_per_s_p10": round(posts_per_step / p90, 2),
               "posts_per_s_p90": round(posts_per_step / p10, 2),
               "load_1min": round(load_1min(), 2), "maxrss_mb": maxrss_mb(),
               "cuda_peak_mb": cuda_peak_mb(self.device)}
        if self.profile_steps:
            row.update(self.profile(step, self.profile_steps))
            if "gpu_busy_s_per_step" in row:
                # the share of the median step in which the GPU ran kernels
                row["gpu_busy_fraction"] = round(row["gpu_busy_s_per_step"] / med, 3)
        self.rows.append(row)
        print(f"[speed] {row_id:<44} {row['posts_per_s']:>10} posts/s  "
              f"[{row['posts_per_s_p10']}, {row['posts_per_s_p90']}]  sustained "
              f"{row['posts_per_s_sustained']}  warm-up "
              f"{len(warm)}{'' if converged else ' (not stable)'}", flush=True)
        return row


def cycle_batches(n_posts: int, batch_size: int) -> list[list[int]]:
    """Consecutive chunks of ``batch_size`` post indices covering ``0..n_posts`` (the last
    chunk wraps around), cycled by the steps: a pool of posts, every batch full."""
    n_batches = max(1, -(-n_posts // batch_size))
    return [[(b * batch_size + j) % n_posts for j in range(batch_size)] for b in range(n_batches)]


def pass_indices(n_posts: int, batch_size: int, min_batches: int = 0) -> list[int]:
    """Post indices of one loader pass: :func:`cycle_batches` repeated until the pass holds at
    least ``min_batches`` full batches, so that a row's warm-up and timed steps all come from
    one pass of the DataLoader (a new pass restarts its prefetching: at batch 1,024 over a
    pool of 1,400 posts, every second step waited for a worker to build a batch from scratch)."""
    chunks = cycle_batches(n_posts, batch_size)
    reps = max(1, -(-min_batches // len(chunks)))
    return [i for _ in range(reps) for chunk in chunks for i in chunk]


def forever(xs: list) -> Iterator:
    return itertools.cycle(xs)


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


# ---- batch sources --------------------------------------------------------------------------------
def pool(su: Setup) -> tuple[list, list[int]]:
    exs = su.splits["train"]
    rows = su.rows["train"] if su.rows is not None else [-1] * len(exs)
    return exs, rows


def loader_batches(su: Setup, batch_size: int, workers: int, phase: str,
                   cache_tokens: bool, min_batches: int = 0) -> Iterator[dict]:
    """Endless full batches of the training pool through :func:`make_loader` (the training
    loop's loader: workers, pinned memory on CUDA), in order, wrapping around; one pass holds
    at least ``min_batches`` batches (:func:`pass_indices`)."""
    from mmie.training.data import Collator, ExampleDataset, make_loader

    exs, rows = pool(su)
    idx = pass_indices(len(exs), batch_size, min_batches)
    ds = ExampleDataset([exs[i] for i in idx], [rows[i] for i in idx])
    collate = Collator(su.task, su.text, su.cfg.data.max_length, su.features, phase=phase,
                       cache_tokens=cache_tokens)
    dl = make_loader(ds, collate, batch_size, shuffle=False, num_workers=workers,
                     pin_memory=su.device.type == "cuda")
    try:
        while True:
            yield from dl
    finally:  # on close(): stop the persistent workers now, not when the loader is collected
        live = getattr(dl, "_iterator", None)
        if live is not None and hasattr(live, "_shutdown_workers"):
            live._shutdown_workers()


def picture_batches(su: Setup, mode: str, batch_size: int) -> Iterator[Callable[[], dict]]:
    """Builders of full batches for ``pixels`` (decode + preprocess the batch's pictures; the
    model encodes them batched) and ``reference`` (each picture decoded and encoded alone,
    batch 1 through the encoder, fp32), cycling over the training pool."""
    from mmie.batching import to_device
    from mmie.data.images import load_image
    from mmie.encoders.vision import pool_regions
    from mmie.training.data import Collator

    exs, _ = pool(su)
    collate = Collator(su.task, su.text, su.cfg.data.max_length, None, phase="train",
                       cache_tokens=mode != "reference")
    builders = []
    for idx in cycle_batches(len(exs), batch_size):
        def build(idx=idx) -> dict:
            batch = collate([(i, exs[i], -1) for i in idx])
            if mode == "pixels":
                pils = [load_image(su.image_path("train", exs[i])) for i in idx]
                batch["pixel_values"] = su.vision.preprocess(pils)
            else:
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
    return forever(builders)


# ---- 1. training throughput ----------------------------------------------------------------------
def make_optimizer(model: torch.nn.Module, cfg, device: torch.device, precision: str):
    """The training loop's optimizer: its parameter groups, fused AdamW on CUDA."""
    from mmie.training.module import adamw, param_groups

    return adamw(param_groups(model, cfg.trainer), device,
                 "bf16-mixed" if precision == "bf16" else "32-true")


def bench_training(bench: Bench, su: Setup, mode: str, batch_size: int, precision: str,
                   workers: int) -> dict[str, Any]:
    from mmie.batching import to_device

    su.model.train()
    opt = make_optimizer(su.model, su.cfg, su.device, precision)
    if mode == "cached":
        it = loader_batches(su, batch_size, workers, "train", cache_tokens=True,
                            min_batches=bench.steps_per_row)
        get = lambda: to_device(next(it), su.device)  # noqa: E731
    else:
        builders = picture_batches(su, mode, batch_size)
        get = lambda: next(builders)()  # noqa: E731

    def step():
        batch = get()  # batch building (loader wait, pictures) is inside the timed step
        opt.zero_grad(set_to_none=True)
        with autocast(su.device, precision):
            out = su.model(batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(su.model.parameters(), su.cfg.trainer.grad_clip)
        opt.step()

    row = bench.measure(f"train/{su.name}/{mode}/b{batch_size}/{precision}", step, batch_size,
                        section="train", model=su.name, mode=mode, batch_size=batch_size,
                        precision=precision, workers=workers if mode == "cached" else 0,
                        fused_adamw=bool(opt.defaults.get("fused")))
    del opt
    if mode == "cached":
        it.close()  # shut the row's loader workers down before the next row is timed
    return row


# ---- 2./3. prediction: reference loop and batch-size sweep -----------------------------------------
def bench_predict(bench: Bench, su: Setup, batch_size: int, precision: str,
                  workers: int, cuda_graphs: bool = False) -> list[dict[str, Any]]:
    """Prediction of batches of new posts (no token cache): loader (collate, pinned) ->
    transfer -> ``model.predict`` -> ``task.decode``; and the model call alone."""
    from mmie.batching import to_device

    su.model.eval()
    exs, _ = pool(su)
    phase = "train" if getattr(su.task, "zero_shot", False) else "eval"
    ds_exs = [exs[i] for i in pass_indices(len(exs), batch_size, bench.steps_per_row)]
    it = loader_batches(su, batch_size, workers, phase, cache_tokens=False,
                        min_batches=bench.steps_per_row)

    def step():
        batch = next(it)
        idx = batch["index"].tolist()
        with torch.no_grad(), autocast(su.device, precision):
            preds = su.model.predict(to_device(batch, su.device))
        su.task.decode([ds_exs[i] for i in idx], preds)

    common = dict(section="sweep", model=su.name, batch_size=batch_size, precision=precision)
    rows = [bench.measure(f"predict/{su.name}/b{batch_size}/{precision}", step, batch_size,
                          what="predict", workers=workers, **common)]
    it.close()  # its loader workers stop before the model-only row is timed
    from mmie.training.data import Collator

    collate = Collator(su.task, su.text, su.cfg.data.max_length, su.features, phase=phase)
    _, rows_all = pool(su)
    ready_list = [to_device(collate([(i, exs[i], rows_all[i]) for i in chunk]), su.device)
                  for chunk in cycle_batches(len(exs), batch_size)[:8]]
    ready = forever(ready_list)

    def model_step():
        with torch.no_grad(), autocast(su.device, precision):
            su.model.predict(next(ready))

    rows.append(bench.measure(f"predict_model/{su.name}/b{batch_size}/{precision}", model_step,
                              batch_size, what="predict_model", **common))
    crf = getattr(su.model, "crf", None)
    if cuda_graphs and crf is not None and su.device.type == "cuda":
        # the same two rows with the CRF's loops replayed from CUDA graphs; first the
        # outputs of the ready batches, each eager against replayed (captured on first use).
        # Batch by batch from the list: the pool may hold fewer than 8 batches (1,400 posts
        # at b256 are 6), and a run through the endless iterator would then compare batches
        # out of step (the first GPU run of this row did, and reported False at b256)
        def outputs():
            with torch.no_grad(), autocast(su.device, precision):
                return [su.model.predict(b) for b in ready_list]

        eager = outputs()
        crf.use_cuda_graphs()
        identical = outputs() == eager and outputs() == eager
        common.update(cuda_graphs=True, identical_to_eager=identical)
        rows.append(bench.measure(f"predict_model/{su.name}/b{batch_size}/{precision}/graphs",
                                  model_step, batch_size, what="predict_model", **common))
        it = loader_batches(su, batch_size, workers, phase, cache_tokens=False,
                            min_batches=bench.steps_per_row)
        rows.append(bench.measure(f"predict/{su.name}/b{batch_size}/{precision}/graphs", step,
                                  batch_size, what="predict", workers=workers, **common))
        it.close()
        rows[-1]["graphs_captured"] = len(crf.cuda_graphs.graphs)
        rows[-1]["graph_failures"] = crf.cuda_graphs.failures
        crf.use_cuda_graphs(False)
    return rows


def bench_predict_reference(bench: Bench, su: Setup) -> dict[str, Any]:
    """The reference prediction loop: eager fp32, one post at a time, its picture decoded and
    encoded alone, collate + ``model.predict`` + ``task.decode``."""
    from mmie.batching import to_device
    from mmie.data.images import load_image
    from mmie.encoders.vision import pool_regions
    from mmie.training.data import Collator

    su.model.eval()
    exs, _ = pool(su)
    collate = Collator(su.task, su.text, su.cfg.data.max_length, None, phase="eval")
    order = forever(list(range(len(exs))))

    def step():
        i = next(order)
        with torch.no_grad():
            batch = collate([(i, exs[i], -1)])
            pix = su.vision.preprocess([load_image(su.image_path("train", exs[i]))])
            g, r = su.vision(pix.to(su.device))
            batch = to_device(batch, su.device)
            batch["image_global"] = g
            batch["image_regions"] = pool_regions(r.float(), su.cfg.model.region_grid)
            batch["image_present"] = torch.ones(1, dtype=torch.bool, device=su.device)
            su.task.decode([exs[i]], su.model.predict(batch))

    return bench.measure(f"predict_reference/{su.name}/b1/fp32", step, 1, section="reference",
                         model=su.name, what="predict_reference", batch_size=1,
                         precision="fp32")


# ---- 4. the Python API ------------------------------------------------------------------------------
def inference_items(su: Setup, n: int, split: str = "test") -> list[dict[str, Any]]:
    from mmie.data.tokenize import words_to_text

    exs = [(split, e) for e in su.splits[split]]
    exs += [("dev", e) for e in su.splits["dev"]] + [("train", e) for e in su.splits["train"]]
    items = []
    for sp, ex in exs[:n]:
        text, offs = words_to_text(ex.tokens)
        item: dict[str, Any] = {"text": text}
        if ex.image is not None and su.uses_image:
            item["image"] = su.image_path(sp, ex)
        if su.task.name != "ner":
            h = ex.entities[0]
            item["head"] = [offs[h.start][0], offs[h.end - 1][1]]
        items.append(item)
    return items


def bench_api(bench: Bench, name: str, pred, items: list[dict[str, Any]],
              batch_sizes: list[int], precision: str,
              latency_steps: int | None = None, tag: str = "",
              reference=None) -> list[dict[str, Any]]:
    """``predict`` per post (its latency is the step time) and ``predict_batch`` per chunk of
    ``batch_size`` posts (each call decodes and encodes its pictures). ``tag`` names a
    variant in the row ids (``api/NAME+TAG/...``); ``reference``: a predictor whose outputs
    on the first chunk the variant's are compared with (``same_predictions``)."""
    one = forever(items)
    label = name + (f"+{tag}" if tag else "")
    common = dict(section="inference", model=name, precision=precision,
                  image_decode=getattr(pred, "image_decode", "host"))
    with autocast(bench.device, precision):
        rows = [bench.measure(f"api/{label}/b1/{precision}", lambda: pred.predict(**next(one)), 1,
                              steps=latency_steps, what="predict", batch_size=1, **common)]
        for bs in batch_sizes:
            chunk_list = ([items[k:k + bs] for k in range(0, len(items) - bs + 1, bs)]
                          or [(items * bs)[:bs]])
            chunks = forever(chunk_list)
            rows.append(bench.measure(f"api/{label}/b{bs}/{precision}",
                                      lambda: pred.predict_batch(next(chunks), batch_size=bs),
                                      bs, what="predict_batch", batch_size=bs, **common))
            if reference is not None:
                rows[-1].update(_same_predictions(reference, pred, chunk_list[0], bs))
    return rows


def _same_predictions(ref, pred, items: list[dict[str, Any]], bs: int) -> dict[str, Any]:
    """How many posts get the same labels / spans from ``pred`` as from ``ref`` (scores
    apart), and the largest score difference."""
    a, b = ref.predict_batch(items, batch_size=bs), pred.predict_batch(items, batch_size=bs)

    def key(r):
        if isinstance(r, list):  # NER entities
            return [(e["start"], e["end"], e["type"]) for e in r]
        return r.get("relation", r.get("type"))

    def scores(r):
        return [e["score"] for e in r] if isinstance(r, list) else [r.get("score", 0.0)]

    same = sum(key(x) == key(y) for x, y in zip(a, b))
    diffs = [abs(u - v) for x, y in zip(a, b) if key(x) == key(y)
             for u, v in zip(scores(x), scores(y))]
    return {"same_predictions": same, "compared_posts": len(a),
            "max_score_diff": round(max(diffs, default=0.0), 6)}


def jpeg_items(items: list[dict[str, Any]], folder: Path, quality: int = 90) -> list[dict[str, Any]]:
    """The items with their pictures re-encoded as JPEG (photographs are JPEGs; the synthetic
    set's are PNGs), each once, under ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    done: dict[str, str] = {}
    out = []
    for it in items:
        it = dict(it)
        src = it.get("image")
        if src is not None:
            if src not in done:
                dst = folder / (Path(src).stem + f"_{len(done)}.jpg")
                Image.open(src).convert("RGB").save(dst, "JPEG", quality=quality)
                done[src] = str(dst)
            it["image"] = done[src]
        out.append(it)
    return out


# ---- 5. feature cache ------------------------------------------------------------------------------
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


# ---- machine, ratios, comparison ----------------------------------------------------------------
def _cmd(args: list[str]) -> str | None:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=20)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info(device: torch.device) -> dict[str, Any]:
    import lightning
    import transformers

    import mmie

    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    info = {"hostname": platform.node(), "python": platform.python_version(),
            "platform": platform.platform(), "cpu_model": cpu_model,
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "transformers": transformers.__version__, "lightning": lightning.__version__,
            "mmie": mmie.__version__, "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_count"] = torch.cuda.device_count()
        info["gpu_capability"] = list(torch.cuda.get_device_capability(device))
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory
                                       / 2 ** 30, 1)
        smi = _cmd(["nvidia-smi", "--query-gpu=driver_version,name,clocks.max.sm,power.limit",
                    "--format=csv,noheader"])
        info["nvidia_smi"] = smi
        info["driver"] = smi.splitlines()[0].split(",")[0].strip() if smi else None
    return info


def ratio_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every MMIB training / prediction row against the reference loop of the same run:
    training rows vs ``train/mmib/reference`` (fp32, at the same batch size when measured,
    else at the one measured: the incumbent's batch size against mmie's), prediction rows
    vs ``predict_reference/mmib`` (one post at a time)."""
    by = {r["id"]: r for r in rows}
    train_refs = [r for r in rows if r.get("mode") == "reference" and r.get("model") == "mmib"]
    out = []
    for r in rows:
        if r.get("model") != "mmib" or r.get("mode") == "reference" \
                or r.get("section") == "reference":
            continue
        if r["id"].startswith("train/"):
            ref = by.get(f"train/mmib/reference/b{r['batch_size']}/fp32") or (
                train_refs[0] if train_refs else None)
        elif r["id"].startswith(("predict/", "api/")):
            ref = by.get("predict_reference/mmib/b1/fp32")
        else:
            continue
        if ref is None:
            continue
        out.append({"row": r["id"], "reference": ref["id"],
                    "posts_per_s": r["posts_per_s"], "reference_posts_per_s": ref["posts_per_s"],
                    "ratio": round(r["posts_per_s"] / ref["posts_per_s"], 2)})
    return out


def compare(a: dict[str, Any], b: dict[str, Any], tol: float = AGREE) -> dict[str, Any]:
    """Row by row (same id in both runs): posts/s of run 2 / run 1; they agree when
    ``max / min - 1 <= tol``. Ratio rows are compared the same way."""
    rows = []
    for kind, key, get in (("row", "id", lambda r: r["posts_per_s"]),
                           ("ratio", "row", lambda r: r["ratio"])):
        src = "rows" if kind == "row" else "ratios"
        bb = {r[key]: r for r in b.get(src, [])}
        for ra in a.get(src, []):
            rb = bb.get(ra[key])
            if rb is None:
                continue
            x, y = get(ra), get(rb)
            dev = max(x, y) / min(x, y) - 1 if min(x, y) > 0 else float("inf")
            rows.append({"kind": kind, "id": ra[key], "run1": x, "run2": y,
                         "run2_over_run1": round(y / x, 3) if x else None,
                         "deviation": round(dev, 3), "agree": dev <= tol})
    worst = max(rows, key=lambda r: r["deviation"], default=None)
    return {"tolerance": tol, "rows_compared": len(rows),
            "rows_agreeing": sum(r["agree"] for r in rows),
            "all_agree": all(r["agree"] for r in rows) and bool(rows),
            "worst": worst, "rows": rows,
            "run1": {"command": a.get("command"), "machine": a.get("machine")},
            "run2": {"command": b.get("command"), "machine": b.get("machine")}}


def print_comparison(c: dict[str, Any]) -> None:
    print(f"\n== two runs: {c['rows_agreeing']} / {c['rows_compared']} rows agree within "
          f"{100 * c['tolerance']:.0f} % ==")
    for r in c["rows"]:
        flag = "" if r["agree"] else "   <-- differs"
        print(f"{r['kind']:<6}{r['id']:<46}{r['run1']:>11}{r['run2']:>11}"
              f"{100 * r['deviation']:>8.1f} %{flag}")
    print("AGREE" if c["all_agree"] else "DO NOT AGREE (see rows marked)")


def print_table(res: dict[str, Any]) -> None:
    print(f"\n== rows in measuring order (posts/s: median [p10, p90] over "
          f"{res['params']['steps']} timed steps) ==")
    for r in res["rows"]:
        print(f"{r['seq']:>3} {r['id']:<46}{r['posts_per_s']:>11} [{r['posts_per_s_p10']}, "
              f"{r['posts_per_s_p90']}]  warm-up {r['warmup_steps']}"
              f"{'' if r['warmup_converged'] else '*'}"
              + (f"  GPU busy {100 * r['gpu_busy_fraction']:.0f} % "
                 f"({r['gpu_kernels_per_step']:.0f} kernels, {r['aten_ops_per_step']:.0f} ops)"
                 if "gpu_busy_fraction" in r else ""))
    if res.get("ratios"):
        print("\n== against the reference loop (eager fp32, one picture at a time), same run ==")
        for r in res["ratios"]:
            print(f"{r['row']:<46} x{r['ratio']}  (reference {r['reference_posts_per_s']})")
    if "feature_cache" in res:
        c = res["feature_cache"]
        print(f"\n== feature cache: {c['images']} images, first {c['first_s']} s, second "
              f"{c['second_s']} s (x{c['speedup']}) ==")
    if "pipeline" in res:
        p = res["pipeline"]
        print(f"== pipeline: {p['posts']} posts: extract_batch {p['pipeline_posts_per_s']} "
              f"posts/s vs loop {p['loop_posts_per_s']} posts/s (x{p['speedup']}) ==")
    print(f"peak RSS {res['peak_maxrss_mb']} MiB; total {res['total_s']} s")


# ---- main ------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--output", default=None,
                    help="result JSON (default results/speed/speed_<device>.json; with "
                         "--compare: where to write the comparison, else only printed)")
    ap.add_argument("--synthetic-size", type=int, default=600,
                    help="training posts of the synthetic set (the pool the steps cycle over)")
    ap.add_argument("--batch-size", type=int, default=16, help="batch of the train section")
    ap.add_argument("--warmup", type=int, default=3,
                    help="fewest warm-up steps (warm-up goes on until 3 steps agree within 10 %%)")
    ap.add_argument("--max-warmup", type=int, default=60, help="most warm-up steps")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per row (>= 30)")
    ap.add_argument("--cuda-graphs", action="store_true",
                    help="also time the NER prediction rows with the CRF replayed from CUDA "
                         "graphs (rows ending in /graphs; outputs checked against eager)")
    ap.add_argument("--profile-steps", type=int, default=0,
                    help="steps per row run under torch.profiler after the timed ones (not "
                         "timed): operators, GPU kernels and GPU busy time per step")
    ap.add_argument("--latency-posts", type=int, default=None,
                    help="timed posts of the per-post API row (default: --steps)")
    ap.add_argument("--batch-posts", type=int, default=64,
                    help="posts for the API's predict_batch rows (the pool they cycle over)")
    ap.add_argument("--api-batch", type=int, nargs="*", default=None,
                    help="predict_batch sizes (default 32, and 256 on CUDA)")
    ap.add_argument("--api-jpeg", action="store_true",
                    help="the API rows' pictures re-encoded as JPEG (quality 90) first")
    ap.add_argument("--api-image-decode", nargs="+", default=["host"],
                    choices=["host", "device", "nvjpeg"],
                    help="image_decode of the API rows: host (Pillow), device (libjpeg "
                    "decode_jpeg + tensor resize on --device) and/or nvjpeg (decoded on the "
                    "GPU too); non-host rows are compared with the host predictor's outputs "
                    "(call 4's 'device' rows ran what is now nvjpeg)")
    ap.add_argument("--api-device-batch", type=int, nargs="*", default=None,
                    help="batch sizes of the image_decode=device API rows (default: --api-batch)")
    ap.add_argument("--cache-images", type=int, default=32)
    ap.add_argument("--pipeline-posts", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--workers", type=int, default=0,
                    help="DataLoader workers building the cached-feature batches")
    ap.add_argument("--load-threshold", type=float, default=1.5)
    ap.add_argument("--max-wait", type=float, default=300.0)
    ap.add_argument("--no-wait", action="store_true")
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"],
                    help="one or both, measured in the same process (bf16: torch.autocast; "
                         "the reference loop is always fp32)")
    ap.add_argument("--sweep", type=int, nargs="*", default=[],
                    help="batch sizes of the cached-feature sweep (training, prediction)")
    ap.add_argument("--models", nargs="+", default=["text", "mmib", "mg_vmoe"],
                    choices=["text", "mmib", "mg_vmoe"])
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    ap.add_argument("--api-models", nargs="+", default=None, choices=["text", "mmib", "mg_vmoe"],
                    help="models of the inference (Python API) rows (default --models; "
                         "MG-VMoE's API encodes every candidate label per call: slow)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="N > 1: run the benchmark N times, each in a fresh process, writing "
                         "<output>_run<i>.json and <output>_compare.json (runs 1 and N)")
    ap.add_argument("--compare", nargs=2, metavar=("RUN1", "RUN2"),
                    help="only compare two result files (agreement within 15 %%)")
    a = ap.parse_args(argv)
    if a.steps < 30:
        print(f"[speed] note: --steps {a.steps} < 30 (the method asks for >= 30)", flush=True)
    return a


def repeat_runs(a: argparse.Namespace, argv: list[str]) -> int:
    out = Path(a.output)
    stem = out.with_suffix("")
    child = [x for x in argv]
    # drop --repeat N and --output X from the child's arguments
    for flag in ("--repeat", "--output"):
        while flag in child:
            k = child.index(flag)
            del child[k:k + 2]
    child = [x for x in child if not x.startswith(("--repeat=", "--output="))]
    paths = []
    for i in range(1, a.repeat + 1):
        p = Path(f"{stem}_run{i}.json")
        print(f"[speed] === run {i} / {a.repeat} -> {p} ===", flush=True)
        rc = subprocess.call([sys.executable, str(Path(__file__).resolve()), *child,
                              "--output", str(p)])
        if rc != 0:
            print(f"[speed] run {i} failed (exit {rc})", flush=True)
            return rc
        paths.append(p)
    c = compare(*(json.loads(p.read_text(encoding="utf-8")) for p in (paths[0], paths[-1])))
    c["files"] = [str(p) for p in paths]
    cp = Path(f"{stem}_compare.json")
    cp.write_text(json.dumps(c, indent=2) + "\n", encoding="utf-8")
    print_comparison(c)
    print(f"wrote {cp}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.compare:
        a, b = (json.loads(Path(p).read_text(encoding="utf-8")) for p in args.compare)
        c = compare(a, b)
        c["files"] = list(args.compare)
        print_comparison(c)
        if args.output:
            out = Path(args.output)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(c, indent=2) + "\n", encoding="utf-8")
            print(f"wrote {out}")
        return 0 if c["all_agree"] else 1
    if args.output is None:
        args.output = str(ROOT / "results" / "speed" / f"speed_{args.device}.json")
    if args.repeat > 1:
        return repeat_runs(args, argv)

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = Clock(device)
    bench = Bench(clock, device, args.warmup, args.max_warmup, args.steps,
                  args.profile_steps)
    load = ({"load_1min_at_start": round(load_1min(), 2), "waited_s": 0.0} if args.no_wait
            else wait_for_quiet(args.load_threshold, 20.0, args.max_wait))
    t_start = time.perf_counter()
    api_batch = args.api_batch if args.api_batch is not None else (
        [32, 256] if device.type == "cuda" else [32])
    n_items = max(args.batch_posts, args.pipeline_posts, *api_batch,
                  *(args.api_device_batch or []), 32)
    sections = set(args.sections)
    res: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, "benchmarks/speed.py", *argv]),
        "commit": os.environ.get("MMIE_COMMIT") or _cmd(["git", "-C", str(ROOT), "rev-parse",
                                                          "--short", "HEAD"]),
        "machine": machine_info(device), "load": load,
        "params": {"synthetic_size": args.synthetic_size, "batch_size": args.batch_size,
                   "min_warmup": args.warmup, "max_warmup": args.max_warmup,
                   "warmup_rule": f"until 3 consecutive steps within {100 * STABLE:.0f} %",
                   "steps": args.steps, "profile_steps": args.profile_steps,
                   "cuda_graphs": args.cuda_graphs,
                   "batch_posts": args.batch_posts, "api_batch": api_batch,
                   "cache_images": args.cache_images, "pipeline_posts": args.pipeline_posts,
                   "precision": args.precision, "execution": "eager", "sweep": args.sweep,
                   "models": args.models, "sections": sorted(sections),
                   "api_models": args.api_models or args.models,
                   "api_pictures": "jpeg q90" if args.api_jpeg else "as generated (png)",
                   "api_image_decode": args.api_image_decode,
                   "api_device_batch": args.api_device_batch,
                   "workers": args.workers, "text_encoder": "minilm",
                   "vision_encoder": "efficientnet_lite0",
                   "timer": "time.perf_counter between torch.cuda.synchronize() calls"
                   if device.type == "cuda" else "time.perf_counter"},
        "rows": []}
    from mmie.models.factory import save_pretrained

    work = Path(tempfile.mkdtemp(prefix="mmie-speed-"))
    keep = {"train": args.synthetic_size, "dev": n_items, "test": n_items}
    model_dirs: dict[str, Path] = {}
    setups: dict[str, Setup] = {}
    need_re = "pipeline" in sections and "mmib" in args.models
    for name in args.models:
        print(f"[speed] setup: {name}", flush=True)
        su = Setup(name, args.synthetic_size, device, keep=keep)
        su.prime_cache()
        setups[name] = su
        if "train" in sections:
            for prec in args.precision:
                for mode in (["cached", "pixels"] if su.uses_image else ["cached"]):
                    bench_training(bench, su, mode, args.batch_size, prec, args.workers)
        if name == "mmib" and ("reference" in sections or "train" in sections):
            bench_training(bench, su, "reference", args.batch_size, "fp32", 0)
            bench_predict_reference(bench, su)
        if "sweep" in sections:
            for bs in args.sweep:
                for prec in args.precision:
                    if f"train/{name}/cached/b{bs}/{prec}" not in {r["id"] for r in bench.rows}:
                        bench_training(bench, su, "cached", bs, prec, args.workers)
                    bench_predict(bench, su, bs, prec, args.workers, args.cuda_graphs)
        if "inference" in sections or (name == "mmib" and need_re):
            model_dirs[name] = save_pretrained(su.model, su.task, su.cfg, work / name)

    if need_re:  # RE model for the pipeline (briefly trained, not timed)
        print("[speed] RE model for the pipeline", flush=True)
        su_re = Setup("mmib_re", args.synthetic_size, device, keep=keep)
        su_re.prime_cache()
        sub = Bench(clock, device, 1, 1, 3)
        bench_training(sub, su_re, "cached", args.batch_size, "fp32", 0)
        model_dirs["mmib_re"] = save_pretrained(su_re.model, su_re.task, su_re.cfg,
                                                work / "mmib_re")
        del su_re

    if "inference" in sections:
        import mmie

        for name in [m for m in (args.api_models or args.models) if m in model_dirs]:
            print(f"[speed] inference (Python API): {name}", flush=True)
            items = inference_items(setups[name], n_items)
            if args.api_jpeg:
                items = jpeg_items(items, work / "jpeg" / name)
            host = mmie.load(model_dirs[name], device=device)
            for decode in args.api_image_decode:
                if decode != "host" and not setups[name].uses_image:
                    continue
                pred = host if decode == "host" else mmie.load(
                    model_dirs[name], device=device, image_decode=decode)
                batches = api_batch if decode == "host" or args.api_device_batch is None \
                    else args.api_device_batch
                for prec in args.precision:
                    rows = bench_api(bench, name, pred, items, batches, prec,
                                     args.latency_posts,
                                     tag="" if decode == "host" else f"{decode}_decode",
                                     reference=None if decode == "host" else host)
                    if decode != "host":
                        rows[-1]["image_decode_counts"] = pred.info().get("image_decode_counts")
                del pred
            del host

    if "cache" in sections and "mmib" in setups:
        print("[speed] feature cache (single pass)", flush=True)
        su = setups["mmib"]
        seen, paths = set(), []
        for split in ("test", "dev", "train"):
            for ex in su.splits[split]:
                p = su.image_path(split, ex)
                if p not in seen:
                    seen.add(p)
                    paths.append(p)
        res["feature_cache"] = bench_cache(su.vision, paths[:args.cache_images], clock, device)

    if need_re:
        print("[speed] pipeline (single pass)", flush=True)
        with autocast(device, args.precision[0]):
            res["pipeline"] = bench_pipeline(model_dirs["mmib"], model_dirs["mmib_re"],
                                             inference_items(setups["mmib"], args.pipeline_posts),
                                             clock, device)
    res["rows"] = bench.rows
    res["order"] = [r["id"] for r in bench.rows]
    res["ratios"] = ratio_rows(bench.rows)
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
