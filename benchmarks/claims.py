"""The experiment harness for issue 17's claims: a declared grid of recipes x seeds run as
parallel processes on one GPU, raw rows with per-post statistics, and regenerated tables with
paired bootstrap confidence intervals.

    # what would run (validates every config and override, starts nothing)
    python benchmarks/claims.py run benchmarks/claims_photos.yaml --out OUT --dry-run
    # on the GPU machine (one device call; see docs/evaluation.md, "Claims harness"):
    source device/env.sh && python3 benchmarks/claims.py run benchmarks/claims_photos.yaml \
        --out $OUT/claims --parallel 8 --deadline 540
    # here, from the rows that came back:
    python benchmarks/claims.py table benchmarks/claims_photos.yaml --rows results/claims_photos \
        --write docs/results.md

Grid file (YAML; see benchmarks/claims_photos.yaml):

    name: photos                       # marker name of the docs/results.md section
    title: ...                         # section heading
    vars: {data: runs/claims/photos}   # {name} substitutions (also {out}, {seed}; --var k=v)
    build: [shell command, ...]        # makes the data set, skipped when `done` exists
    done: "{data}/summary.json"
    summary: "{data}/summary.json"     # the data set's summary (version, ceilings): kept
    seeds: [0, 1, 2, 3, 4]
    common: [key=value, ...]           # --set overrides of every run
    runs:                              # one entry per table row
      - {name: mmib_photos_ner, config: configs/mmib_photos_ner.yaml, set: [...],
         label: "MMIB", est_s: 120, folds: false,
         ceiling: text_only_ceiling.ner_f1.test}   # shown beside the mean (dotted path)
    comparisons:                       # every difference a sentence claims
      - {a: mmib_photos_ner, b: text_photos_ner, metric: f1, target: 25,
         subsets: [all, noisy_picture], claim: "MMIB >= text-only + 25 F1"}

Each run is ``python3 -m mmie train CONFIG --set ... --seed S --output-dir RUN_DIR`` (model
selection and early stopping on dev as the recipe declares; one test evaluation writing
``predictions_test.jsonl``). When it ends the driver scores the test predictions overall and
per subset (``{split}.subsets.jsonl`` beside each split file: ``{"id", "subsets": [...]}`` per
post, in file order) and appends one row to ``OUT/rows.jsonl`` and the run's per-post
statistics to ``OUT/posts.jsonl.gz``. Failures go to ``OUT/failures.jsonl``; the runs' logs and
per-epoch metrics (loss-term magnitudes) to ``OUT/logs.tar.gz``.
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import hashlib
import io
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]

#: metrics scored per kind of run; the first is the headline
KIND_METRICS = {"ner": ("f1",), "re": ("f1", "accuracy"), "zs": ("accuracy", "macro_f1")}
METRIC_NAMES = {"f1": "F1", "accuracy": "acc", "macro_f1": "macro-F1"}
SUBSET_ORDER = ("picture_decides", "text_decides", "noisy_picture", "two_mentions", "collage")
ENCODER_NAMES = {"minilm": "all-MiniLM-L6-v2",
                 "efficientnet_lite0": "EfficientNet-Lite0 (frozen)"}
BEGIN, END = "<!-- claims:begin {} -->", "<!-- claims:end {} -->"


class GridError(ValueError):
    """A grid file that cannot be used (names the file and the entry)."""


# ---- the grid ---------------------------------------------------------------------------------
@dataclass
class Job:
    name: str
    seed: int
    config: str
    overrides: list[str]
    run_dir: Path
    task: str
    kind: str
    uses_image: bool
    cache_key: str
    est_s: float
    label: str = ""

    def command(self, python: str = "python3") -> list[str]:
        cmd = [python, "-m", "mmie", "train", self.config]
        for ov in self.overrides:
            cmd += ["--set", ov]
        return cmd + ["--seed", str(self.seed), "--output-dir", str(self.run_dir)]


def _subst(value: Any, env: dict[str, Any]) -> Any:
    if isinstance(value, str):
        try:
            return value.format(**env)
        except KeyError as e:
            raise GridError(f"unknown variable {{{e.args[0]}}} in {value!r}; known: "
                            f"{', '.join(sorted(env))}") from None
    if isinstance(value, list):
        return [_subst(v, env) for v in value]
    return value


def load_grid(path: str | Path, out: Path, cli_vars: Sequence[str] = ()) -> dict[str, Any]:
    """Read a grid file and substitute its variables (``{out}`` = ``out``; ``--var k=v`` wins
    over the file's ``vars``). Relative paths in variables are made absolute."""
    path = Path(path)
    try:
        g = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise GridError(f"{path}: {e}") from None
    if not isinstance(g, dict) or not isinstance(g.get("runs"), list) or not g["runs"]:
        raise GridError(f"{path}: expected a mapping with a non-empty 'runs' list")
    known = {"name", "title", "vars", "build", "done", "summary", "seeds", "common", "runs",
             "comparisons", "notes"}
    extra = set(g) - known
    if extra:
        raise GridError(f"{path}: unknown keys {sorted(extra)}; known: {sorted(known)}")
    env: dict[str, Any] = {"out": str(out.resolve()), "python": sys.executable}
    for k, v in dict(g.get("vars") or {}).items():
        env[k] = v
    for kv in cli_vars:
        if "=" not in kv:
            raise GridError(f"--var {kv!r}: expected NAME=VALUE")
        k, v = kv.split("=", 1)
        env[k] = v
    for k, v in list(env.items()):
        if isinstance(v, str) and k not in ("out", "python") and ("/" in v or v.startswith(".")):
            env[k] = str(Path(_subst(v, env)).resolve())
    g["vars"] = env
    g["path"] = str(path)
    g.setdefault("name", path.stem)
    g["build"] = [_subst(c, env) for c in (g.get("build") or [])]
    for key in ("done", "summary"):
        if g.get(key):
            g[key] = _subst(g[key], env)
    g["common"] = _subst(list(g.get("common") or []), env)
    names = set()
    for i, r in enumerate(g["runs"]):
        if not isinstance(r, dict) or "name" not in r or "config" not in r:
            raise GridError(f"{path}: runs[{i}] needs 'name' and 'config'")
        unknown = set(r) - {"name", "config", "set", "label", "est_s", "folds", "seeds",
                            "ceiling"}
        if unknown:
            raise GridError(f"{path}: runs[{i}] ({r['name']}): unknown keys {sorted(unknown)}")
        if r["name"] in names:
            raise GridError(f"{path}: run name {r['name']!r} appears twice")
        names.add(r["name"])
        r["set"] = _subst(list(r.get("set") or []), env)
    for i, c in enumerate(g.get("comparisons") or []):
        for k in ("a", "b"):
            if c.get(k) not in names:
                raise GridError(f"{path}: comparisons[{i}].{k} = {c.get(k)!r} is not a run name")
    g.setdefault("comparisons", [])
    return g


def expand_jobs(grid: dict[str, Any], runs_dir: Path, only: Sequence[str] = (),
                seeds: Sequence[int] | None = None, extra: Sequence[str] = ()) -> list[Job]:
    """Jobs (run x seed) of the grid, configs resolved (so a bad key fails here, naming it)."""
    from mmie.config import load_config
    from mmie.registry import zero_shot_types
    from mmie.training.train import model_uses_image

    if only:
        unmatched = [p for p in only if not any(fnmatch.fnmatch(r["name"], p)
                                                for r in grid["runs"])]
        if unmatched:
            raise GridError(f"--only {unmatched}: no run matches; runs: "
                            f"{', '.join(r['name'] for r in grid['runs'])}")
    jobs = []
    for r in grid["runs"]:
        if only and not any(fnmatch.fnmatch(r["name"], p) for p in only):
            continue
        for seed in (seeds if seeds is not None else r.get("seeds", grid.get("seeds", [0]))):
            folds = ([f"data.zero_shot_seed={seed}", f"data.zero_shot_fold={seed % 3}"]
                     if r.get("folds") else [])
            ovs = [*grid["common"], *r["set"], *folds, *extra]
            ovs = [_subst(o, {**grid["vars"], "seed": seed}) for o in ovs]
            run_dir = runs_dir / r["name"] / f"seed{seed}"
            try:
                cfg = load_config(REPO / r["config"] if not Path(r["config"]).is_absolute()
                                  else r["config"], ovs)
            except Exception as e:  # ConfigError names the key and its closest valid ones
                raise GridError(f"{grid['path']}: run {r['name']} (seed {seed}): {e}") from None
            zs = cfg.model.type in zero_shot_types()
            kind = "zs" if zs else cfg.model.task
            if kind not in KIND_METRICS:
                raise GridError(f"run {r['name']}: task {cfg.model.task!r} is not scored here")
            img = model_uses_image(cfg)
            key = f"{cfg.data.name}|{cfg.data.data_dir}|{cfg.model.task}|{cfg.model.vision_encoder}"
            jobs.append(Job(r["name"], int(seed), r["config"], ovs, run_dir, cfg.model.task,
                            kind, img, key if img else "", float(r.get("est_s", 60)),
                            r.get("label", r["name"])))
    return jobs


# ---- scoring one finished run -------------------------------------------------------------------
def _split_files(cfg, split: str) -> list[Path]:
    """The split file(s) a run read for ``split`` (every alias that exists)."""
    from mmie.data import catalog
    from mmie.training.data import SPLIT_ALIASES, dataset_source, read_task

    name, data_dir = dataset_source(cfg)
    out = []
    for alias in SPLIT_ALIASES.get(split, (split,)):
        try:
            if name in catalog.DATASETS:
                p = catalog.split_path(name, alias, data_dir=data_dir, task=read_task(cfg))
            else:
                p = catalog._find_split_file(Path(name), alias, read_task(cfg))
        except KeyError:
            continue
        if p.is_file() and p not in out:
            out.append(p)
    return out


def _subsets_file(split_file: Path, split: str) -> Path | None:
    stem = split_file.name.split(".")[0]
    names = [stem, stem.removeprefix("mnre_"), split]
    for n in dict.fromkeys(names):
        p = split_file.with_name(f"{n}.subsets.jsonl")
        if p.is_file():
            return p
    return None


def read_subsets(cfg, splits: Iterable[str]) -> dict[str, list[str]] | None:
    """``{example id: [subset tags]}`` from the ``*.subsets.jsonl`` files beside the split
    files of ``splits``; None when there are none. Lines are matched to the reader's examples
    in file order; their ``id`` must equal the reader's id (unless the reader only numbers
    the posts, ``<file stem>-<index>``, as for MNRE-style lines), and the line count must
    equal the number of posts."""
    from mmie.data.io import iter_json_objects
    from mmie.training.data import load_examples

    found: dict[str, list[str]] = {}
    any_file = False
    for split in splits:
        files = _split_files(cfg, split)
        sub = next((s for s in (_subsets_file(f, split) for f in files) if s), None)
        if sub is None:
            continue
        any_file = True
        lines = [(n, d) for n, d in iter_json_objects(sub)]
        saved_limit = (cfg.data.limit_train, cfg.data.limit_eval)
        cfg.data.limit_train = cfg.data.limit_eval = None
        try:
            exs = load_examples(cfg, split)
        finally:
            cfg.data.limit_train, cfg.data.limit_eval = saved_limit
        if len(lines) != len(exs):
            raise GridError(f"{sub}: {len(lines)} lines but {len(exs)} posts in the {split} "
                            "split (one line per post, in file order)")
        stem = files[0].name.split(".")[0]
        for k, ((lineno, d), ex) in enumerate(zip(lines, exs)):
            tags = d.get("subsets")
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise GridError(f"{sub}:{lineno}: 'subsets' must be a list of strings")
            # MNRE-style lines carry no id: the reader names them "<file stem>-<index>", so
            # there the position is the only key and any id in the subsets file is accepted
            positional = str(ex.id) == f"{stem}-{k}"
            if "id" in d and str(d["id"]) != str(ex.id) and not positional:
                raise GridError(f"{sub}:{lineno}: id {d['id']!r} but the post there is "
                                f"{ex.id!r} (lines must follow the split file's order)")
            found[str(ex.id)] = sorted(set(tags))
    return found if any_file else None


def _post_tags(pid: str, subsets: dict[str, list[str]]) -> list[str]:
    if pid in subsets:
        return subsets[pid]
    base = pid.rsplit("#", 1)[0]  # a typing instance "<post id>#<mention>"
    if base in subsets:
        return subsets[base]
    raise GridError(f"prediction for {pid!r} has no line in the subsets files")


def run_posts(run_dir: Path, kind: str, subsets: dict[str, list[str]] | None
              ) -> dict[str, Any]:
    """Per-post data of a finished run from ``predictions_test.jsonl`` (file order): ids,
    subset tags, and the entity counts (NER) or gold / predicted labels."""
    from mmie.data.io import iter_json_objects
    from mmie.metrics.bootstrap import ner_post_counts

    path = run_dir / "predictions_test.jsonl"
    if not path.is_file():
        raise GridError(f"{run_dir}: no predictions_test.jsonl (did training finish?)")
    recs = [d for _, d in iter_json_objects(path)]
    ids = [str(d["id"]) for d in recs]
    out: dict[str, Any] = {"kind": kind, "ids": ids}
    if kind == "ner":
        for i, d in enumerate(recs):
            if "gold_tags" not in d or "pred_tags" not in d:
                raise GridError(f"{path}:{i + 1}: NER record without gold_tags / pred_tags")
        out["counts"] = ner_post_counts([d["gold_tags"] for d in recs],
                                        [d["pred_tags"] for d in recs]).tolist()
    else:
        out["gold"] = [str(d["gold"]) for d in recs]
        out["pred"] = [str(d["pred"]) for d in recs]
    out["subsets"] = [_post_tags(i, subsets) for i in ids] if subsets is not None else None
    return out


def post_stats(posts: dict[str, Any], metric: str, keep: np.ndarray | None = None
               ) -> tuple[list[str], np.ndarray]:
    """``(ids, [n, d] statistics)`` of ``metric`` over the posts (``keep``: a boolean mask)."""
    from mmie.metrics.bootstrap import (accuracy_post_stats, label_post_stats,
                                        re_post_counts)

    ids = posts["ids"]
    sel = np.ones(len(ids), bool) if keep is None else keep
    ids = [i for i, k in zip(ids, sel) if k]
    if posts["kind"] == "ner":
        if metric != "f1":
            raise GridError(f"NER runs are scored by f1, not {metric!r}")
        return ids, np.asarray(posts["counts"], dtype=np.int64).reshape(-1, 3)[sel]
    gold = [g for g, k in zip(posts["gold"], sel) if k]
    pred = [p for p, k in zip(posts["pred"], sel) if k]
    if metric == "accuracy":
        return ids, accuracy_post_stats(gold, pred)
    if metric == "macro_f1":
        return ids, label_post_stats(gold, pred, sorted(set(gold)))
    if metric == "f1" and posts["kind"] == "re":
        return ids, re_post_counts(gold, pred)
    raise GridError(f"metric {metric!r} does not apply to {posts['kind']} runs")


def subset_mask(posts: dict[str, Any], subset: str) -> np.ndarray:
    n = len(posts["ids"])
    if subset == "all":
        return np.ones(n, bool)
    if posts.get("subsets") is None:
        raise GridError(f"subset {subset!r}: the run has no subsets file")
    return np.array([subset in t for t in posts["subsets"]], bool)


def score(posts: dict[str, Any], metric: str, subset: str = "all") -> tuple[float, int]:
    """The metric on the posts of ``subset`` and how many posts that is."""
    from mmie.metrics.bootstrap import METRICS

    ids, st = post_stats(posts, metric, subset_mask(posts, subset))
    if not ids:
        return float("nan"), 0
    return float(METRICS[metric].value(st.sum(axis=0), np.int64(len(ids)))), len(ids)


def subset_names(posts: dict[str, Any]) -> list[str]:
    tags = {t for ts in (posts.get("subsets") or []) for t in ts}
    return [t for t in SUBSET_ORDER if t in tags] + sorted(tags - set(SUBSET_ORDER))


def score_run(job: Job, wall: float, meta: dict[str, Any]) -> tuple[dict, dict]:
    """The raw row and the per-post record of a finished run."""
    from mmie.config import load_config

    summary = json.loads((job.run_dir / "summary.json").read_text(encoding="utf-8"))
    cfg = load_config(job.run_dir / "config.yaml")
    splits = ["train", "dev", "test"] if job.kind == "zs" else ["test"]
    posts = run_posts(job.run_dir, job.kind, read_subsets(cfg, splits))
    test = summary.get("test") or {}
    by_subset: dict[str, dict[str, Any]] = {}
    for sub in ["all", *subset_names(posts)]:
        d: dict[str, Any] = {}
        for m in KIND_METRICS[job.kind]:
            d[m], d["n"] = score(posts, m, sub)
        by_subset[sub] = d
    # the counts reproduce the package's own test scores (seqeval / relation_scores / zs)
    check = {m: [by_subset["all"][m], test.get(m)] for m in KIND_METRICS[job.kind]
             if test.get(m) is not None}
    ok = all(abs(a - b) < 1e-9 for a, b in check.values())
    row = {"recipe": job.name, "label": job.label, "seed": job.seed, "config": job.config,
           "overrides": job.overrides, "task": job.task, "kind": job.kind,
           "model": cfg.model.type, "data": cfg.data.name, "data_dir": cfg.data.data_dir,
           "split": "test", "text_encoder": cfg.model.text_encoder,
           "vision_encoder": cfg.model.vision_encoder if job.uses_image else None,
           "precision": cfg.trainer.precision, "max_epochs": cfg.trainer.max_epochs,
           "patience": cfg.trainer.patience, "epochs_run": summary.get("epochs_run"),
           "best_epoch": summary.get("best_epoch"),
           "plateau": (summary.get("epochs_run") or 0) < cfg.trainer.max_epochs,
           "dev": summary.get("dev"), "test": test, "subsets": by_subset,
           "check": {"ok": ok, "from_posts_vs_package": check},
           "zero_shot": ({"seed": cfg.data.zero_shot_seed, "fold": cfg.data.zero_shot_fold}
                         if job.kind == "zs" else None),
           "train_seconds": summary.get("train_seconds"),
           "total_seconds": summary.get("total_seconds"), "wall_seconds": round(wall, 1),
           "device": summary.get("device"), "examples": summary.get("report", {}).get(
               "examples_used"), **meta}
    return row, {"recipe": job.name, "seed": job.seed, **posts}


# ---- the driver ---------------------------------------------------------------------------------
def _git_commit() -> str:
    """The commit the runs come from: ``MMIE_COMMIT`` when set (a GPU machine's copy of the
    working tree carries the session's first ``.git``, so its HEAD can be stale), else HEAD."""
    if os.environ.get("MMIE_COMMIT"):
        return os.environ["MMIE_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _data_version(grid: dict[str, Any]) -> dict[str, Any]:
    p = Path(grid["summary"]) if grid.get("summary") else None
    if not p or not p.is_file():
        return {"summary": None}
    raw = p.read_bytes()
    s = json.loads(raw)
    keep = {k: s[k] for k in ("version", "seed", "size", "sizes") if k in s}
    return {"summary": str(p), "summary_sha256": hashlib.sha256(raw).hexdigest(), **keep}


def build_data(grid: dict[str, Any], log) -> float:
    """Run the grid's build commands unless its ``done`` file exists; seconds spent."""
    done = Path(grid["done"]) if grid.get("done") else None
    if done is not None and done.exists():
        log(f"data: {done} exists, build skipped")
        return 0.0
    t0 = time.perf_counter()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    for cmd in grid["build"]:
        log(f"data: {cmd}")
        r = subprocess.run(cmd, shell=True, cwd=REPO, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise GridError(f"data build failed (rc {r.returncode}): {cmd}\n{r.stdout[-2000:]}"
                            f"\n{r.stderr[-4000:]}")
    if done is not None and not done.exists():
        raise GridError(f"data build finished but {done} does not exist")
    return time.perf_counter() - t0


def _done_keys(paths: Sequence[Path]) -> set[tuple[str, int]]:
    keys = set()
    for p in paths:
        p = p / "rows.jsonl" if p.is_dir() else p
        if p.is_file():
            for line in p.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    r = json.loads(line)
                    keys.add((r["recipe"], int(r["seed"])))
    return keys


def _append(path: Path, obj: dict, gz: bool = False) -> None:
    line = (json.dumps(obj, ensure_ascii=False) + "\n").encode()
    if gz:
        with gzip.open(path, "ab") as f:  # a gzip file may hold several members
            f.write(line)
    else:
        with open(path, "ab") as f:
            f.write(line)


def _pack_logs(out: Path, jobs: Sequence[Job]) -> None:
    keep = ("train.log", "metrics.jsonl", "summary.json", "config.yaml", "eval_test.json")
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        for j in jobs:
            for name in keep:
                p = j.run_dir / name
                if p.is_file():
                    data = p.read_bytes()
                    if name == "train.log" and len(data) > 200_000:
                        data = data[-200_000:]
                    info = tarfile.TarInfo(f"{j.name}/seed{j.seed}/{name}")
                    info.size = len(data)
                    info.mtime = int(time.time())
                    tar.addfile(info, io.BytesIO(data))


def run_grid(grid: dict[str, Any], jobs: list[Job], out: Path, *, parallel: int,
             deadline_s: float, threads: int, python: str, gate: bool = True,
             command_line: str = "", keep_checkpoints: bool = False) -> dict[str, Any]:
    """Build the data, run the jobs ``parallel`` at a time (seed by seed, longest estimate
    first within a seed; a job using images waits until the first job of the same data and
    encoder has filled the feature cache), start nothing whose estimate no longer fits before
    the deadline and kill what still runs at it. A scored run's ``checkpoints/`` are deleted unless
    ``keep_checkpoints`` (its ``model/`` stays). Returns counts."""
    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / "driver.log", "a", encoding="utf-8")

    def log(msg: str) -> None:
        line = f"[{time.perf_counter() - t_start:7.1f}s] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    build_s = build_data(grid, log)
    version = _data_version(grid)
    if grid.get("summary") and Path(grid["summary"]).is_file():
        (out / "data_summary.json").write_bytes(Path(grid["summary"]).read_bytes())
    meta = {"grid": grid["name"], "data_version": version, "commit": _git_commit(),
            "command": command_line, "parallel": parallel, "omp_threads": threads}
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    # seed-major (every run's seed 0 before any seed 1), so that a grid cut by the deadline
    # still has the same seeds for every run it compares; the longest first within a seed
    pending = sorted(jobs, key=lambda j: (j.seed, -j.est_s))
    running: dict[int, tuple[Job, subprocess.Popen, float]] = {}
    warm: dict[str, bool] = {}  # cache key -> first job has features (or ended)
    first_of: dict[str, Job] = {}
    n_ok = n_fail = n_cut = 0
    log(f"{len(jobs)} runs, {parallel} at a time, deadline {deadline_s:.0f}s "
        f"(data build {build_s:.0f}s)")

    def finished(job: Job, proc: subprocess.Popen, t0: float) -> None:
        nonlocal n_ok, n_fail
        wall = time.perf_counter() - t0
        if proc.returncode == 0:
            try:
                row, posts = score_run(job, wall, meta)
            except Exception as e:  # noqa: BLE001  (recorded, the grid goes on)
                n_fail += 1
                _append(out / "failures.jsonl", {"recipe": job.name, "seed": job.seed,
                                                 "error": f"scoring: {e}"})
                log(f"FAIL scoring {job.name} seed {job.seed}: {e}")
                return
            _append(out / "rows.jsonl", row)
            _append(out / "posts.jsonl.gz", posts, gz=True)
            n_ok += 1
            for j in pending:  # the remaining seeds of this run: the measured time, not the guess
                if j.name == job.name:
                    j.est_s = max(wall * 1.1, 10.0)
            if not keep_checkpoints:  # ~0.5 GB a run (weights + optimizer, best and last)
                shutil.rmtree(job.run_dir / "checkpoints", ignore_errors=True)
            head = KIND_METRICS[job.kind][0]
            log(f"done {job.name} seed {job.seed}: test {head} "
                f"{100 * row['subsets']['all'][head]:.2f}, epochs {row['epochs_run']} "
                f"(best {row['best_epoch']}), {wall:.0f}s"
                + ("" if row["check"]["ok"] else " CHECK MISMATCH"))
        else:
            n_fail += 1
            tail = (job.run_dir / "train.log").read_text(errors="replace")[-3000:]
            _append(out / "failures.jsonl", {"recipe": job.name, "seed": job.seed,
                                             "rc": proc.returncode, "log_tail": tail})
            log(f"FAIL {job.name} seed {job.seed}: rc {proc.returncode}")

    def is_warm(key: str) -> bool:
        if not key or not gate:
            return True
        if key not in first_of:
            return True  # nobody computes this cache yet: this job will be the first
        if warm.get(key):
            return True
        fj = first_of[key]
        if (fj.run_dir / "steps.jsonl").exists() or (fj.run_dir / "metrics.jsonl").exists():
            warm[key] = True
        return warm.get(key, False)

    try:
        while pending or running:
            now = time.perf_counter() - t_start
            for pid in list(running):
                job, proc, t0 = running[pid]
                if proc.poll() is not None:
                    del running[pid]
                    if job.cache_key and first_of.get(job.cache_key) is job:
                        warm[job.cache_key] = True
                    finished(job, proc, t0)
            if now > deadline_s:
                for job, proc, _ in running.values():
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait()
                    n_cut += 1
                    log(f"CUT {job.name} seed {job.seed} at the deadline")
                running.clear()
                break
            while pending and len(running) < parallel:
                k = next((i for i, j in enumerate(pending) if is_warm(j.cache_key)), None)
                if k is None:
                    break
                if now + pending[k].est_s > deadline_s:
                    # the longest that can still finish goes first; drop what cannot
                    fits = [i for i, j in enumerate(pending)
                            if now + j.est_s <= deadline_s and is_warm(j.cache_key)]
                    if not fits:
                        break
                    k = fits[0]
                job = pending.pop(k)
                if job.cache_key and job.cache_key not in first_of:
                    first_of[job.cache_key] = job
                job.run_dir.mkdir(parents=True, exist_ok=True)
                for stale in ("summary.json", "predictions_test.jsonl", "steps.jsonl",
                              "metrics.jsonl"):  # an earlier run's files mean nothing now
                    (job.run_dir / stale).unlink(missing_ok=True)
                logfile = open(job.run_dir / "train.log", "w", encoding="utf-8")
                proc = subprocess.Popen(job.command(python), cwd=REPO, env=env,
                                        stdout=logfile, stderr=subprocess.STDOUT,
                                        start_new_session=True)
                logfile.close()
                running[proc.pid] = (job, proc, time.perf_counter())
                log(f"start {job.name} seed {job.seed} (est {job.est_s:.0f}s)")
            if pending and not running and all(now + j.est_s > deadline_s for j in pending):
                break
            time.sleep(1.0)
    finally:
        for job, proc, _ in running.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    skipped = len(pending)
    for j in pending:
        log(f"NOT RUN {j.name} seed {j.seed} (no time left before the deadline)")
    _pack_logs(out, jobs)
    res = {"ok": n_ok, "failed": n_fail, "cut": n_cut, "not_run": skipped,
           "seconds": round(time.perf_counter() - t_start, 1)}
    log(f"finished: {json.dumps(res)}")
    logf.close()
    return res


# ---- tables -------------------------------------------------------------------------------------
def load_results(paths: Sequence[Path]) -> tuple[list[dict], dict[tuple[str, int], dict]]:
    """Rows and per-post records from result folders (``rows.jsonl`` + ``posts.jsonl.gz``) or
    files; a (recipe, seed) seen twice keeps its last row."""
    rows: dict[tuple[str, int], dict] = {}
    posts: dict[tuple[str, int], dict] = {}
    for p in paths:
        p = Path(p)
        rp = p / "rows.jsonl" if p.is_dir() else p
        pp = (p / "posts.jsonl.gz") if p.is_dir() else p.with_name("posts.jsonl.gz")
        if not rp.is_file():
            raise GridError(f"{rp}: no rows file")
        for n, line in enumerate(rp.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                r = json.loads(line)
                rows[(r["recipe"], int(r["seed"]))] = r
        if pp.is_file():
            with gzip.open(pp, "rt", encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        d = json.loads(line)
                        posts[(d["recipe"], int(d["seed"]))] = d
    return list(rows.values()), posts


def _pts(v: float | None) -> str:
    return "—" if v is None or v != v else f"{100 * v:.2f}"


def _ms(vals: Sequence[float]) -> str:
    vals = [100 * v for v in vals if v is not None and v == v]
    if not vals:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}"


def compare(grid: dict[str, Any], comp: dict[str, Any], posts: dict[tuple[str, int], dict],
            subset: str, n_resamples: int, boot_seed: int) -> dict[str, Any] | None:
    """Paired bootstrap of one declared comparison on one subset (None: no common seed)."""
    from mmie.metrics.bootstrap import bootstrap_runs

    metric = comp.get("metric") or None
    side: dict[str, dict[int, tuple[list[str], np.ndarray]]] = {"a": {}, "b": {}}
    for k in ("a", "b"):
        for (rec, seed), p in posts.items():
            if rec == comp[k]:
                metric = metric or KIND_METRICS[p["kind"]][0]
                side[k][seed] = post_stats(p, metric, subset_mask(p, subset))
    if not side["a"] or not side["b"] or not set(side["a"]) & set(side["b"]):
        return None
    if any(len(v[0]) == 0 for s in side.values() for v in s.values()):
        return None
    r = bootstrap_runs(side["a"], side["b"], metric, n_resamples=n_resamples, seed=boot_seed)
    r["metric"] = metric
    # the seeds as the unit: each seed's A - B on the subset, and a Student t interval over
    # them (the bootstrap above resamples posts with the runs fixed, so it leaves out how much
    # a new seed, or a new zero-shot fold, moves a recipe)
    r.update(seed_interval([score(posts[(comp["a"], sd)], metric, subset)[0]
                            - score(posts[(comp["b"], sd)], metric, subset)[0]
                            for sd in r["seeds"]]))
    return r


#: two-sided 95 % Student t quantiles for 1..10 degrees of freedom
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
        9: 2.262, 10: 2.228}


def seed_interval(diffs: Sequence[float]) -> dict[str, Any]:
    """Mean of per-seed differences, its 95 % t interval over seeds (None for one seed) and
    how many seeds have A above B."""
    n = len(diffs)
    mean = statistics.mean(diffs) if n else float("nan")
    out: dict[str, Any] = {"seed_diffs": list(diffs), "seed_mean": mean,
                           "seed_wins": sum(d > 0 for d in diffs),
                           "seed_ci_low": None, "seed_ci_high": None}
    if n >= 2:
        half = _T95.get(n - 1, 1.96) * statistics.stdev(diffs) / math.sqrt(n)
        out["seed_ci_low"], out["seed_ci_high"] = mean - half, mean + half
    return out


def _seed_ci(r: dict[str, Any]) -> str:
    if r["seed_ci_low"] is None:
        return "— (1 seed)"
    return f"[{100 * r['seed_ci_low']:+.2f}, {100 * r['seed_ci_high']:+.2f}]"


def verdict(r: dict[str, Any], target: float | None) -> str:
    """``met`` when the whole interval clears the target (in points; > 0 for a target of 0),
    ``not met`` when the whole interval lies below it, else ``unclear``."""
    t = (target or 0.0) / 100
    lo, hi = r["ci_low"], r["ci_high"]
    if lo is None or hi is None:
        return "—"
    if (lo >= t and t > 0) or (lo > t):
        return "met"
    if hi < t or (t == 0 and hi <= 0):
        return "not met"
    return "unclear"


def tables(grid: dict[str, Any], rows: list[dict], posts: dict[tuple[str, int], dict], *,
           n_resamples: int = 10000, boot_seed: int = 0, sources: Sequence[str] = (),
           table_command: str = "") -> str:
    """The markdown of the grid's section: setup, one table per task, the comparisons."""
    order = [r["name"] for r in grid["runs"]]
    grid_runs = {r["name"]: r for r in grid["runs"]}
    summary = _data_summary(sources)
    by: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: (order.index(r["recipe"]) if r["recipe"] in order
                                         else len(order), r["seed"])):
        by.setdefault(r["recipe"], []).append(r)
    lines = [f"_Generated by `{table_command or 'python benchmarks/claims.py table'}` from the "
             f"raw rows in {', '.join(f'`{s}`' for s in sources) or 'the rows files'}; do "
             "not edit by hand._", ""]
    if not rows:
        return "\n".join(lines + ["No runs yet.", ""])
    first = rows[0]
    dv = first.get("data_version") or {}
    versions = {json.dumps(r.get("data_version"), sort_keys=True) for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    devices = sorted({str(r.get("device")) for r in rows})
    commits = sorted({str(r.get("commit")) for r in rows})
    commands = sorted({str(r.get("command")) for r in rows if r.get("command")})
    enc = sorted({ENCODER_NAMES.get(r["text_encoder"], r["text_encoder"])
                  + (f" + {ENCODER_NAMES.get(r['vision_encoder'], r['vision_encoder'])}"
                     if r.get("vision_encoder") else "") for r in rows})
    data_names = ", ".join(f"`{d}`" for d in dict.fromkeys(str(r.get("data")) for r in rows))
    lines += [f"- Data: {data_names}"
              + (f", summary sha256 `{dv.get('summary_sha256', '')[:16]}`" if dv.get(
                  "summary_sha256") else "")
              + "".join(f", {k} {dv[k]}" for k in ("version", "seed", "size") if k in dv)
              + "; scored split: test (model selection and early stopping on dev)"
              + ("" if len(versions) == 1 else f" — WARNING: {len(versions)} data versions"),
              f"- Seeds: {', '.join(map(str, seeds))}; encoders: {'; '.join(enc)}",
              f"- Machine: {'; '.join(devices)}; precision "
              f"{', '.join(sorted({str(r.get('precision')) for r in rows}))}; commit "
              f"{', '.join(c[:10] for c in commits)}",
              *[f"- Command: `{c}`" for c in commands]]
    ceil = _ceilings(grid, sources)
    if ceil:
        lines.append(f"- Text-only ceilings (data summary): {ceil}")
    bad = [f"{r['recipe']}/{r['seed']}" for r in rows if not r.get("check", {}).get("ok", True)]
    if bad:
        lines.append(f"- WARNING: per-post scores differ from the package's for {bad}")
    if grid.get("notes"):
        lines.append(f"- {grid['notes'].strip()}")
    lines.append("")
    kinds: dict[str, list[str]] = {}
    for name, rs in by.items():
        kinds.setdefault(rs[0]["kind"], []).append(name)
    for kind, names in kinds.items():
        subs = [s for s in SUBSET_ORDER if any(s in r["subsets"] for n in names for r in by[n])]
        subs += sorted({s for n in names for r in by[n] for s in r["subsets"]}
                       - set(subs) - {"all"})
        metrics = KIND_METRICS[kind]
        head = metrics[0]
        title = {"ner": "NER (entity micro F1, seqeval default mode)",
                 "re": "RE (micro F1 without None; accuracy)",
                 "zs": "Zero-shot (accuracy on unseen labels; macro-F1)"}[kind]
        lines += [f"#### {title}", ""]
        ceil_of = {n: grid_runs[n]["ceiling"] for n in names
                   if n in grid_runs and grid_runs[n].get("ceiling")}
        cols = (["recipe", "model", "seeds"] + [f"test {METRIC_NAMES[m]}" for m in metrics]
                + (["ceiling (Δ)"] if ceil_of else [])
                + [f"dev {METRIC_NAMES[head]}"] + [f"{s} {METRIC_NAMES[head]} (n)" for s in subs]
                + ["epochs (best)", "plateau", "s/run"])
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for n in names:
            rs = by[n]
            subcells = []
            for s in subs:
                vals = [r["subsets"][s][head] for r in rs if s in r["subsets"]]
                ns = {r["subsets"][s]["n"] for r in rs if s in r["subsets"]}
                subcells.append(f"{_ms(vals)} ({'/'.join(map(str, sorted(ns)))})")
            dev = [(r.get("dev") or {}).get(head) for r in rs]
            plateau = sum(bool(r.get("plateau")) for r in rs)
            lines.append("| " + " | ".join(
                [n, rs[0]["model"], ",".join(str(r["seed"]) for r in rs)]
                + [_ms([r["subsets"]["all"][m] for r in rs]) for m in metrics]
                + ([_ceiling_cell(summary, ceil_of.get(n),
                                  [r["subsets"]["all"][head] for r in rs])] if ceil_of else [])
                + [_ms(dev)] + subcells
                + [f"{rs[0]['max_epochs']} ({','.join(str(r.get('best_epoch')) for r in rs)})",
                   f"{plateau}/{len(rs)}",
                   f"{statistics.mean(r['wall_seconds'] for r in rs):.0f}"]) + " |")
        lines.append("")
    comps = grid.get("comparisons") or []
    if comps:
        lines += ["#### Differences (paired bootstrap over test posts, seeds paired)", "",
                  f"Δ = mean over seeds of A minus that of B, in points; 95 % percentile "
                  f"interval of {n_resamples} replicates (bootstrap seed {boot_seed}); "
                  "p = share of replicates with Δ ≤ 0. Seed CI: Student t 95 % interval of "
                  "the per-seed differences (the seed, and for zero-shot the fold, as the "
                  "unit); A > B: seeds where A scores higher. Verdict: met when the whole "
                  "interval clears the target, not met when it lies below it, else unclear; "
                  "given for the post bootstrap / the seed interval.", "",
                  "| claim | A | B | metric | subset | Δ | 95 % CI | p(Δ≤0) | seed CI | A > B "
                  "| target | verdict (posts / seeds) | seeds | posts |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for c in comps:
            for sub in c.get("subsets") or ["all"]:
                tgt = c.get("target")
                if isinstance(tgt, dict):
                    tgt = tgt.get(sub, tgt.get("all"))
                try:
                    r = compare(grid, c, posts, sub, n_resamples, boot_seed)
                except GridError as e:
                    r, err = None, str(e)
                else:
                    err = "no paired runs"
                if r is None:
                    metric = METRIC_NAMES.get(c.get("metric"), "")
                    lines.append(f"| {c.get('claim', '')} | {c['a']} | {c['b']} | {metric} | "
                                 f"{sub} | — | — | — | — | — | {'' if tgt is None else tgt} "
                                 f"| {err} | | |")
                    continue
                lines.append(
                    f"| {c.get('claim', '')} | {c['a']} | {c['b']} | {METRIC_NAMES[r['metric']]} "
                    f"| {sub} | {100 * r['diff']:+.2f} | [{100 * r['ci_low']:+.2f}, "
                    f"{100 * r['ci_high']:+.2f}] | {r['p_le_0']:.4f} | {_seed_ci(r)} | "
                    f"{r['seed_wins']}/{len(r['seeds'])} | "
                    f"{'' if tgt is None else f'{tgt:+g}'} | {verdict(r, tgt)} / "
                    f"{verdict({'ci_low': r['seed_ci_low'], 'ci_high': r['seed_ci_high']}, tgt)} | "
                    f"{','.join(map(str, r['seeds']))} | {r['n_posts']}"
                    + (f" ({r['test_sets']} test sets)" if r["test_sets"] > 1 else "") + " |")
        lines.append("")
    return "\n".join(lines)


def _ceiling_cell(summary: dict[str, Any] | None, path: str | None,
                  vals: Sequence[float]) -> str:
    """A declared ceiling of the data summary and the mean's distance to it, in points."""
    if not path:
        return ""
    c = _lookup(summary, path) if summary is not None else None
    if c is None:
        return f"— (no {path})"
    return f"{100 * c:.2f} (Δ {100 * (statistics.mean(vals) - c):+.2f})"


def _data_summary(sources: Sequence[str]) -> dict[str, Any] | None:
    """The data set's summary kept beside the first rows file that has one."""
    for s in sources:
        p = Path(s)
        p = p / "data_summary.json" if p.is_dir() else p.with_name("data_summary.json")
        if p.is_file():
            return json.loads(p.read_text(encoding="utf-8"))
    return None


def _lookup(d: Any, dotted: str) -> float | None:
    for k in dotted.split("."):
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return float(d) if isinstance(d, (int, float)) and not isinstance(d, bool) else None


def _ceilings(grid: dict[str, Any], sources: Sequence[str]) -> str:
    """Every ``*ceiling*`` entry of the data summary kept with the rows, flattened."""
    summary = _data_summary(sources)
    if summary is not None:
        if True:
            flat: list[str] = []

            def walk(d: Any, path: str, inside: bool) -> None:
                if isinstance(d, dict):
                    for k, v in d.items():
                        walk(v, f"{path}.{k}" if path else k, inside or "ceiling" in k)
                elif (inside and isinstance(d, (int, float)) and not isinstance(d, bool)
                      and not set(path.split(".")) & {"train", "valid", "val", "dev"}):
                    flat.append(f"{path} {100 * d:.2f}" if d <= 1 else f"{path} {d}")

            walk(summary, "", False)
            return "; ".join(flat)
    return ""


def write_section(doc: Path, name: str, title: str, body: str) -> None:
    """Replace the text between the section's marker comments (or append the section)."""
    begin, end = BEGIN.format(name), END.format(name)
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text:
        i = text.index(begin)
        j = text.find(end, i)
        if j < 0:
            raise GridError(f"{doc}: '{begin}' without '{end}'")
        text = text[:i] + block + text[j + len(end):]
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + f"## {title}\n\n{block}\n"
    doc.write_text(text, encoding="utf-8")


# ---- the synthetic stand-in (development of the harness before the photo set lands) -------------
def synthetic_data(root: Path, size: int) -> Path:
    """Generate the synthetic set as ``cache_dir=root`` runs read it, and write subsets files
    (``two_mentions``: posts with two or more mentions; ``one_mention``) beside its splits."""
    from mmie.config import load_config
    from mmie.data.paths import synthetic_dir
    from mmie.training.data import load_examples

    d = synthetic_dir(size, root)
    for task in ("ner", "re", "typing"):
        cfg = load_config(None, ["data.name=synthetic", f"model.task={task}",
                                 f"data.synthetic_size={size}", f"cache_dir={root}"]
                          + (["model.type=label_sim"] if task == "typing" else []))
        for split in ("train", "dev", "test"):
            exs = load_examples(cfg, split)
            split_file = _split_files(cfg, split)[0]
            target = split_file.with_name(split_file.name.split(".")[0].removeprefix("mnre_")
                                          + ".subsets.jsonl")
            with open(target, "w", encoding="utf-8") as f:
                for ex in exs:
                    if task == "re":
                        tags = ["has_relation" if ex.relation != "None" else "no_relation"]
                    else:
                        tags = ["two_mentions" if len(ex.entities) >= 2 else "one_mention"]
                    f.write(json.dumps({"id": ex.id, "subsets": tags}) + "\n")
    (root / "summary.json").write_bytes((d / "summary.json").read_bytes())
    return d


# ---- CLI ----------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="build the data and run the grid (or --dry-run)")
    r.add_argument("grid")
    r.add_argument("--out", required=True, type=Path, help="rows, posts, logs go here")
    r.add_argument("--runs", type=Path, default=None,
                   help="run directories (default: runs/claims/<grid name>)")
    r.add_argument("--only", nargs="+", default=[], metavar="NAME",
                   help="run names or shell patterns (e.g. 'mmib_*')")
    r.add_argument("--seeds", type=int, nargs="+", default=None)
    r.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                   help="an override added to every run (after the grid's)")
    r.add_argument("--var", action="append", default=[], metavar="NAME=VALUE")
    r.add_argument("--parallel", type=int, default=8)
    r.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS per run")
    r.add_argument("--deadline", type=float, default=540.0,
                   help="seconds from start: no run starts that its est_s would carry past "
                        "it; runs still going then are killed (their rows are missing)")
    r.add_argument("--skip-done", nargs="*", type=Path, default=[], metavar="ROWS",
                   help="rows files / result folders: (recipe, seed) already there are skipped")
    r.add_argument("--no-gate", action="store_true",
                   help="do not hold image runs back until the first has filled the cache")
    r.add_argument("--keep-checkpoints", action="store_true",
                   help="keep each scored run's checkpoints/ (deleted by default; model/ stays)")
    r.add_argument("--python", default=sys.executable)
    r.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    t = sub.add_parser("table", help="markdown tables from rows (+ posts)")
    t.add_argument("grid")
    t.add_argument("--rows", nargs="+", type=Path, required=True,
                   help="result folders (rows.jsonl + posts.jsonl.gz) or rows files")
    t.add_argument("--write", type=Path, default=None, help="replace the grid's section here")
    t.add_argument("--resamples", type=int, default=10000)
    t.add_argument("--boot-seed", type=int, default=0)
    s = sub.add_parser("synthetic-data", help="the synthetic set + subsets files (harness dev)")
    s.add_argument("root", type=Path)
    s.add_argument("--size", type=int, default=600)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "synthetic-data":
            print(synthetic_data(a.root, a.size))
            return 0
        if a.cmd == "table":
            grid = load_grid(a.grid, Path("."))
            rows, posts = load_results(a.rows)
            cmd = "python benchmarks/claims.py table " + " ".join(
                shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:])[1:])
            md = tables(grid, rows, posts, n_resamples=a.resamples, boot_seed=a.boot_seed,
                        sources=[str(p) for p in a.rows], table_command=cmd)
            if a.write:
                write_section(a.write, grid["name"], grid.get("title") or grid["name"], md)
                print(f"wrote section {grid['name']!r} of {a.write}")
            else:
                print(md)
            return 0
        grid = load_grid(a.grid, a.out, a.var)
        runs = a.runs or REPO / "runs" / "claims" / grid["name"]
        jobs = expand_jobs(grid, runs.resolve(), a.only, a.seeds, a.extra)
        done = _done_keys(a.skip_done)
        if done:
            jobs = [j for j in jobs if (j.name, j.seed) not in done]
        if a.dry_run:
            if not (Path(grid["done"]).exists() if grid.get("done") else False):
                for c in grid["build"]:
                    print(c)
            for j in jobs:
                print(f"OMP_NUM_THREADS={a.threads} " + shlex.join(j.command("python3")))
            print(f"# {len(jobs)} runs, {a.parallel} at a time; estimated "
                  f"{sum(j.est_s for j in jobs) / max(1, a.parallel):.0f}s of runs "
                  f"(deadline {a.deadline:.0f}s)", file=sys.stderr)
            return 0
        cmdline = "python3 benchmarks/claims.py " + " ".join(
            shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
        res = run_grid(grid, jobs, a.out, parallel=a.parallel, deadline_s=a.deadline,
                       threads=a.threads, python=a.python, gate=not a.no_gate,
                       command_line=cmdline, keep_checkpoints=a.keep_checkpoints)
        return 0 if res["failed"] == 0 else 1
    except GridError as e:
        print(f"claims.py: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
