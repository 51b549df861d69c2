"""End-to-end training on the generated synthetic set with tiny random encoders.

Every (model type x task) combination trains for a few epochs; the tests check the run
directory: loss terms, loss going down, dev-based model selection, checkpoint round trip,
evaluation recomputation, determinism and the saved config. The tiny runs are the session's
(``tiny_run`` / ``tiny_runs`` fixtures of conftest.py), trained once each.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mmie.config import load_config
from mmie.data.tokenize import words_to_text

from helpers import COMBOS, get_run  # noqa: F401  (get_run: re-exported for other modules)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]


EXPECTED_TERMS = {
    "mmib": {"task", "loss", "kl_text", "kl_image", "align"},
    "text": {"task", "loss"},
    "fusion": {"task", "loss"},
    "mg_vmoe": {"task", "loss", "kl_text", "kl_image", "gate_entropy", "nce", "vat"},
    "label_sim": {"task", "loss"},
}
RUN_FILES = ["config.yaml", "metrics.jsonl", "steps.jsonl", "checkpoints/best.ckpt",
             "checkpoints/last.ckpt", "model/config.json", "eval_dev.json", "eval_test.json",
             "predictions_test.jsonl", "summary.json"]


@pytest.mark.parametrize("name", list(COMBOS))
def test_run_directory_terms_and_model_selection(name, tiny_run):
    out, summary, cfg = tiny_run(name)
    for f in RUN_FILES:
        assert (out / f).is_file(), f"{name}: {f} missing"
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == list(range(1, cfg.trainer.max_epochs + 1))
    # loss terms of this model type, and the total is the weighted sum of positive terms
    for r in rows:
        terms = {k[len("train/"):] for k in r if k.startswith("train/")}
        assert EXPECTED_TERMS[cfg.model.type] <= terms, (name, terms)
        if cfg.model.type in ("text", "fusion", "label_sim"):
            assert terms == {"task", "loss"}
            assert r["train/loss"] == pytest.approx(r["train/task"], rel=1e-6)
    # ceil(train instances / batch 8) optimizer steps an epoch; a step row at steps 1, 3, 5, ...
    per_epoch = -(-summary["report"]["examples_used"]["train"] // cfg.trainer.batch_size)
    assert [r["step"] for r in rows] == [per_epoch * e for e in range(1, len(rows) + 1)]
    steps = read_jsonl(out / "steps.jsonl")
    assert [s["step"] for s in steps] == list(range(1, per_epoch * cfg.trainer.max_epochs + 1, 2))
    assert all(s["train/loss"] > 0 for s in steps)
    # model selection: best epoch = argmax of the dev metric (first of ties); the selected
    # checkpoint reproduces that epoch's dev score
    monitor = summary["selected_on"]
    dev = [r[monitor] for r in rows]
    best = dev.index(max(dev)) + 1
    assert summary["best_epoch"] == best
    eval_dev = json.loads((out / "eval_dev.json").read_text())
    metric = monitor.split("/", 1)[1]
    assert eval_dev[metric] == pytest.approx(dev[best - 1], abs=1e-9)
    eval_test = json.loads((out / "eval_test.json").read_text())
    assert eval_test["n"] == len(read_jsonl(out / "predictions_test.jsonl"))
    assert summary["test"][metric] == pytest.approx(eval_test[metric])
    # the saved config reloads to the same configuration
    assert load_config(out / "config.yaml") == cfg


@pytest.mark.parametrize("name", ["mmib_ner", "mmib_re", "mg_vmoe_typing"])
def test_every_loss_term_logged_per_epoch_with_finite_values(name, tiny_run):
    """Each epoch row of metrics.jsonl holds every term of the model (raw mean and weighted
    contribution), all finite, and the weighted contributions add up to the total loss."""
    import math

    out, _, cfg = tiny_run(name)
    for r in read_jsonl(out / "metrics.jsonl"):
        for term in EXPECTED_TERMS[cfg.model.type]:
            v = r.get(f"train/{term}")
            assert isinstance(v, float) and math.isfinite(v), (name, term, v)
            if term != "loss":
                w = r.get(f"weighted/{term}")
                assert isinstance(w, float) and math.isfinite(w), (name, term, w)
        weighted = sum(v for k, v in r.items() if k.startswith("weighted/"))
        assert weighted == pytest.approx(r["train/loss"], rel=1e-4)


def test_training_loss_decreases(tiny_run):
    out, _, _ = tiny_run("mmib_ner")
    rows = read_jsonl(out / "metrics.jsonl")
    task = [r["train/task"] for r in rows]
    loss = [r["train/loss"] for r in rows]
    assert all(b < a for a, b in zip(task, task[1:])), task
    assert loss[-1] < 0.8 * loss[0], loss
    # the MMIB total is task + weighted KL/alignment terms (betas are 1 by default)
    for r in rows:
        parts = r["train/task"] + r["train/kl_text"] + r["train/kl_image"] + r["train/align"]
        assert r["train/loss"] == pytest.approx(parts, rel=1e-4)
        assert r["train/kl_text"] > 0 and r["train/kl_image"] > 0


def _recompute(out: Path, tmp_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from mmie.inference.evaluate import evaluate

    pred_file = tmp_path / "preds.jsonl"
    res = evaluate(out / "model", split="test", output=pred_file, progress=False)
    return res, read_jsonl(pred_file)


@pytest.mark.parametrize("name", ["mmib_ner", "fusion_re", "mg_vmoe_typing", "label_sim_typing"])
def test_checkpoint_round_trip_evaluate_matches(name, tmp_path, tiny_run):
    """The reloaded model/ reproduces the test predictions and scores of training."""
    out, _, _ = tiny_run(name)
    res, recs = _recompute(out, tmp_path)
    saved = read_jsonl(out / "predictions_test.jsonl")
    assert len(recs) == len(saved) > 0
    for a, b in zip(recs, saved):
        assert a["id"] == b["id"] and a["gold"] == b["gold"]
        assert a["pred"] == b["pred"], (a["id"], a["pred"], b["pred"])
    eval_test = json.loads((out / "eval_test.json").read_text())
    for k in ("f1", "precision", "recall", "accuracy", "macro_f1", "strict_f1"):
        if k in eval_test:
            assert res[k] == pytest.approx(eval_test[k], abs=1e-9), k


def test_predictor_reproduces_test_predictions_ner(tiny_run):
    """mmie.load(run/model).predict_batch on raw tokens + image paths == predictions_test."""
    import mmie
    from mmie.data.images import resolve_image
    from mmie.training.data import image_dir_for

    out, _, cfg = tiny_run("mmib_ner")
    saved = read_jsonl(out / "predictions_test.jsonl")
    pred = mmie.load(out / "model")
    img_dir = image_dir_for(cfg, "test")
    items = [{"tokens": r["tokens"], "image": str(resolve_image(img_dir, r["image"]))}
             for r in saved]
    results = pred.predict_batch(items)
    for r, res in zip(saved, results):
        text, spans = words_to_text(r["tokens"])
        offs = [start for start, _ in spans]
        got = []
        for e in res:
            assert text[e["start"]:e["end"]] == e["text"]
            s = offs.index(e["start"])
            end_tok = max(i for i, o in enumerate(offs) if o < e["end"]) + 1
            got.append((s, end_tok, e["type"]))
        want = [(p["start"], p["end"], p["label"]) for p in r["pred"]]
        assert sorted(got) == sorted(want), r["id"]


def test_predictor_reproduces_test_predictions_re(tiny_run):
    import mmie
    from mmie.data.images import resolve_image
    from mmie.training.data import image_dir_for

    out, _, cfg = tiny_run("fusion_re")
    saved = read_jsonl(out / "predictions_test.jsonl")
    pred = mmie.load(out / "model")
    img_dir = image_dir_for(cfg, "test")
    items = []
    for r in saved:
        _, offs = words_to_text(r["tokens"])
        h, t = r["head"], r["tail"]
        items.append({"tokens": r["tokens"], "image": str(resolve_image(img_dir, r["image"])),
                      "head": (offs[h["start"]][0], offs[h["end"] - 1][1]),
                      "tail": (offs[t["start"]][0], offs[t["end"] - 1][1])})
    results = pred.predict_batch(items)
    assert [r["relation"] for r in results] == [r["pred"] for r in saved]
    for got, want in zip(results, saved):
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)


def test_same_seed_gives_identical_metrics(tiny_run, tiny_runs):
    a, _, _ = tiny_run("text_re")
    b, _, _ = tiny_runs.get("text_re_again", *COMBOS["text_re"])
    ra, rb = read_jsonl(a / "metrics.jsonl"), read_jsonl(b / "metrics.jsonl")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in rows]
    assert strip(ra) == strip(rb)
    assert read_jsonl(a / "predictions_test.jsonl") == read_jsonl(b / "predictions_test.jsonl")


def test_different_seed_changes_training(tiny_run, tiny_runs):
    a, _, _ = tiny_run("text_re")
    b, _, _ = tiny_runs.get("text_re_seed1", *COMBOS["text_re"], "seed=1")
    la = [r["train/loss"] for r in read_jsonl(a / "metrics.jsonl")]
    lb = [r["train/loss"] for r in read_jsonl(b / "metrics.jsonl")]
    assert la != lb


@pytest.mark.parametrize("switch,absent,present", [
    ("model.refinement=false", {"kl_text", "kl_image"}, {"task", "align"}),
    ("model.alignment=false", {"align"}, {"task", "kl_text", "kl_image"}),
])
def test_mmib_ablation_switches(switch, absent, present, tiny_runs):
    name = "mmib_ner_" + switch.split(".")[1].split("=")[0] + "_off"
    out, _, cfg = tiny_runs.get(name, "model.type=mmib", "model.task=ner",
                                "trainer.max_epochs=1", switch)
    rows = read_jsonl(out / "metrics.jsonl")
    terms = {k[len("train/"):] for k in rows[0] if k.startswith("train/")}
    assert not (absent & terms), terms
    assert present <= terms
    expect = sum(rows[0][f"train/{t}"] for t in terms - {"loss"})
    assert rows[0]["train/loss"] == pytest.approx(expect, rel=1e-4)
    assert load_config(out / "config.yaml") == cfg


def test_mg_vmoe_zero_shot_re_on_synthetic(tiny_runs):
    out, summary, _ = tiny_runs.get("mg_vmoe_re", "model.type=mg_vmoe", "model.task=re",
                              "trainer.max_epochs=1")
    rows = read_jsonl(out / "metrics.jsonl")
    assert EXPECTED_TERMS["mg_vmoe"] <= {k[6:] for k in rows[0] if k.startswith("train/")}
    assert summary["task"] == "zs_re"
    # the relation folds over the synthetic set's 5 relations (None excluded): round(5 * 8 / 22)
    # = 2 seen, then (5 - 2) // 2 = 1 validation and 2 unseen, each instance with its label
    from mmie.data.synthetic import RE_LABELS
    from mmie.tasks.zs_labels import split_relations

    split = json.loads((out / "model" / "config.json").read_text())["task"]["split"]
    want = split_relations(RE_LABELS, 0, n_seen=2, n_val=1, n_unseen=2)
    assert (split["seen"], split["val"], split["unseen"]) == \
        (list(want.seen), list(want.val), list(want.unseen))
    gold = {r["gold"] for r in read_jsonl(out / "predictions_test.jsonl")}
    assert gold <= set(want.unseen) and gold


@pytest.mark.parametrize("name", ["label_sim_typing", "mmib_ner"])
def test_evaluate_limit_counts_instances(name, tmp_path, tiny_run):
    """``evaluate(limit=k)`` scores exactly the first k test instances, for zero-shot tasks too
    (their instances are regrouped over every split), and these are the run's first k."""
    from mmie.inference.evaluate import evaluate

    out, _, _ = tiny_run(name)
    saved = read_jsonl(out / "predictions_test.jsonl")
    k = min(3, len(saved) - 1)
    res = evaluate(out / "model", split="test", limit=k, output=tmp_path / "p.jsonl",
                   progress=False)
    got = read_jsonl(tmp_path / "p.jsonl")
    assert res["n"] == len(got) == k
    assert [r["id"] for r in got] == [r["id"] for r in saved[:k]]
    with pytest.raises(Exception, match="positive"):
        evaluate(out / "model", split="test", limit=0, progress=False)
