"""Diagnostic figures of a saved MG-VMoE (zero-shot) model on a data split, as PNG files.

:func:`plot_zero_shot` runs the model over the split's instances (the same instances, image
features and candidate labels as ``mmie evaluate``) and writes into ``out_dir``:

``routing_<split>.png``     expert routing per gold label: the mean gate weight of each expert
                            over the valid text tokens of the label's instances (left), and over
                            their image tokens (right). For ``test`` the rows are the unseen labels.
``embeddings_<split>.png``  a 2-D PCA of the scorer's joint space: the projected instance vectors
                            (small dots, coloured by gold label) and the projected label vectors
                            of the split's candidates (large labelled stars; by default shifted
                            together onto the instances' centre, which changes no ranking).
``zeroshot_<split>.json``   the routing matrices, instance counts, accuracy (overall and per
                            label) and the PCA's explained variance.

The gates are read with forward hooks on ``model.moe`` (called once on the text tokens, then
once on the image tokens, by :meth:`MGVMoEModel.represent`) and the joint-space vectors with
hooks on ``model.scorer.sample_proj`` / ``label_proj``, while the model predicts through its own
``predict`` in eval mode, so the accuracy is the one ``mmie evaluate`` reports.

Figures are drawn on :class:`matplotlib.figure.Figure` with the Agg canvas (no ``pyplot``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mmie.errors import ConfigError, DataError
from mmie.inference.evaluate import config_for_data
from mmie.inference.predictor import load
from mmie.plots.figures import DPI, _save
from mmie.tasks.zs import instance_label
from mmie.training.data import MMIEDataModule, canonical_split

ANNOTATE_MAX_CELLS = 400


# --------------------------------------------------------------------------- collection
class _Capture:
    """Forward hooks that keep, per batch, the MoE gates (with their token masks) and the
    joint-space vectors of the samples and labels."""

    def __init__(self, model):
        self.calls: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self.samples: list[torch.Tensor] = []
        self.labels: torch.Tensor | None = None
        self._handles = [
            model.moe.register_forward_hook(self._moe),
            model.scorer.sample_proj.register_forward_hook(self._sample),
            model.scorer.label_proj.register_forward_hook(self._label),
        ]

    def _moe(self, module, args, output) -> None:
        mask = args[1] if len(args) > 1 else None
        self.calls.append((output.gates.detach().float().cpu(),
                           None if mask is None else mask.detach().bool().cpu()))

    def _sample(self, module, args, output) -> None:
        self.samples.append(output.detach().float().cpu())

    def _label(self, module, args, output) -> None:
        if output.dim() != 2:
            raise DataError("per-instance candidate labels are not supported by the plot; "
                            "expected one shared candidate set per batch")
        self.labels = output.detach().float().cpu()

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def _routing_sums(gates: torch.Tensor, mask: torch.Tensor, gold_idx: torch.Tensor,
                  n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per gold label: the gate weights summed over the masked tokens ``[L, E]`` and the
    token counts ``[L]``."""
    m = mask.float()
    per_ex = (gates * m.unsqueeze(-1)).sum(1)           # [B, E]
    counts = m.sum(1)                                   # [B]
    sums = torch.zeros(n_labels, gates.shape[-1]).index_add_(0, gold_idx, per_ex)
    toks = torch.zeros(n_labels).index_add_(0, gold_idx, counts)
    return sums.double().numpy(), toks.double().numpy()


def _mean_rows(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Rows divided by their token counts; NaN where a label has no token."""
    out = np.full_like(sums, np.nan)
    has = counts > 0
    out[has] = sums[has] / counts[has, None]
    return out


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project the rows of ``x [N, D]`` onto their first two principal components (numpy SVD
    of the centred data). Returns ``(coords [N, 2], explained variance ratio [2])``; with
    fewer than two non-trivial directions the missing coordinates are 0."""
    x = np.asarray(x, dtype=np.float64)
    xc = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    k = min(2, vt.shape[0])
    coords = np.zeros((x.shape[0], 2))
    coords[:, :k] = xc @ vt[:k].T
    var = s ** 2
    ratio = np.zeros(2)
    if var.sum() > 0:
        ratio[:k] = var[:k] / var.sum()
    return coords, ratio


# --------------------------------------------------------------------------- drawing
def _label_colors(labels: list[str]) -> dict[str, Any]:
    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {l: cmap(i % cmap.N) for i, l in enumerate(labels)}


def plot_routing(labels: list[str], text: np.ndarray, image: np.ndarray | None, out: Path,
                 title: str, counts: dict[str, int] | None = None) -> Path:
    """Heatmaps labels x experts of the mean gate weight (text tokens; image tokens beside)."""
    panels = [("text tokens", text)] + ([("image tokens", image)] if image is not None else [])
    n, e = text.shape
    h = float(np.clip(0.42 * n + 1.8, 3.0, 14.0))
    w = float(np.clip(0.55 * e + 3.2, 4.0, 10.0))
    fig = Figure(figsize=(w * len(panels) + 1.0, h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False).ravel()
    fig.suptitle(title, fontsize=12)
    rows = [f"{l} (n={counts[l]})" if counts else l for l in labels]
    vmax = float(np.nanmax([np.nanmax(m) if np.isfinite(m).any() else 0.0 for _, m in panels]))
    vmax = max(vmax, 1.0 / e)
    im = None
    for ax, (name, m) in zip(axes, panels):
        im = ax.imshow(np.ma.masked_invalid(m), cmap="viridis", vmin=0.0, vmax=vmax,
                       aspect="auto", interpolation="nearest")
        ax.set_xticks(range(e), labels=[f"E{j}" for j in range(e)], fontsize=8)
        ax.set_yticks(range(n), labels=rows, fontsize=8)
        ax.set_xlabel("expert")
        ax.set_title(f"{name} (uniform = {1.0 / e:.3g})", fontsize=10)
        if n * e <= ANNOTATE_MAX_CELLS:
            for i in range(n):
                for j in range(e):
                    if math.isfinite(m[i, j]):
                        ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                                color="black" if m[i, j] > 0.6 * vmax else "white")
    axes[0].set_ylabel("gold label")
    fig.colorbar(im, ax=list(axes), shrink=0.8, label="mean gate weight")
    return _save(fig, out)


def plot_embeddings(sample_xy: np.ndarray, gold: list[str], label_xy: np.ndarray,
                    label_names: list[str], out: Path, title: str,
                    ratio: np.ndarray | None = None) -> Path:
    """Instances as small dots coloured by gold label, labels as large labelled stars."""
    order = list(dict.fromkeys(label_names + sorted(set(gold) - set(label_names))))
    colors = _label_colors(order)
    fig = Figure(figsize=(7.5, 6.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    gold_arr = np.asarray(gold)
    for l in order:
        sel = gold_arr == l
        if sel.any():
            ax.scatter(sample_xy[sel, 0], sample_xy[sel, 1], s=14, alpha=0.7, color=colors[l],
                       label=f"{l} (n={int(sel.sum())})", linewidths=0)
    n_lab = max(1, len(label_names))
    for k, ((x, y), l) in enumerate(zip(label_xy, label_names)):
        ax.scatter([x], [y], marker="*", s=320, color=colors[l], edgecolors="black",
                   linewidths=0.8, zorder=3)
        # names fanned out around their stars so that nearby labels stay readable
        a = 2 * math.pi * k / n_lab + math.pi / 4
        ax.annotate(l, (x, y), textcoords="offset points", xytext=(22 * math.cos(a),
                    22 * math.sin(a)), ha="center", va="center", fontsize=9, weight="bold",
                    zorder=4, arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.6})
    if ratio is not None:
        ax.set_xlabel(f"PC 1 ({100 * ratio[0]:.1f}% of variance)")
        ax.set_ylabel(f"PC 2 ({100 * ratio[1]:.1f}% of variance)")
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, title="gold label (dots); stars = labels", title_fontsize=7,
              loc="best", markerscale=1.5)
    return _save(fig, out)


# --------------------------------------------------------------------------- main entry
def plot_zero_shot(model_dir: str | Path, *, split: str = "test", data: str | None = None,
                   data_dir: str | None = None, out_dir: str | Path | None = None,
                   limit: int | None = None, batch_size: int = 64, device: str = "cpu",
                   center_labels: bool = True) -> list[Path]:
    """Routing and joint-space figures of a saved MG-VMoE model on ``split``.

    Args:
        model_dir: a saved model (``<run>/model``).
        split: ``train``, ``dev`` or ``test`` (instances pooled and partitioned by label as in
            training, so ``test`` holds the unseen labels).
        data, data_dir: another data set / data root (default: the training data).
        out_dir: where to write (default ``<model_dir>/../plots``).
        limit: use only the first ``limit`` instances of the split.
        center_labels: translate the label vectors so that their mean is the instances' mean
            before the PCA. Scores are dot products, and one shift of every label vector
            changes all of an instance's scores by the same amount, so this changes no
            prediction; without it the first component is mostly the offset between the two
            clouds. The raw layout is drawn with ``center_labels=False``.

    Returns the paths written: ``routing_<split>.png``, ``embeddings_<split>.png`` and
    ``zeroshot_<split>.json``. Raises :class:`ConfigError` for a model that is not MG-VMoE and
    :class:`DataError` for an empty split.
    """
    model_dir = Path(model_dir)
    pred = load(model_dir, device=device)
    task, model = pred.task, pred.model
    if pred.cfg.model.type != "mg_vmoe":
        raise ConfigError(f"{model_dir}: plot-zs needs an MG-VMoE zero-shot model; this one is "
                          f"model.type={pred.cfg.model.type!r}, task={task.name!r}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be a positive number of instances, got {limit}")
    cfg = config_for_data(pred.cfg, data, data_dir)
    key = canonical_split(split)
    dm = MMIEDataModule(cfg, model.text, model.vision, task, splits=(key,), limit=limit)
    dm.setup("test")
    if not dm.report["instances"][key]:
        raise DataError(f"no {split} instances to plot (data set {cfg.data.name!r})")
    examples = dm.examples[key]
    report: dict[str, Any] = {"examples": dm.report["instances"][key],
                              **{k: dm.report[k] for k in ("images", "feature_cache")
                                 if k in dm.report}}
    if not examples:
        raise DataError(f"every {split} instance was dropped by the image policy "
                        f"({cfg.data.image_policy})")
    dl = dm.loader(key, batch_size, group_by_length=False, num_workers=0)

    gold_labels = sorted({instance_label(ex) for ex in examples})
    li = {l: i for i, l in enumerate(gold_labels)}
    E = int(model.moe.num_experts)
    t_sum = t_cnt = v_sum = v_cnt = None
    outputs: list[Any] = []
    cands: list[str] = []
    cap = _Capture(model)
    model.eval()
    try:
        with torch.no_grad():
            for batch in dl:
                batch = {k: v.to(pred.device) if hasattr(v, "to") else v for k, v in batch.items()}
                cap.calls.clear()
                outputs.extend(model.predict(batch))
                if len(cap.calls) != 2:
                    raise RuntimeError(f"expected the MoE layer to run twice per batch (text, "
                                       f"image); it ran {len(cap.calls)} times")
                cands = list(batch["candidates"])
                idx = torch.tensor([li[instance_label(examples[int(i)])]
                                    for i in batch["index"]])
                (g_t, m_t), (g_v, m_v) = cap.calls
                if m_t is None:
                    m_t = batch["attention_mask"].bool().cpu()
                if m_v is None:  # no picture in the batch: nothing counts
                    m_v = torch.zeros(g_v.shape[:2], dtype=torch.bool)
                s_t, c_t = _routing_sums(g_t, m_t, idx, len(gold_labels))
                s_v, c_v = _routing_sums(g_v, m_v, idx, len(gold_labels))
                if t_sum is None:
                    t_sum, t_cnt, v_sum, v_cnt = s_t, c_t, s_v, c_v
                else:
                    t_sum += s_t
                    t_cnt += c_t
                    v_sum += s_v
                    v_cnt += c_v
    finally:
        cap.close()
    text_routing = _mean_rows(t_sum, t_cnt)
    image_routing = _mean_rows(v_sum, v_cnt)
    has_image = bool((v_cnt > 0).any())

    preds = task.decode(examples, outputs)
    scores = task.evaluate(examples, preds)
    gold = [instance_label(ex) for ex in examples]
    n_per = {l: gold.count(l) for l in gold_labels}
    acc_per = {l: sum(1 for g, p in zip(gold, preds) if g == l and p["label"] == l) / n_per[l]
               for l in gold_labels}

    samples = torch.cat(cap.samples).numpy().astype(np.float64)
    labels_vec = cap.labels.numpy().astype(np.float64)
    if center_labels:
        # a common shift of every label vector adds the same s.c to all of an instance's
        # scores, so no ranking changes: show the labels around the instances' centre
        labels_vec = labels_vec - labels_vec.mean(0) + samples.mean(0)
    coords, ratio = pca_2d(np.concatenate([samples, labels_vec]))
    sample_xy, label_xy = coords[:len(samples)], coords[len(samples):]

    out = Path(out_dir) if out_dir is not None else model_dir.resolve().parent / "plots"
    what = f"{cfg.data.name} {split}"
    written = [
        plot_routing(gold_labels, text_routing, image_routing if has_image else None,
                     out / f"routing_{split}.png",
                     f"MG-VMoE expert routing per gold label: {what} "
                     f"(n={len(examples)}, {E} experts, {cfg.model.mg_vmoe.gating} gating)", n_per),
        plot_embeddings(sample_xy, gold, label_xy, cands, out / f"embeddings_{split}.png",
                        f"Joint label space (PCA): {what}, accuracy {scores['accuracy']:.3f}"
                        + ("\n(label vectors shifted to the instances' centre; no score "
                           "ranking changes)" if center_labels else ""), ratio),
    ]

    def _rows(m: np.ndarray) -> list[list[float | None]]:
        return [[float(v) if math.isfinite(v) else None for v in r] for r in m]

    summary = {
        "model_dir": str(model_dir), "data": cfg.data.name, "split": split,
        "n": len(examples), "task": task.name, "num_experts": E, "gating": cfg.model.mg_vmoe.gating,
        "labels": gold_labels, "candidates": cands,
        "unseen_labels": list(task.split.unseen),
        "examples_per_label": n_per,
        "accuracy": scores["accuracy"], "macro_f1": scores.get("macro_f1"),
        "accuracy_per_label": acc_per,
        "routing": {"text": _rows(text_routing),
                    "image": _rows(image_routing) if has_image else None,
                    "text_tokens_per_label": [int(c) for c in t_cnt],
                    "image_tokens_per_label": [int(c) for c in v_cnt]},
        "pca_explained_variance": [float(r) for r in ratio],
        "pca_labels_centered": center_labels,
        "report": report,
    }
    js = out / f"zeroshot_{split}.json"
    js.parent.mkdir(parents=True, exist_ok=True)
    tmp = js.with_name(js.name + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False, default=str) + "\n",
                   encoding="utf-8")
    tmp.replace(js)
    return [*written, js]


__all__ = ["plot_zero_shot", "plot_routing", "plot_embeddings", "pca_2d"]
