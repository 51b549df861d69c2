"""Figures from synthetic run directories (mmie.plots.figures)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmie.errors import DataError
from mmie.plots.figures import normalise_rows, plot_run, smooth

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def make_mmib_run(root: Path, epochs: int = 4, steps_per_epoch: int = 25) -> Path:
    rng = np.random.default_rng(0)
    run = root / "mmib-run"
    run.mkdir()
    steps, metrics = [], []
    for e in range(1, epochs + 1):
        for s in range(steps_per_epoch):
            step = (e - 1) * steps_per_epoch + s + 1
            task = 2.0 * math.exp(-step / 40) + 0.1 * rng.random()
            kl_t, kl_i, align = 0.5 / step ** 0.3, 0.4 / step ** 0.3, 0.69 - 0.002 * step
            steps.append({"step": step, "epoch": e, "train/loss": task + 0.01 * (kl_t + kl_i) + 0.1 * align,
                          "train/loss_task": task, "train/kl_text": kl_t, "train/kl_image": kl_i,
                          "train/align": align})
        f1 = 0.4 + 0.1 * e - 0.02 * e * e
        this = steps[-steps_per_epoch:]
        means = {k: float(np.mean([r[k] for r in this])) for k in this[0] if k.startswith("train/")}
        metrics.append({"epoch": e, **means, "dev/f1": f1, "dev/precision": f1 + 0.03, "dev/recall": f1 - 0.03,
                        "dev/loss": 1.0 / e, "lr": 5e-5 * (1 - (e - 1) / epochs)})
    _write_jsonl(run / "metrics.jsonl", metrics)
    _write_jsonl(run / "steps.jsonl", steps)
    labels = ["PER", "LOC", "ORG", "MISC"]
    (run / "eval_test.json").write_text(json.dumps({
        "f1": 0.7, "confusion": {"labels": labels,
                                 "matrix": [[50, 3, 2, 1], [4, 40, 1, 0], [2, 2, 30, 5], [0, 0, 0, 0]]}}))
    big = [f"/rel/{i}" for i in range(25)]
    mat = (rng.integers(0, 5, (25, 25)) + 40 * np.eye(25, dtype=int)).tolist()
    (run / "eval_dev.json").write_text(json.dumps({"confusion": {"labels": big, "matrix": mat}}))
    (run / "eval_summary.json").write_text(json.dumps({"f1": 0.7}))  # no confusion: no figure
    return run


def _check_png(path: Path, min_bytes: int = 8000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) > min_bytes, (path, len(data))
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.width >= 400 and im.height >= 300
        px = np.asarray(im.convert("L"), dtype=float)
    # a real drawing: many non-white pixels, several grey levels
    assert (px < 200).mean() > 0.01 and len(np.unique(px)) > 20


def test_plot_mmib_run_writes_every_figure(tmp_path):
    run = make_mmib_run(tmp_path)
    paths = plot_run(run)
    names = sorted(p.name for p in paths)
    assert names == ["confusion_dev.png", "confusion_test.png", "dev_metrics.png", "loss.png",
                     "lr.png", "regularizers.png"]
    for p in paths:
        assert p.parent == run / "plots" and p.exists()
        _check_png(p)
    # a figure with more panels is wider: loss has 2 terms, regularizers 3
    with Image.open(run / "plots" / "loss.png") as a, Image.open(run / "plots" / "regularizers.png") as b:
        assert b.width > a.width


def test_plot_baseline_run_without_steps_or_regularizers(tmp_path):
    run = tmp_path / "baseline"
    run.mkdir()
    _write_jsonl(run / "metrics.jsonl", [
        {"epoch": e, "train/loss": 1.0 / e, "dev/f1": 0.5 + 0.05 * e, "dev/precision": 0.6,
         "dev/recall": 0.4 + 0.1 * e} for e in range(1, 6)])
    out = tmp_path / "figs"
    paths = plot_run(run, out)
    assert sorted(p.name for p in paths) == ["dev_metrics.png", "loss.png"]
    for p in paths:
        assert p.parent == out
        _check_png(p)
    assert not (run / "plots").exists()


def test_confusion_only_run(tmp_path):
    run = tmp_path / "eval-only"
    run.mkdir()
    (run / "eval_test.json").write_text(json.dumps(
        {"confusion": {"labels": ["a", "b"], "matrix": [[3, 1], [0, 4]]}}))
    paths = plot_run(run)
    assert [p.name for p in paths] == ["confusion_test.png"]
    _check_png(paths[0], min_bytes=5000)


def test_smooth_matches_hand_computed_moving_average():
    v = [1.0, 3.0, 2.0, 6.0, 4.0]
    # window 3: ends shrink to 2 points
    expected = [(1 + 3) / 2, (1 + 3 + 2) / 3, (3 + 2 + 6) / 3, (2 + 6 + 4) / 3, (6 + 4) / 2]
    np.testing.assert_allclose(smooth(v, 3), expected, rtol=1e-12)
    np.testing.assert_allclose(smooth(v, 4), smooth(v, 5))  # an even window is rounded up
    np.testing.assert_allclose(smooth(v, 5)[2], np.mean(v))
    np.testing.assert_allclose(smooth(v, 1), v)
    np.testing.assert_allclose(smooth(v), v)  # too few points to smooth by default
    np.testing.assert_allclose(smooth([4.0] * 100), [4.0] * 100)  # a constant stays constant
    ramp = np.arange(100.0)
    np.testing.assert_allclose(smooth(ramp)[10:-10], ramp[10:-10])  # centred: no lag


def test_normalise_rows_hand_counts():
    m = normalise_rows([[2, 2, 0], [0, 0, 0], [1, 0, 3]])
    np.testing.assert_allclose(m, [[0.5, 0.5, 0], [0, 0, 0], [0.25, 0, 0.75]])


def test_bad_inputs_name_file_and_line(tmp_path):
    with pytest.raises(DataError, match="run directory not found"):
        plot_run(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="nothing to plot"):
        plot_run(empty)
    run = tmp_path / "bad"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1, "dev/f1": 0.5}\n{"epoch": 2, "dev/f1": \n')
    with pytest.raises(DataError, match=r"metrics\.jsonl, line 2: invalid JSON"):
        plot_run(run)
    (run / "metrics.jsonl").write_text('{"epoch": 1, "dev/f1": 0.5}\n[1, 2]\n')
    with pytest.raises(DataError, match=r"line 2: expected a JSON object"):
        plot_run(run)
    (run / "metrics.jsonl").write_text('{"epoch": 1, "dev/f1": 0.5}\n')
    (run / "eval_test.json").write_text(json.dumps(
        {"confusion": {"labels": ["a", "b", "c"], "matrix": [[1, 2], [3, 4]]}}))
    with pytest.raises(DataError, match=r"eval_test\.json, field 'confusion\.matrix'.*3x3"):
        plot_run(run)


def test_plotting_leaves_the_pyplot_backend_alone(tmp_path):
    import matplotlib

    before = matplotlib.get_backend()
    run = tmp_path / "r"
    run.mkdir()
    _write_jsonl(run / "metrics.jsonl", [{"epoch": 1, "dev/f1": 0.5}, {"epoch": 2, "dev/f1": 0.6}])
    assert [p.name for p in plot_run(run)] == ["dev_metrics.png"]
    assert matplotlib.get_backend() == before
