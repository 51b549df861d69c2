"""Print the markdown tables of docs/results.md from the runs files in results/.

    python benchmarks/results_table.py results/gpu_twitter2015.jsonl results/gpu_twitter2017.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import table  # noqa: E402


def main(paths: list[str]) -> None:
    for p in paths:
        rows = [json.loads(l) for l in Path(p).read_text().splitlines() if l.strip()]
        print(f"### {p}\n")
        print(table(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
