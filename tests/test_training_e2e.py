"""End-to-end training on the generated synthetic set with tiny random encoders.

Every (model type x task) combination trains for a few epochs; the tests check the run
directory: loss terms, loss going down, dev-based model selection, checkpoint round trip,
evaluation recomputation, determinism and the saved config. Tiny runs are shared through
:func:`get_run` (memoised per test session; other test files import it).
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from mmie.config import RunConfig, load_config
from mmie.data.tokenize import words_to_text

_ROOT = Path(tempfile.mkdtemp(prefix="mmie-e2e-"))
atexit.register(shutil.rmtree, _ROOT, True)
CACHE = _ROOT / "cache"

BASE = ["data.name=synthetic", "data.synthetic_size=60", "data.max_length=48",
        "model.text_encoder=random:tiny-bert", "model.vision_encoder=random:tiny-resnet",
        "trainer.max_epochs=2", "trainer.batch_size=8", "trainer.progress=false",
        "trainer.log_every_n_steps=2", "trainer.accelerator=cpu", "trainer.devices=1",
        "trainer.patience=50", "data.limit_train=24", f"cache_dir={CACHE}"]

_RUNS: dict[tuple[str, tuple[str, ...]], tuple[Path, dict[str, Any], RunConfig]] = {}


def get_run(name: str, *overrides: str) -> tuple[Path, dict[str, Any], RunConfig]:
    """Train (once per session) a tiny model; returns (run dir, summary, config)."""
    key = (name, overrides)
    if key not in _RUNS:
        from mmie.training.train import train

        out = _ROOT / "runs" / name
        cfg = load_config(None, [*BASE, f"output_dir={out}", *overrides])
        summary = train(cfg)
        _RUNS[key] = (out, summary, cfg)
    return _RUNS[key]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]


# name -> overrides of every combination that exists
COMBOS = {
    "mmib_ner": ("model.type=mmib", "model.task=ner", "trainer.max_epochs=3",
                 "data.limit_train=40", "trainer.head_lr=3e-3", "trainer.lr=1e-3"),
    "mmib_re": ("model.type=mmib", "model.task=re"),
    "text_ner": ("model.type=text", "model.task=ner"),
    "text_re": ("model.type=text", "model.task=re"),
    "fusion_ner": ("model.type=fusion", "model.task=ner"),
    "fusion_re": ("model.type=fusion", "model.task=re"),
    "mg_vmoe_typing": ("model.type=mg_vmoe", "model.task=typing"),
    "label_sim_typing": ("model.type=label_sim", "model.task=typing"),
}
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
def test_run_directory_terms_and_model_selection(name):
    out, summary, cfg = get_run(name, *COMBOS[name])
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
    steps = read_jsonl(out / "steps.jsonl")
    assert steps and all("train/loss" in s for s in steps)
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
def test_every_loss_term_logged_per_epoch_with_finite_values(name):
    """Each epoch row of metrics.jsonl holds every term of the model (raw mean and weighted
    contribution), all finite, and the weighted contributions add up to the total loss."""
    import math

    out, _, cfg = get_run(name, *COMBOS[name])
    for r in read_jsonl(out / "metrics.jsonl"):
        for term in EXPECTED_TERMS[cfg.model.type]:
            v = r.get(f"train/{term}")
            assert isinstance(v, float) and math.isfinite(v), (name, term, v)
            if term != "loss":
                w = r.get(f"weighted/{term}")
                assert isinstance(w, float) and math.isfinite(w), (name, term, w)
        weighted = sum(v for k, v in r.items() if k.startswith("weighted/"))
        assert weighted == pytest.approx(r["train/loss"], rel=1e-4)


def test_training_loss_decreases():
    out, _, _ = get_run("mmib_ner", *COMBOS["mmib_ner"])
    rows = read_jsonl(out / "metrics.jsonl")
    task = [r["train/task"] for r in rows]
    loss = [r["train/loss"] for r in rows]
    assert all(b < a for a, b in zip(task, task[1:])), task
    assert loss[-1] < 0.8 * loss[0], loss
    # the MMIB total is task + weighted KL/alignment terms (betas are 1 by default)
    for r in rows:
        parts = r["train/task"] + r["train/kl_text"] + r["train/kl_image"] + r["train/align"]
        assert r["train/loss"] == pytest.approx(parts, rel=1e-4)
        assert r["train/kl_text"] >= 0 and r["train/kl_image"] >= 0


def _recompute(out: Path, tmp_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from mmie.inference.evaluate import evaluate

    pred_file = tmp_path / "preds.jsonl"
    res = evaluate(out / "model", split="test", output=pred_file, progress=False)
    return res, read_jsonl(pred_file)


@pytest.mark.parametrize("name", ["mmib_ner", "fusion_re", "mg_vmoe_typing", "label_sim_typing"])
def test_checkpoint_round_trip_evaluate_matches(name, tmp_path):
    """The reloaded model/ reproduces the test predictions and scores of training."""
    out, _, _ = get_run(name, *COMBOS[name])
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


def test_predictor_reproduces_test_predictions_ner():
    """mmie.load(run/model).predict_batch on raw tokens + image paths == predictions_test."""
    import mmie
    from mmie.data.images import resolve_image
    from mmie.training.data import image_dir_for

    out, _, cfg = get_run("mmib_ner", *COMBOS["mmib_ner"])
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


def test_predictor_reproduces_test_predictions_re():
    import mmie
    from mmie.data.images import resolve_image
    from mmie.training.data import image_dir_for

    out, _, cfg = get_run("fusion_re", *COMBOS["fusion_re"])
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


def test_same_seed_gives_identical_metrics():
    a, _, _ = get_run("text_re", *COMBOS["text_re"])
    b, _, _ = get_run("text_re_again", *COMBOS["text_re"])
    ra, rb = read_jsonl(a / "metrics.jsonl"), read_jsonl(b / "metrics.jsonl")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in rows]
    assert strip(ra) == strip(rb)
    assert read_jsonl(a / "predictions_test.jsonl") == read_jsonl(b / "predictions_test.jsonl")


def test_different_seed_changes_training():
    a, _, _ = get_run("text_re", *COMBOS["text_re"])
    b, _, _ = get_run("text_re_seed1", *COMBOS["text_re"], "seed=1")
    la = [r["train/loss"] for r in read_jsonl(a / "metrics.jsonl")]
    lb = [r["train/loss"] for r in read_jsonl(b / "metrics.jsonl")]
    assert la != lb


@pytest.mark.parametrize("switch,absent,present", [
    ("model.refinement=false", {"kl_text", "kl_image"}, {"task", "align"}),
    ("model.alignment=false", {"align"}, {"task", "kl_text", "kl_image"}),
])
def test_mmib_ablation_switches(switch, absent, present):
    name = "mmib_ner_" + switch.split(".")[1].split("=")[0] + "_off"
    out, _, cfg = get_run(name, "model.type=mmib", "model.task=ner", "trainer.max_epochs=1",
                          switch)
    rows = read_jsonl(out / "metrics.jsonl")
    terms = {k[len("train/"):] for k in rows[0] if k.startswith("train/")}
    assert not (absent & terms), terms
    assert present <= terms
    expect = sum(rows[0][f"train/{t}"] for t in terms - {"loss"})
    assert rows[0]["train/loss"] == pytest.approx(expect, rel=1e-4)
    assert load_config(out / "config.yaml") == cfg


def test_mg_vmoe_zero_shot_re_on_synthetic():
    out, summary, _ = get_run("mg_vmoe_re", "model.type=mg_vmoe", "model.task=re",
                              "trainer.max_epochs=1")
    rows = read_jsonl(out / "metrics.jsonl")
    assert EXPECTED_TERMS["mg_vmoe"] <= {k[6:] for k in rows[0] if k.startswith("train/")}
    assert summary["task"] == "zs_re"
