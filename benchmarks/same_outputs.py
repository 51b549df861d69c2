"""Every output of the tiny test runs, written to a folder, to check that a refactoring keeps
behaviour identical: run it in two checkouts and compare the folders.

    cd CHECKOUT_A && PYTHONPATH=src python benchmarks/same_outputs.py /tmp/a
    cd CHECKOUT_B && PYTHONPATH=src python benchmarks/same_outputs.py /tmp/b
    python benchmarks/same_outputs.py --compare /tmp/a /tmp/b     # prints "N files, M differ"

For each tiny (model type x task) run of the test suite (``tests/helpers.py: COMBOS``, trained
with a fixed seed on the generated synthetic set): the training predictions and scores
(``predictions_test.jsonl``, ``eval_dev.json``, ``eval_test.json``), the per-epoch metrics
without timings, ``mmie evaluate``'s result and predictions file, and for MG-VMoE the
``plot-zs`` figures and summary. Paths and timings are left out, so identical behaviour gives
identical bytes.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import shutil
import sys
import tempfile
from pathlib import Path


def capture(out: Path) -> None:
    sys.path.insert(0, "tests")  # the test suite's tiny runs
    from mmie.inference.evaluate import evaluate
    from mmie.plots.zeroshot import plot_zero_shot

    root = Path(tempfile.mkdtemp(prefix="mmie-same-"))
    try:
        import helpers
        from conftest import TinyRuns

        combos, runs = helpers.COMBOS, TinyRuns(root / "runs", root / "cache")
        get = runs.get
    except (ImportError, AttributeError):  # a checkout from before the conftest fixtures
        from test_training_e2e import COMBOS as combos, get_run as get
    for name, overrides in combos.items():
        run_dir = get(name, *overrides)[0]
        dst = out / name
        dst.mkdir(parents=True, exist_ok=True)
        for f in ("predictions_test.jsonl", "eval_test.json", "eval_dev.json"):
            shutil.copy(run_dir / f, dst / f)
        rows = [json.loads(l) for l in open(run_dir / "metrics.jsonl", encoding="utf-8")]
        for r in rows:
            r.pop("epoch_seconds", None)
        (dst / "metrics.json").write_text(json.dumps(rows, indent=1, sort_keys=True))
        res = evaluate(run_dir / "model", split="test", output=dst / "evaluate_preds.jsonl",
                       progress=False)
        res.pop("model_dir")
        (dst / "evaluate.json").write_text(json.dumps(res, indent=1, sort_keys=True,
                                                      default=str))
        if name == "mg_vmoe_typing":
            plot_zero_shot(run_dir / "model", out_dir=dst / "plots")
            z = json.loads((dst / "plots" / "zeroshot_test.json").read_text())
            z.pop("model_dir")
            (dst / "zeroshot_test.json").write_text(json.dumps(z, indent=1, sort_keys=True))
            (dst / "plots" / "zeroshot_test.json").unlink()
    shutil.rmtree(root, ignore_errors=True)
    print(f"wrote {sum(1 for p in out.rglob('*') if p.is_file())} files to {out}")


def compare(a: Path, b: Path) -> int:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    others = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    differ = [f for f in files if f not in others
              or not filecmp.cmp(a / f, b / f, shallow=False)]
    differ += [f for f in others if f not in files]
    for f in differ:
        print(f"DIFF {f}")
    print(f"{len(files)} files, {len(differ)} differ")
    return 1 if differ else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="+", help="output folder, or two folders with --compare")
    ap.add_argument("--compare", action="store_true")
    a = ap.parse_args(argv)
    if a.compare:
        return compare(Path(a.out[0]), Path(a.out[1]))
    capture(Path(a.out[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
