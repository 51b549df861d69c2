"""The user's path: wall time of ``mmie predict MODEL --input FILE`` as a whole command, with
the start-up measured as the same command on one ``--text`` post; writes a JSON file.

    python benchmarks/predict_cli.py runs/demo/model --posts posts.jsonl posts_img.jsonl \
        --repeat 5 --baseline-src /path/to/other/checkout/src \
        --output results/speed/cpu_predict_cli.json

Every command is a fresh ``python -m mmie`` process with this checkout's ``src`` first on
``PYTHONPATH``. ``--baseline-src`` times another tree's ``src`` (e.g. the code before a change)
in the same run, round-robin (every repeat runs each command of each tree once), so that the
two are compared under the same load of a shared machine; it also checks that both trees write
byte-identical outputs. ``--variant=ARGS`` (the ``=`` because the value starts with ``--``)
times this tree's commands with extra ``mmie predict`` arguments as well (an option under
test), round-robin with the others, and checks that its predictions equal the plain command's
apart from the scores. Reported: every wall time, medians,
posts/s = posts / (median wall - median start-up).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def wall(cmd: list[str], src: Path) -> float:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src) + os.pathsep + env.get("PYTHONPATH", "")
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env)
    return time.perf_counter() - t


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("torch", "transformers", "timm"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:  # pragma: no cover
            out[mod] = "absent"
    return out


def _unscored(path: Path) -> list:
    """The JSONL predictions with every ``score`` / ``scores`` field dropped."""
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in ("score", "scores")}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v
    return [strip(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def _commit(src: Path) -> str | None:
    try:
        return subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--posts", nargs="+", type=Path, required=True, help="JSONL files")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--baseline-src", type=Path, default=None,
                    help="another tree's src/ timed in the same run (before/after)")
    ap.add_argument("--variant", default=None, metavar="ARGS",
                    help="extra `mmie predict` arguments timed as a third command set "
                         "(--variant=--flag: the '=' because the value starts with '--')")
    ap.add_argument("--output", type=Path, default=Path("results/speed/cpu_predict_cli.json"))
    a = ap.parse_args()
    trees = {"this": SRC}
    extra: dict[str, list[str]] = {"this": []}
    if a.baseline_src is not None:
        trees["baseline"] = a.baseline_src.resolve()
        extra["baseline"] = []
    if a.variant:
        trees["variant"] = SRC
        extra["variant"] = shlex.split(a.variant)
    base_cmd = [sys.executable, "-m", "mmie", "predict", a.model]
    load0 = os.getloadavg()
    counts = {f.name: sum(1 for line in f.read_text(encoding="utf-8").splitlines()
                          if line.strip()) for f in a.posts}
    start: dict[str, list[float]] = {k: [] for k in trees}
    walls = {k: {f.name: [] for f in a.posts} for k in trees}
    identical: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # round-robin: each repeat runs every command of every tree once, so a burst of load
        # on the shared machine falls on all of them alike
        for _ in range(a.repeat):
            for k, src in trees.items():
                mmie = base_cmd + extra[k]
                start[k].append(wall(mmie + ["--text", "Jordan in Chicago"], src))
                for f in a.posts:
                    walls[k][f.name].append(wall(mmie + ["--input", str(f), "--output",
                                                         f"{tmp}/{k}-{f.name}"], src))
        if "baseline" in trees:
            identical = {f.name: filecmp.cmp(f"{tmp}/this-{f.name}",
                                             f"{tmp}/baseline-{f.name}", shallow=False)
                         for f in a.posts}
        if "variant" in trees:
            same_but_scores = {f.name: _unscored(Path(f"{tmp}/this-{f.name}"))
                               == _unscored(Path(f"{tmp}/variant-{f.name}")) for f in a.posts}
    files: dict[str, list[dict]] = {k: [] for k in trees}
    for k in trees:
        s0 = statistics.median(start[k])
        for f in a.posts:
            w = statistics.median(walls[k][f.name])
            files[k].append({"file": f.name, "posts": counts[f.name], "wall_s": walls[k][f.name],
                             "median_wall_s": w, "after_startup_s": w - s0,
                             "posts_per_s": counts[f.name] / (w - s0) if w > s0 else None})

    def row(k: str) -> dict:
        return {"src": str(trees[k]), "commit": _commit(trees[k]), "args": extra[k],
                "startup_s": start[k],
                "median_startup_s": statistics.median(start[k]), "files": files[k]}

    rows = {"model": a.model, "threads": os.environ.get("OMP_NUM_THREADS"),
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "versions": _versions(), "repeat": a.repeat,
            "bytecode_cache_written": not sys.dont_write_bytecode,
            "load_avg_before": load0, "load_avg_after": os.getloadavg(), **row("this")}
    if "baseline" in trees:
        rows["baseline"] = row("baseline")
        rows["outputs_identical_to_baseline"] = identical
    if "variant" in trees:
        rows["variant"] = row("variant")
        rows["variant_same_predictions_but_scores"] = same_but_scores
    print(json.dumps(rows, indent=1))
    a.output.parent.mkdir(parents=True, exist_ok=True)
    a.output.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
