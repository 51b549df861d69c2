"""Train and evaluate a grid of recipes x seeds; write every run's numbers and a table.

    python benchmarks/quality.py configs/text_synthetic_ner.yaml configs/fusion_synthetic_ner.yaml \
        configs/mmib_synthetic_ner.yaml --seeds 0 1 2 --out results/synthetic_ner

Writes ``<out>/runs.jsonl`` (one row per run: recipe, seed, dev and test P/R/F1, epochs,
best epoch, wall time, device, encoders, image policy) and ``<out>/table.md`` (mean and std
over seeds per recipe). Model selection is on dev only; test is evaluated once per run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def _device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def run_grid(configs: list[str], seeds: list[int], out: Path, overrides: list[str],
             run_root: Path, zero_shot_folds: bool = False,
             held_out: list[str] | None = None, recipe_suffix: str = "") -> list[dict[str, Any]]:
    from mmie.config import load_config
    from mmie.registry import zero_shot_types
    from mmie.training.train import model_uses_image, train

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    grid = [(c, s, h) for c in configs for s in seeds for h in (held_out or [None])]
    for cfg_path, seed, held in grid:
        name = Path(cfg_path).stem + recipe_suffix
        fold = ([f"data.zero_shot_seed={seed}", f"data.zero_shot_fold={seed % 3}"]
                if zero_shot_folds else [])
        if held is not None:
            fold.append(f"data.held_out_type={held}")
        sub = f"seed{seed}" + (f"-{held}" if held else "")
        cfg = load_config(cfg_path, [*overrides, *fold, f"seed={seed}",
                                     f"output_dir={run_root / name / sub}"])
        t0 = time.perf_counter()
        summary = train(cfg)
        row = {"recipe": name, "config": cfg_path, "seed": seed, "data": cfg.data.name,
               "task": cfg.model.task, "model": cfg.model.type,
               "text_encoder": cfg.model.text_encoder,
               "vision_encoder": cfg.model.vision_encoder if model_uses_image(cfg) else None,
               "image_policy": cfg.data.image_policy if model_uses_image(cfg) else None,
               "max_epochs": cfg.trainer.max_epochs, "epochs_run": summary.get("epochs_run"),
               "best_epoch": summary.get("best_epoch"), "dev": summary.get("dev"),
               "test": summary.get("test"), "wall_seconds": round(time.perf_counter() - t0, 1),
               "device": _device_name(), "overrides": overrides,
               "examples": summary.get("report", {}).get("examples_used"),
               "zero_shot": ({"seed": cfg.data.zero_shot_seed, "fold": cfg.data.zero_shot_fold,
                              "held_out": cfg.data.held_out_type}
                             if cfg.model.type in zero_shot_types() else None),
               "model_overrides": {k: v for k, v in cfg.model.__dict__.items()
                                   if k in ("num_experts", "vat", "gating")}}
        rows.append(row)
        with open(out / "runs.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    return rows


def row_from_run_dir(run_dir: Path, recipe: str, overrides: list[str]) -> dict[str, Any]:
    """A runs.jsonl row rebuilt from a finished run directory (``summary.json`` +
    ``config.yaml``): for runs whose quality.py output was lost (e.g. a device session cut
    short); ``wall_seconds`` is the run's own ``total_seconds``."""
    from mmie.config import load_config
    from mmie.registry import zero_shot_types
    from mmie.training.train import model_uses_image

    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    cfg = load_config(run_dir / "config.yaml")
    zs = cfg.model.type in zero_shot_types()
    return {"recipe": recipe, "config": None, "seed": cfg.seed, "data": cfg.data.name,
            "task": cfg.model.task, "model": cfg.model.type,
            "text_encoder": cfg.model.text_encoder,
            "vision_encoder": cfg.model.vision_encoder if model_uses_image(cfg) else None,
            "image_policy": cfg.data.image_policy,
            "precision": cfg.trainer.precision,
            "max_epochs": cfg.trainer.max_epochs, "epochs_run": summary.get("epochs_run"),
            "best_epoch": summary.get("best_epoch"), "dev": summary.get("dev"),
            "test": summary.get("test"), "wall_seconds": summary.get("total_seconds"),
            "device": summary.get("device"), "overrides": overrides,
            "examples": summary.get("report", {}).get("examples_used"),
            "zero_shot": ({"seed": cfg.data.zero_shot_seed, "fold": cfg.data.zero_shot_fold,
                           "held_out": cfg.data.held_out_type} if zs else None),
            "model_overrides": {"num_experts": cfg.model.mg_vmoe.num_experts,
                                "vat": cfg.model.mg_vmoe.vat,
                                "gating": cfg.model.mg_vmoe.gating} if zs else {},
            "from_run_dir": str(run_dir)}


def _ms(vals: list[float]) -> str:
    """Mean ± sample std of fractions, in percent."""
    vals = [100 * v for v in vals]
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["recipe"], []).append(r)

    zs_by = {k: v for k, v in by.items() if v[0].get("zero_shot")}
    by = {k: v for k, v in by.items() if not v[0].get("zero_shot")}
    if not by:
        return zs_table(zs_by)
    lines = ["| recipe | data | model | seeds | test P | test R | test F1 | dev F1 | epochs (best) | wall s/run | device |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, rs in by.items():
        key = "f1"
        t = [r["test"] for r in rs]
        lines.append(
            f"| {name} | {rs[0]['data']} | {rs[0]['model']} | {','.join(str(r['seed']) for r in rs)} "
            f"| {_ms([x.get('precision', 0) for x in t])} | {_ms([x.get('recall', 0) for x in t])} "
            f"| {_ms([x[key] for x in t])} | {_ms([r['dev'][key] for r in rs])} "
            f"| {rs[0]['max_epochs']} ({','.join(str(r['best_epoch']) for r in rs)}) "
            f"| {statistics.mean(r['wall_seconds'] for r in rs):.0f} | {rs[0]['device']} |")
    out = "\n".join(lines) + "\n"
    return out + ("\n" + zs_table(zs_by) if zs_by else "")


def _opt(vals: list[float | None]) -> str:
    """:func:`_ms` when every run has the value, else a dash."""
    return _ms(vals) if vals and all(v is not None for v in vals) else "—"  # type: ignore[arg-type]


def zs_table(by: dict[str, list[dict[str, Any]]]) -> str:
    """Zero-shot rows, mean ± std over the folds: accuracy on the unseen labels, macro P / R / F1
    over the test split's gold labels (the unseen labels; all four types for leave-one-type-out)
    and, for leave-one-type-out, seen accuracy and the harmonic mean H."""
    lines = ["| recipe | data | model | folds | unseen acc | macro-P | macro-R | "
             "macro-F1 | seen acc | H | dev acc | epochs | wall s/run | device |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, rs in by.items():
        t = [r["test"] for r in rs]
        acc = [x.get("unseen_accuracy", x.get("accuracy")) for x in t]
        seen = [x["seen_accuracy"] for x in t if "seen_accuracy" in x]
        hm = [x["harmonic_mean"] for x in t if "harmonic_mean" in x]
        folds = ",".join(f"{r['seed']}" + (f"/{r['zero_shot']['held_out']}"
                                           if r["zero_shot"].get("held_out") else "") for r in rs)
        lines.append(
            f"| {name} | {rs[0]['data']} | {rs[0]['model']} | {folds} | {_ms(acc)} "
            f"| {_opt([x.get('macro_p') for x in t])} | {_opt([x.get('macro_r') for x in t])} "
            f"| {_ms([x.get('macro_f1', 0) for x in t])} | {_ms(seen) if seen else '—'} "
            f"| {_ms(hm) if hm else '—'} | {_ms([r['dev'].get('accuracy', 0) for r in rs])} "
            f"| {rs[0]['max_epochs']} | {statistics.mean(r['wall_seconds'] for r in rs):.0f} "
            f"| {rs[0]['device']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="*")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", default="results/quality")
    ap.add_argument("--runs", default="runs/quality", help="where run directories go")
    ap.add_argument("--zero-shot-folds", action="store_true",
                    help="seed k also picks the zero-shot label split: MNRE relation shuffle "
                         "seed k, entity-typing group rotation k mod 3")
    ap.add_argument("--held-out", nargs="+", default=None, metavar="TYPE",
                    help="leave-one-type-out typing: one run per held-out type (x seeds)")
    ap.add_argument("--suffix", default="", help="appended to every recipe name (e.g. _no_vat "
                    "for an ablation given by --set)")
    ap.add_argument("--collect", nargs="+", type=Path, default=None, metavar="RUN_DIR",
                    help="append rows rebuilt from finished run directories (recipe = the "
                         "parent folder's name + --suffix, so leave --suffix out when the folder "
                         "name already has it; overrides = --set) instead of training")
    ap.add_argument("--table-only", action="store_true",
                    help="rebuild table.md from <out>/runs.jsonl without training")
    a = ap.parse_args()
    out = Path(a.out)
    if a.collect:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "runs.jsonl", "a", encoding="utf-8") as f:
            for d in a.collect:
                if not (d / "summary.json").is_file():
                    print(f"quality.py: {d} has no summary.json (unfinished run?): skipped",
                          file=sys.stderr)
                    continue
                f.write(json.dumps(row_from_run_dir(d, d.parent.name + a.suffix,
                                                    a.overrides)) + "\n")
        a.table_only = True
    if a.table_only:
        rows = [json.loads(l) for l in (out / "runs.jsonl").read_text().splitlines() if l.strip()]
    else:
        rows = run_grid(a.configs, a.seeds, out, a.overrides, Path(a.runs), a.zero_shot_folds,
                        a.held_out, a.suffix)
    md = table(rows)
    (out / "table.md").write_text(md, encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
