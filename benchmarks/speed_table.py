"""Markdown table of two runs of ``benchmarks/speed.py --repeat 2`` and their comparison.

    python benchmarks/speed_table.py results/speed/speed_gpu_h200_sweep

reads ``<prefix>_run1.json``, ``<prefix>_run2.json`` and ``<prefix>_compare.json`` and prints
one row per benchmark row: posts/s (median step) with p10 / p90 of each run, warm-up steps
(``*``: did not reach three steps within 10 %), the run-2 / run-1 ratio and whether the two
agree within the comparison's tolerance.

    python benchmarks/speed_table.py --profiled results/speed/speed_gpu_h200_graphs_run1.json

prints one run measured with ``--profile-steps``: posts/s (median step) [p10, p90], the
sustained rate, the median step, the GPU's kernel time per step (and its share of the median
step), kernels and aten operators per step.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _cell(r: dict) -> str:
    star = "" if r["warmup_converged"] else "*"
    return (f"{r['posts_per_s']:,.0f} [{r['posts_per_s_p10']:,.0f}, "
            f"{r['posts_per_s_p90']:,.0f}] w{r['warmup_steps']}{star}")


def table(prefix: str) -> str:
    runs = [json.loads(Path(f"{prefix}_run{k}.json").read_text(encoding="utf-8")) for k in (1, 2)]
    cmp = json.loads(Path(f"{prefix}_compare.json").read_text(encoding="utf-8"))
    agree = {c["id"]: c for c in cmp["rows"] if c["kind"] == "row"}
    by2 = {r["id"]: r for r in runs[1]["rows"]}
    lines = ["| row | run 1: posts/s [p10, p90] warm-up | run 2 | run 2 / run 1 | agree "
             f"(±{100 * cmp['tolerance']:.0f} %) |", "|---|---|---|---|---|"]
    for r in runs[0]["rows"]:
        r2 = by2.get(r["id"])
        c = agree.get(r["id"], {})
        lines.append(f"| {r['id']} | {_cell(r)} | {_cell(r2) if r2 else '—'} | "
                     f"{c.get('run2_over_run1', float('nan')):.2f} | "
                     f"{'yes' if c.get('agree') else '**no**'} |")
    lines.append("")
    lines.append(f"{cmp['rows_agreeing']} / {cmp['rows_compared']} rows agree.")
    return "\n".join(lines)


def profiled_table(path: str) -> str:
    run = json.loads(Path(path).read_text(encoding="utf-8"))
    lines = ["| row | posts/s [p10, p90] | sustained | median step ms | GPU kernel time "
             "ms/step (share) | kernels / aten ops per step |", "|---|---|---|---|---|---|"]
    for r in run["rows"]:
        busy = (f"{1000 * r['gpu_busy_s_per_step']:.1f} ({100 * r['gpu_busy_fraction']:.0f} %)"
                if "gpu_busy_fraction" in r else "—")
        kern = f"{r['gpu_kernels_per_step']:.0f}" if "gpu_kernels_per_step" in r else "—"
        ops = f"{r['aten_ops_per_step']:.0f}" if "aten_ops_per_step" in r else "—"
        lines.append(f"| {r['id']} | {r['posts_per_s']:,.0f} [{r['posts_per_s_p10']:,.0f}, "
                     f"{r['posts_per_s_p90']:,.0f}] | {r['posts_per_s_sustained']:,.0f} | "
                     f"{1000 * r['s_per_step_median']:.1f} | {busy} | {kern} / {ops} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--profiled":
        print(profiled_table(sys.argv[2]))
    elif len(sys.argv) == 2:
        print(table(sys.argv[1]))
    else:
        raise SystemExit(__doc__)
