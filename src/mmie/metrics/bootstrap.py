"""Paired bootstrap confidence intervals for the difference of two systems' scores.

The unit of resampling is the test post (instance): both systems were run with the same seeds
on the same test posts; every bootstrap replicate draws post indices with replacement once and
applies that same draw to both systems and to every seed, recomputes each run's score on the
replicate, averages the scores over the seeds and takes the difference A - B. Seeds whose test
sets differ (zero-shot folds give each seed its own unseen labels) are grouped by their list of
post ids: seeds of one group share a draw, groups are drawn independently.

Scores are computed from per-post *sufficient statistics*, so a replicate is a weighted sum:

* NER entity micro F1 (seqeval's default, conlleval-compatible mode): per post the counts
  ``(correct, predicted, gold)`` of entities; ``F1 = 2 c / (p + g)`` (0 when ``p + g = 0``),
  which equals ``2PR / (P + R)``.
* RE micro F1 without ``None``: per post ``(correct non-None, predicted non-None, gold non-None)``.
* Accuracy: per post ``(correct,)``; mean over posts.
* Macro F1 over a fixed label list (zero-shot typing): per post and label
  ``(correct, predicted, gold)``, one-hot; the mean of per-label ``2 c / (p + g)``.

Functions return plain floats; :func:`paired_bootstrap` returns the observed difference of
seed-means, the percentile interval, and ``p_le_0``, the share of replicates with a difference
at most 0 (a one-sided bootstrap p-value for "A is better").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
from seqeval.metrics.sequence_labeling import get_entities

from mmie.errors import DataError

__all__ = ["Metric", "METRICS", "ner_post_counts", "re_post_counts", "accuracy_post_stats",
           "label_post_stats", "micro_f1", "mean_accuracy", "macro_f1", "resample_indices",
           "resample_weights", "paired_bootstrap", "align_runs", "bootstrap_runs"]


# --- per-post statistics ----------------------------------------------------------------------
def ner_post_counts(gold_tags: Sequence[Sequence[str]],
                    pred_tags: Sequence[Sequence[str]]) -> np.ndarray:
    """``[n_posts, 3]`` int array of ``(correct, predicted, gold)`` entities per post, entities
    read as seqeval's default mode reads them (an ``I-`` after ``O`` or another type opens a
    span), so the summed counts give :func:`mmie.metrics.entity_scores`'s headline F1."""
    if len(gold_tags) != len(pred_tags):
        raise DataError(f"{len(gold_tags)} gold tag sequences but {len(pred_tags)} predicted")
    out = np.zeros((len(gold_tags), 3), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gold_tags, pred_tags)):
        if len(g) != len(p):
            raise DataError(f"post {i}: {len(g)} gold tags but {len(p)} predicted tags")
        gs = set(get_entities(list(g)))
        ps = set(get_entities(list(p)))
        out[i] = (len(gs & ps), len(ps), len(gs))
    return out


def re_post_counts(gold: Sequence[str], pred: Sequence[str], none_label: str = "None"
                   ) -> np.ndarray:
    """``[n, 3]`` of ``(correct non-None, predicted non-None, gold non-None)`` per instance."""
    if len(gold) != len(pred):
        raise DataError(f"{len(gold)} gold labels but {len(pred)} predicted labels")
    return np.array([(int(p == g and p != none_label), int(p != none_label),
                      int(g != none_label)) for g, p in zip(gold, pred)],
                    dtype=np.int64).reshape(len(gold), 3)


def accuracy_post_stats(gold: Sequence[str], pred: Sequence[str]) -> np.ndarray:
    """``[n, 1]``: 1 where the prediction equals the gold label."""
    if len(gold) != len(pred):
        raise DataError(f"{len(gold)} gold labels but {len(pred)} predicted labels")
    return np.array([[int(g == p)] for g, p in zip(gold, pred)], dtype=np.int64).reshape(-1, 1)


def label_post_stats(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]
                     ) -> np.ndarray:
    """``[n, 3 * len(labels)]``: per label ``(correct, predicted, gold)`` one-hot counts (a
    prediction outside ``labels`` counts for no label, as in ``zero_shot_metrics``)."""
    if len(gold) != len(pred):
        raise DataError(f"{len(gold)} gold labels but {len(pred)} predicted labels")
    idx = {l: k for k, l in enumerate(labels)}
    out = np.zeros((len(gold), len(labels), 3), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gold, pred)):
        if g in idx:
            out[i, idx[g], 2] = 1
            if p == g:
                out[i, idx[g], 0] = 1
        if p in idx:
            out[i, idx[p], 1] = 1
    return out.reshape(len(gold), 3 * len(labels))


# --- scores from summed statistics (vectorised over leading axes) -----------------------------
def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def micro_f1(sums: np.ndarray) -> np.ndarray:
    """F1 from summed ``(correct, predicted, gold)`` on the last axis."""
    s = np.asarray(sums)
    return _ratio(2 * s[..., 0], s[..., 1] + s[..., 2])


def mean_accuracy(sums: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    return _ratio(np.asarray(sums)[..., 0], n)


def macro_f1(sums: np.ndarray) -> np.ndarray:
    """Mean over labels of per-label F1 from ``label_post_stats`` sums."""
    s = np.asarray(sums)
    s = s.reshape(*s.shape[:-1], -1, 3)
    return micro_f1(s).mean(axis=-1)


@dataclass(frozen=True)
class Metric:
    """A score computed from summed per-post statistics; ``value(sums, n_posts)``."""

    name: str
    value: Callable[[np.ndarray, np.ndarray], np.ndarray]


METRICS: dict[str, Metric] = {
    "f1": Metric("f1", lambda s, n: micro_f1(s)),
    "accuracy": Metric("accuracy", lambda s, n: mean_accuracy(s, n)),
    "macro_f1": Metric("macro_f1", lambda s, n: macro_f1(s)),
}


# --- resampling ---------------------------------------------------------------------------------
def resample_indices(n: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_resamples, n]`` post indices drawn with replacement: ``rng.integers(0, n, ...)``."""
    return rng.integers(0, n, size=(n_resamples, n))


def resample_weights(indices: np.ndarray, n: int) -> np.ndarray:
    """How often each post occurs in each replicate: ``[R, n]`` from ``[R, m]`` indices."""
    indices = np.asarray(indices)
    r = indices.shape[0]
    flat = (np.arange(r)[:, None] * n + indices).ravel()
    return np.bincount(flat, minlength=r * n).reshape(r, n)


def _seed_mean(stats: Sequence[np.ndarray], metric: Metric, weights: np.ndarray | None
               ) -> np.ndarray:
    """Mean over seeds of the metric; ``weights`` ``[R, n]`` (None = the full set once)."""
    vals = []
    for st in stats:
        st = np.asarray(st)
        if weights is None:
            vals.append(metric.value(st.sum(axis=0), np.int64(len(st))))
        else:
            vals.append(metric.value(weights @ st, weights.sum(axis=1)))
    return np.mean(vals, axis=0)


def paired_bootstrap(a: Sequence[np.ndarray], b: Sequence[np.ndarray], metric: str | Metric,
                     *, groups: Sequence[int] | None = None, n_resamples: int = 10000,
                     seed: int = 0, indices: Mapping[int, np.ndarray] | None = None,
                     chunk: int = 1000, level: float = 0.95) -> dict[str, float]:
    """Paired bootstrap of ``mean_seeds(metric(A)) - mean_seeds(metric(B))``.

    ``a[k]`` and ``b[k]`` are the per-post statistics ``[n_k, d]`` of seed ``k`` (rows aligned:
    row ``i`` of both is the same post). ``groups[k]`` names the test set of seed ``k`` (default:
    one set for every seed, so all must have the same ``n``); seeds of one group share each
    replicate's draw. ``indices`` (``{group: [R, n] array}``) fixes the draws (tests); otherwise
    each chunk of replicates draws, for each group in sorted order,
    ``rng.integers(0, n, (chunk, n))`` from ``np.random.default_rng(seed)``.

    Returns ``diff`` (observed difference of seed-means), ``a``, ``b`` (observed seed-means),
    ``ci_low`` / ``ci_high`` (percentile interval at ``level``, numpy's linear interpolation),
    ``boot_mean`` (mean replicate difference), ``p_le_0`` (share of replicates with a
    difference <= 0), ``n_posts`` (summed over groups), ``n_seeds``, ``n_resamples``.
    """
    m = METRICS[metric] if isinstance(metric, str) else metric
    if len(a) != len(b) or not a:
        raise DataError(f"paired bootstrap needs the same seeds for both systems, got {len(a)} "
                        f"and {len(b)} runs")
    groups = list(groups) if groups is not None else [0] * len(a)
    if len(groups) != len(a):
        raise DataError(f"{len(groups)} group ids for {len(a)} seeds")
    members: dict[int, list[int]] = {}
    for k, g in enumerate(groups):
        members.setdefault(g, []).append(k)
    sizes: dict[int, int] = {}
    for g, ks in members.items():
        for k in ks:
            na, nb = len(a[k]), len(b[k])
            if na != nb:
                raise DataError(f"seed #{k}: {na} posts for A but {nb} for B (not paired)")
            if sizes.setdefault(g, na) != na:
                raise DataError(f"seeds of test set {g} have {sizes[g]} and {na} posts; give "
                                "each distinct test set its own group")
            if na == 0:
                raise DataError(f"seed #{k}: no posts to resample")
    obs_a = float(_seed_mean(a, m, None))
    obs_b = float(_seed_mean(b, m, None))
    order = sorted(members)
    if indices is not None:
        lens = {len(np.asarray(indices[g])) for g in order}
        if len(lens) != 1:
            raise DataError("fixed resamples: every group needs the same number of replicates")
        n_resamples = lens.pop()
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, chunk):
        c = min(chunk, n_resamples - start)
        tot_a = np.zeros(c)
        tot_b = np.zeros(c)
        for g in order:
            idx = (np.asarray(indices[g])[start:start + c] if indices is not None
                   else resample_indices(sizes[g], c, rng))
            w = resample_weights(idx, sizes[g])
            for k in members[g]:
                tot_a += m.value(w @ np.asarray(a[k]), w.sum(axis=1))
                tot_b += m.value(w @ np.asarray(b[k]), w.sum(axis=1))
        diffs[start:start + c] = tot_a / len(a) - tot_b / len(b)
    alpha = (1 - level) / 2
    lo, hi = np.percentile(diffs, [100 * alpha, 100 * (1 - alpha)])
    return {"diff": obs_a - obs_b, "a": obs_a, "b": obs_b, "ci_low": float(lo),
            "ci_high": float(hi), "boot_mean": float(diffs.mean()),
            "p_le_0": float(np.mean(diffs <= 0)), "n_posts": int(sum(sizes.values())),
            "n_seeds": len(a), "n_resamples": int(n_resamples), "level": level}


# --- runs given as post ids + statistics ---------------------------------------------------------
def align_runs(a: Mapping[int, tuple[Sequence[str], np.ndarray]],
               b: Mapping[int, tuple[Sequence[str], np.ndarray]]
               ) -> tuple[list[int], list[np.ndarray], list[np.ndarray], list[int]]:
    """Pair two systems' runs: ``{seed: (post ids, stats [n, d])}`` each. Uses the seeds both
    have (sorted); within a seed, B's rows are reordered to A's post ids (which must be the
    same set, each id once). Returns ``(seeds, stats_a, stats_b, groups)`` where seeds with
    the same id list share a group id."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise DataError(f"no seed in common: A has {sorted(a)}, B has {sorted(b)}")
    sa, sb, groups = [], [], []
    group_of: dict[tuple[str, ...], int] = {}
    for s in seeds:
        ids_a, st_a = a[s]
        ids_b, st_b = b[s]
        ids_a, ids_b = [str(i) for i in ids_a], [str(i) for i in ids_b]
        if len(set(ids_a)) != len(ids_a):
            raise DataError(f"seed {s}: post ids repeat, cannot pair by id")
        if ids_a != ids_b:
            pos = {i: k for k, i in enumerate(ids_b)}
            if len(pos) != len(ids_b) or set(pos) != set(ids_a):
                extra = sorted(set(ids_a) ^ set(pos))[:5]
                raise DataError(f"seed {s}: the two systems scored different posts (e.g. "
                                f"{extra}); paired bootstrap needs the same test posts")
            st_b = np.asarray(st_b)[[pos[i] for i in ids_a]]
        sa.append(np.asarray(st_a))
        sb.append(np.asarray(st_b))
        groups.append(group_of.setdefault(tuple(ids_a), len(group_of)))
    return seeds, sa, sb, groups


def bootstrap_runs(a: Mapping[int, tuple[Sequence[str], np.ndarray]],
                   b: Mapping[int, tuple[Sequence[str], np.ndarray]], metric: str | Metric,
                   **kw) -> dict:
    """:func:`align_runs` then :func:`paired_bootstrap`; the result also lists the seeds."""
    seeds, sa, sb, groups = align_runs(a, b)
    out = paired_bootstrap(sa, sb, metric, groups=groups, **kw)
    out["seeds"] = seeds
    out["test_sets"] = len(set(groups))
    return out
