"""Figures from a run directory (what training writes) as PNG files.

A run directory holds:

``metrics.jsonl``  one JSON object per epoch, e.g. ``{"epoch": 1, "train/loss": .., "train/kl_text":
                   .., "dev/f1": .., "dev/precision": .., "lr": ..}``
``steps.jsonl``    one JSON object per logged step, ``{"step": .., "epoch": .., "train/loss": ..}``
``eval_*.json``    evaluation results, optionally with ``{"confusion": {"labels": [..],
                   "matrix": [[..]]}}`` (rows = gold label, columns = predicted label)

:func:`plot_run` writes, as far as the logs allow:

``loss.png``          one panel per training loss term (per step, smoothed, and per epoch)
``dev_metrics.png``   dev metrics per epoch (best ``dev/f1`` epoch marked); dev losses beside
``regularizers.png``  MMIB's KL and alignment terms (keys starting ``train/kl`` or ``train/align``)
``lr.png``            the learning rate
``confusion_<name>.png``  one row-normalised confusion matrix per ``eval_<name>.json``

Figures are drawn on :class:`matplotlib.figure.Figure` with the Agg canvas, never through
``pyplot``, so plotting neither needs a display nor changes the caller's matplotlib backend.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mmie.data.io import iter_json_objects
from mmie.errors import DataError

REGULARIZER_PREFIXES = ("train/kl", "train/align")
ANNOTATE_MAX_LABELS = 15
DPI = 120


# --------------------------------------------------------------------------- reading
def read_records(path: str | Path) -> list[dict]:
    """Read a JSON-lines log: one object per non-blank line. Bad lines raise
    :class:`DataError` naming the file and line."""
    return [obj for _, obj in iter_json_objects(path)]


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def series(records: list[dict], key: str, x_key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` over the records that have numeric values for both keys."""
    xs, ys = [], []
    for r in records:
        x, y = _number(r.get(x_key)), _number(r.get(key))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return np.asarray(xs), np.asarray(ys)


def numeric_keys(records: list[dict], prefix: str = "") -> list[str]:
    """Keys with at least one finite number, in first-seen order."""
    seen: dict[str, None] = {}
    for r in records:
        for k, v in r.items():
            if k.startswith(prefix) and _number(v) is not None:
                seen.setdefault(k, None)
    return list(seen)


# --------------------------------------------------------------------------- maths
def smooth(values: Iterable[float], window: int | None = None) -> np.ndarray:
    """Centred moving average (no lag): point ``i`` is the mean of the points within
    ``window // 2`` of it, the window shrinking at the ends (an even ``window`` is rounded
    up to the next odd one). By default it is about a twentieth of the points (1, i.e. no
    smoothing, below 30 points)."""
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        return v
    if window is None:
        window = max(1, round(v.size / 20))
    half = max(0, int(window) // 2)
    csum = np.concatenate([[0.0], np.cumsum(v)])
    idx = np.arange(v.size)
    lo = np.clip(idx - half, 0, v.size)
    hi = np.clip(idx + half + 1, 0, v.size)
    return (csum[hi] - csum[lo]) / (hi - lo)


def normalise_rows(matrix) -> np.ndarray:
    """Each row divided by its sum (rows that sum to 0 stay 0)."""
    m = np.asarray(matrix, dtype=float)
    sums = m.sum(axis=1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)


def _epoch_positions(epochs: np.ndarray, steps: list[dict]) -> np.ndarray:
    """Where each epoch ends on the step axis: the last logged step of that epoch, else an
    estimate from the average number of steps per epoch."""
    last: dict[float, float] = {}
    for r in steps:
        e, s = _number(r.get("epoch")), _number(r.get("step"))
        if e is not None and s is not None:
            last[e] = max(last.get(e, s), s)
    if last:
        per_epoch = max(last.values()) / max(max(last), 1.0)
    else:
        s_all = [_number(r.get("step")) for r in steps]
        s_all = [s for s in s_all if s is not None]
        per_epoch = (max(s_all) / max(epochs.max(), 1.0)) if s_all and epochs.size else 1.0
    return np.asarray([last.get(e, e * per_epoch) for e in epochs], dtype=float)


# --------------------------------------------------------------------------- drawing
def _figure(n_panels: int, *, panel_w: float = 5.0, panel_h: float = 3.4) -> tuple[Figure, list]:
    cols = min(n_panels, 3)
    rows = math.ceil(n_panels / cols)
    fig = Figure(figsize=(panel_w * cols, panel_h * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _term_panels(keys: list[str], steps: list[dict], epochs: list[dict], title: str,
                 out: Path) -> Path:
    """One panel per key: raw per-step values (faint), smoothed, and per-epoch values."""
    fig, axes = _figure(len(keys))
    fig.suptitle(title, fontsize=13)
    on_steps = any(_number(r.get("step")) is not None for r in steps)
    for ax, key in zip(axes, keys):
        color = "tab:blue"
        if on_steps:
            x, y = series(steps, key, "step")
            if x.size:
                ax.plot(x, y, color=color, alpha=0.25, linewidth=0.8, label="per step")
                ax.plot(x, smooth(y), color=color, linewidth=1.8, label="per step, smoothed")
        ex, ey = series(epochs, key, "epoch")
        if ex.size:
            xpos = _epoch_positions(ex, steps) if on_steps else ex
            ax.plot(xpos, ey, "o-", color="tab:orange", linewidth=1.2, markersize=4,
                    label="per epoch")
        ax.set_title(key.removeprefix("train/"))
        ax.set_xlabel("step" if on_steps else "epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("value")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    return _save(fig, out)


def plot_losses(steps: list[dict], epochs: list[dict], out: Path) -> Path | None:
    """Training loss terms (``train/*`` other than the KL / alignment terms)."""
    keys = [k for k in numeric_keys(steps + epochs, "train/")
            if not k.startswith(REGULARIZER_PREFIXES)]
    keys.sort(key=lambda k: (k != "train/loss", k))  # the total first
    if not keys:
        return None
    return _term_panels(keys, steps, epochs, "Training loss", out)


def plot_regularizers(steps: list[dict], epochs: list[dict], out: Path) -> Path | None:
    """MMIB's information-bottleneck KL terms and the alignment term over training."""
    keys = [k for k in numeric_keys(steps + epochs, "train/") if k.startswith(REGULARIZER_PREFIXES)]
    if not keys:
        return None
    return _term_panels(sorted(keys), steps, epochs, "KL and alignment terms", out)


def plot_dev_metrics(epochs: list[dict], out: Path) -> Path | None:
    """Dev metrics per epoch; losses (keys containing 'loss') in a second panel."""
    keys = numeric_keys(epochs, "dev/")
    metrics = [k for k in keys if "loss" not in k]
    losses = [k for k in keys if "loss" in k]
    if not keys:
        return None
    fig, axes = _figure(int(bool(metrics)) + int(bool(losses)), panel_w=6.0, panel_h=4.0)
    fig.suptitle("Development set", fontsize=13)
    panels = []
    if metrics:
        panels.append((axes.pop(0), metrics, "score"))
    if losses:
        panels.append((axes.pop(0), losses, "loss"))
    for ax, group, ylabel in panels:
        for key in group:
            x, y = series(epochs, key, "epoch")
            if x.size:
                ax.plot(x, y, "o-", markersize=4, label=key.removeprefix("dev/"))
        if ylabel == "score" and "dev/f1" in group:
            x, y = series(epochs, "dev/f1", "epoch")
            if y.size:
                best = int(np.argmax(y))
                ax.axvline(x[best], color="grey", linestyle="--", linewidth=1)
                ax.annotate(f"best f1 {y[best]:.4g}\n(epoch {x[best]:g})", (x[best], y[best]),
                            textcoords="offset points", xytext=(6, -28), fontsize=8)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.set_title("metrics" if ylabel == "score" else "losses")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out)


def plot_lr(steps: list[dict], epochs: list[dict], out: Path) -> Path | None:
    """The learning rate per step (``lr`` in steps.jsonl) or per epoch."""
    for records, x_key in ((steps, "step"), (epochs, "epoch")):
        x, y = series(records, "lr", x_key)
        if x.size:
            fig, (ax,) = _figure(1, panel_w=6.0, panel_h=3.5)
            ax.plot(x, y, "-" if x.size > 30 else "o-", markersize=4, color="tab:green")
            ax.set_title("Learning rate")
            ax.set_xlabel(x_key)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("lr")
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
            ax.grid(alpha=0.3)
            return _save(fig, out)
    return None


def plot_confusion(labels: list[str], matrix, out: Path, title: str = "Confusion matrix") -> Path:
    """Row-normalised confusion matrix (rows gold, columns predicted); counts are written in
    the cells when there are at most ``ANNOTATE_MAX_LABELS`` labels."""
    counts = np.asarray(matrix, dtype=float)
    n = len(labels)
    norm = normalise_rows(counts)
    size = float(np.clip(0.45 * n + 2.5, 4.5, 16.0))
    fig = Figure(figsize=(size + 1.2, size), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the gold row")
    fontsize = 9 if n <= 10 else 7
    ax.set_xticks(range(n), labels=labels, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center",
                  fontsize=fontsize)
    ax.set_yticks(range(n), labels=labels, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(f"{title} (n = {int(counts.sum())})")
    if n <= ANNOTATE_MAX_LABELS:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=fontsize,
                        color="white" if norm[i, j] > 0.6 else "black")
    return _save(fig, out)


def _confusion_of(path: Path) -> tuple[list[str], np.ndarray] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"not a valid JSON file ({e})", path=path) from None
    conf = data.get("confusion") if isinstance(data, dict) else None
    if conf is None:
        return None
    if not isinstance(conf, dict) or "labels" not in conf or "matrix" not in conf:
        raise DataError("expected {'labels': [...], 'matrix': [[...]]}", path=path,
                        field="confusion")
    labels = [str(x) for x in conf["labels"]]
    try:
        m = np.asarray(conf["matrix"], dtype=float)
    except (TypeError, ValueError):
        raise DataError("matrix must be a list of rows of numbers", path=path,
                        field="confusion.matrix") from None
    if m.shape != (len(labels), len(labels)):
        raise DataError(f"matrix has shape {m.shape}; expected {len(labels)}x{len(labels)} "
                        f"for {len(labels)} labels", path=path, field="confusion.matrix")
    if (m < 0).any() or not np.isfinite(m).all():
        raise DataError("matrix holds negative or non-finite counts", path=path,
                        field="confusion.matrix")
    return labels, m


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write every figure the run's logs allow into ``out_dir`` (default ``<run_dir>/plots``)
    and return their paths. Raises :class:`DataError` when the directory has none of
    ``metrics.jsonl``, ``steps.jsonl`` or ``eval_*.json``, or when one of them is malformed."""
    run = Path(run_dir)
    if not run.is_dir():
        raise DataError("run directory not found", path=run)
    out = Path(out_dir) if out_dir is not None else run / "plots"
    epochs = read_records(run / "metrics.jsonl") if (run / "metrics.jsonl").exists() else []
    steps = read_records(run / "steps.jsonl") if (run / "steps.jsonl").exists() else []
    evals = sorted(run.glob("eval_*.json"))
    if not epochs and not steps and not evals:
        raise DataError("nothing to plot: expected metrics.jsonl, steps.jsonl or eval_*.json",
                        path=run)
    written = [
        plot_losses(steps, epochs, out / "loss.png"),
        plot_dev_metrics(epochs, out / "dev_metrics.png"),
        plot_regularizers(steps, epochs, out / "regularizers.png"),
        plot_lr(steps, epochs, out / "lr.png"),
    ]
    for path in evals:
        conf = _confusion_of(path)
        if conf is not None:
            name = path.stem.removeprefix("eval_")
            written.append(plot_confusion(*conf, out / f"confusion_{name}.png",
                                          title=f"Confusion matrix: {name}"))
    return [p for p in written if p is not None]
