"""Per-epoch dev scores of the runs in a claims call's ``logs.tar.gz`` (also of runs cut at
the deadline, whose test rows are missing), as a markdown table.

    python benchmarks/dev_curves.py results/claims_photos_ner_call2/logs.tar.gz [--metric dev/f1]
"""

from __future__ import annotations

import argparse
import json
import tarfile
from collections import defaultdict


def curves(path: str, metric: str) -> dict[str, dict[int, list[float]]]:
    """recipe -> seed -> [metric per epoch] (in points)."""
    out: dict[str, dict[int, list[float]]] = defaultdict(dict)
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            parts = m.name.strip("./").split("/")
            if len(parts) < 3 or parts[-1] != "metrics.jsonl" or not parts[-2].startswith("seed"):
                continue
            rows = [json.loads(l) for l in tar.extractfile(m).read().decode().splitlines() if l]
            out[parts[-3]][int(parts[-2][4:])] = [100 * r[metric] for r in rows if metric in r]
    return out


def table(c: dict[str, dict[int, list[float]]], metric: str) -> str:
    n = max(len(v) for seeds in c.values() for v in seeds.values())
    head = f"| recipe | seed | " + " | ".join(f"ep {i + 1}" for i in range(n)) + " |"
    lines = [head, "|" + "---|" * (n + 2)]
    for recipe in sorted(c):
        for seed in sorted(c[recipe]):
            v = c[recipe][seed]
            lines.append(f"| {recipe} | {seed} | " + " | ".join(
                f"{x:.2f}" for x in v) + " |" * (n - len(v)) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs")
    ap.add_argument("--metric", default="dev/f1")
    a = ap.parse_args()
    print(table(curves(a.logs, a.metric), a.metric))


if __name__ == "__main__":
    main()
