"""Markdown table of two runs of ``benchmarks/speed.py --repeat 2`` and their comparison.

    python benchmarks/speed_table.py results/speed/speed_gpu_h200_sweep

reads ``<prefix>_run1.json``, ``<prefix>_run2.json`` and ``<prefix>_compare.json`` and prints
one row per benchmark row: posts/s (median step) with p10 / p90 of each run, warm-up steps
(``*``: did not reach three steps within 10 %), the run-2 / run-1 ratio and whether the two
agree within the comparison's tolerance.
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


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(table(sys.argv[1]))
