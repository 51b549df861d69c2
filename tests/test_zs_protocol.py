"""Zero-shot protocol fixes (issue 17, item 7): leave-one-type-out selection on validation
labels only, class-balanced sampling over the seen labels, the label-text option, and
calibrated stacking for the generalised setting."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from mmie.config import load_config
from mmie.data.schema import Example, Span
from mmie.errors import ConfigError
from mmie.tasks.zs_labels import leave_one_type_out
from mmie.tasks.zs import ZeroShotTask, instance_label

TYPES = ["LOC", "MISC", "ORG", "PER"]


def _posts(prefix: str, counts: dict[str, int]) -> list[Example]:
    out = []
    for t, n in counts.items():
        out += [Example(id=f"{prefix}-{t}-{i}", tokens=["some", "name", "here"], image=None,
                        entities=[Span(1, 2, t)]) for i in range(n)]
    return out


SPLITS = {"train": _posts("tr", {"LOC": 5, "MISC": 2, "ORG": 3, "PER": 4}),
          "dev": _posts("dv", {"LOC": 2, "MISC": 2, "ORG": 2, "PER": 2}),
          "test": _posts("te", {"LOC": 3, "MISC": 3, "ORG": 3, "PER": 3})}


def _task(*overrides: str) -> ZeroShotTask:
    cfg = load_config(None, ["model.type=mg_vmoe", "model.task=typing", "data.name=twitter2015",
                             *overrides])
    return ZeroShotTask.from_data("typing", cfg, SPLITS)


def _labels(exs):
    return Counter(instance_label(e) for e in exs)


def test_leave_one_type_out_selects_without_the_held_out_type():
    task = _task("data.held_out_type=ORG")
    parts = task.filter_splits(SPLITS)
    assert set(_labels(parts["train"])) == {"LOC", "MISC", "PER"}
    # model selection: dev posts of the seen types only, never the held-out type's labels
    assert set(_labels(parts["dev"])) == {"LOC", "MISC", "PER"}
    assert _labels(parts["test"]) == {"LOC": 3, "MISC": 3, "ORG": 3, "PER": 3}
    # every type is still a candidate (generalised zero-shot)
    assert set(task.candidates("dev")) == set(task.candidates("test")) == set(TYPES)
    assert task.split.val == () and task.split.unseen == ("ORG",)


def test_leave_one_type_out_with_a_validation_type():
    task = _task("data.held_out_type=ORG", "data.validation_type=MISC")
    parts = task.filter_splits(SPLITS)
    assert set(_labels(parts["train"])) == {"LOC", "PER"}
    assert set(_labels(parts["dev"])) == {"LOC", "MISC", "PER"}
    assert set(_labels(parts["test"])) == {"LOC", "ORG", "PER"}
    assert set(task.candidates("dev")) == set(TYPES)
    s = leave_one_type_out(TYPES, "ORG", "MISC")
    assert s.seen == ("LOC", "PER") and s.val == ("MISC",) and s.unseen == ("ORG",)
    with pytest.raises(ConfigError, match="validation_type"):
        load_config(None, ["model.type=mg_vmoe", "model.task=typing",
                           "data.held_out_type=ORG", "data.validation_type=ORG"])
    with pytest.raises(ConfigError, match="held_out_type"):
        load_config(None, ["model.type=mg_vmoe", "model.task=typing",
                           "data.validation_type=ORG"])


def test_generalized_dev_metrics_count_the_validation_type_as_unseen():
    task = _task("data.held_out_type=ORG", "data.validation_type=MISC")
    dev = task.filter_splits(SPLITS)["dev"]
    preds = [{"label": instance_label(e)} for e in dev]
    m = task.evaluate(dev, preds)
    assert m["seen_accuracy"] == 1.0 and m["unseen_accuracy"] == 1.0


# ---- label text ---------------------------------------------------------------------------
@pytest.mark.parametrize("field,expected", [
    ("name", "person"), ("description", "a named person, real or fictional"),
    ("name+description", "person: a named person, real or fictional")])
def test_label_text_option_twitter(field, expected):
    task = _task("data.held_out_type=ORG", f"data.label_text={field}")
    assert task.label_texts["PER"] == expected


def test_label_text_option_resource_and_default():
    from mmie.tasks.zs_labels import load_label_resource

    res = load_label_resource("wikidiverse_types")
    exs = {"train": [Example(id=f"w{i}", tokens=["a", "b"], entities=[Span(0, 1, t)])
                     for i, t in enumerate(res.labels)]}
    exs["dev"], exs["test"] = exs["train"], exs["train"]
    for field in ("name", "name+description"):
        cfg = load_config(None, ["model.type=mg_vmoe", "model.task=typing",
                                 "data.name=wikidiverse", f"data.label_text={field}"])
        task = ZeroShotTask.from_data("typing", cfg, exs)
        assert task.label_texts["People"] == res.text("People", field)
    assert load_config(None, []).data.label_text == "name+description"
    with pytest.raises(ConfigError, match="label_text"):
        load_config(None, ["data.label_text=title"])


# ---- class-balanced sampling --------------------------------------------------------------
def test_class_balanced_sampler_balances_seen_labels_and_is_resumable():
    from mmie.tasks.zs_labels import class_balanced_weights
    from mmie.training.data import ResumableSampler

    labels = ["A"] * 90 + ["B"] * 10
    w = class_balanced_weights(labels)
    draws = []
    for epoch in range(20):
        s = ResumableSampler(100, True, seed=3, weights=w)
        s.set_epoch(epoch)
        order = list(s)
        assert len(order) == 100
        draws += order
    share_b = sum(labels[i] == "B" for i in draws) / len(draws)
    assert share_b == pytest.approx(0.5, abs=0.05)          # unweighted: 0.10
    # a function of (seed, epoch) only, and a mid-epoch resume continues the same order
    a = ResumableSampler(100, True, seed=3, weights=w)
    b = ResumableSampler(100, True, seed=3, weights=w)
    a.set_epoch(4)
    b.set_epoch(4)
    b.skip = 30
    full = list(a)
    assert list(b) == full[30:]
    c = ResumableSampler(100, True, seed=3)
    c.set_epoch(4)
    assert sorted(list(c)) == list(range(100))               # no weights: a permutation


def test_class_balanced_default_on_for_zero_shot_only():
    task = _task("data.held_out_type=ORG")
    w = task.sampling_weights(task.filter_splits(SPLITS)["train"])
    assert sorted(set(w)) == pytest.approx([1 / 5, 1 / 4, 1 / 2])
    assert load_config(None, ["model.type=mg_vmoe", "model.task=typing"]).data.class_balanced is None
    with pytest.raises(ConfigError, match="class_balanced"):
        load_config(None, ["model.type=mmib", "data.class_balanced=true"])


# ---- calibrated stacking ------------------------------------------------------------------
def test_choose_calibration_by_hand():
    from mmie.tasks.zs import calibrated_predictions, choose_calibration

    seen = {"A", "B"}
    # d = best seen - best other: 2.0, 1.0, 0.5 (seen gold), -0.5, 1.5 (other gold)
    gold = ["A", "B", "A", "U", "U"]
    logits = [{"A": 3.0, "B": 0.0, "U": 1.0},
              {"A": 0.0, "B": 2.0, "U": 1.0},
              {"A": 1.0, "B": 0.5, "U": 0.5},
              {"A": 0.0, "B": 0.5, "U": 1.0},
              {"A": 2.0, "B": 0.0, "U": 0.5}]
    found = choose_calibration(gold, logits, seen)
    # gamma = 0: seen acc 3/3, other acc 1/2 -> H = 2/3; a gamma in (1.5, 2.0) gives
    # seen 1/3, other 1 -> H = 0.5; (1.0, 1.5): seen 1/3, other 1/2 ... so gamma stays 0.
    assert found["gamma"] == 0.0 and found["h"] == pytest.approx(2 / 3)
    # now d = 2.0, 1.6, -0.5 (seen gold), -0.5, 1.5 (other gold): gamma = 0 gives seen 2/3,
    # other 1/2 (H = 0.571); a gamma in (1.5, 1.6) keeps d = 2.0 and 1.6 seen and turns
    # d = 1.5 to the other label: seen 2/3, other 2/2 -> H = 0.8
    logits[1] = {"A": 0.0, "B": 2.6, "U": 1.0}
    logits[2] = {"A": 0.5, "B": 0.4, "U": 1.0}   # d = -0.5: now wrong at gamma 0
    found = choose_calibration(gold, logits, seen)
    assert 1.5 < found["gamma"] < 1.6
    assert found["h"] == pytest.approx(0.8)
    preds = calibrated_predictions(logits, seen, found["gamma"])
    assert preds == ["A", "B", "U", "U", "U"]
    assert found["h_at_0"] < found["h"]
    with pytest.raises(ConfigError, match="validation_type"):
        choose_calibration(["A"], [{"A": 1.0, "U": 0.0}], seen)


def test_calibration_offset_applied_at_evaluation_and_saved():
    from mmie.tasks.zs import ZeroShotTask as Z

    task = _task("data.held_out_type=ORG", "data.validation_type=MISC")
    assert task.calibration == 0.0
    task.calibration = 1.25
    off = task.score_offset(["LOC", "MISC", "ORG", "PER"])
    assert off.tolist() == [1.25, 0.0, 0.0, 1.25]
    again = Z.from_dict(json.loads(json.dumps(task.to_dict())))
    assert again.calibration == 1.25
    with pytest.raises(ConfigError, match="calibrated_stacking"):
        load_config(None, ["model.type=mg_vmoe", "model.task=typing",
                           "data.held_out_type=ORG", "model.calibrated_stacking=true"])


def test_mg_vmoe_predict_subtracts_the_offset():
    from mmie.models.factory import build_model
    from mmie.training.train import build_encoders

    cfg = load_config(None, ["model.type=mg_vmoe", "model.task=typing",
                             "model.text_encoder=random:tiny-bert",
                             "model.vision_encoder=random:tiny-resnet"])
    task = _task("data.held_out_type=ORG", "data.validation_type=MISC")
    torch.manual_seed(0)
    text, vision = build_encoders(cfg, True)
    model = build_model(cfg.model, task, text, vision).eval()
    exs = task.filter_splits(SPLITS)["test"][:3]
    batch = task.collate(exs, text, 32, phase="test")
    assert "score_offset" not in batch  # no calibration chosen: nothing applied
    batch["image_global"] = torch.randn(3, vision.out_dim)
    batch["image_regions"] = torch.randn(3, 9, vision.out_dim)
    batch["image_present"] = torch.ones(3, dtype=torch.bool)
    raw = model.predict(batch)
    task.calibration = 0.7
    batch["score_offset"] = task.collate(exs, text, 32, phase="test")["score_offset"]
    cal = model.predict(batch)
    seen = set(task.split.seen)
    for r, c in zip(raw, cal):
        assert c["logits"] == pytest.approx(r["logits"])          # raw scores unchanged
        z = torch.tensor([r["logits"][k] - (0.7 if k in seen else 0.0) for k in batch["candidates"]])
        p = z.softmax(0)
        assert [c["scores"][k] for k in batch["candidates"]] == pytest.approx(p.tolist(), rel=1e-5)
    # the training batch never carries an offset
    assert "score_offset" not in task.collate(exs, text, 32, phase="train", with_labels=False)


def test_calibrated_stacking_end_to_end(tmp_path):
    """Tiny generalised leave-one-type-out run on the synthetic set: the constant is chosen on
    the validation type, stored with the model, and the reloaded model reproduces the
    calibrated test predictions."""
    from test_training_e2e import _recompute, get_run, read_jsonl

    out, summary, _ = get_run("mg_vmoe_loto_cal", "model.type=mg_vmoe", "model.task=typing",
                              "data.held_out_type=beacon", "data.validation_type=anchor",
                              "model.calibrated_stacking=true", "trainer.max_epochs=1")
    dev = json.loads((out / "eval_dev.json").read_text())
    gamma = dev["calibration"]["gamma"]
    saved = json.loads((out / "model" / "config.json").read_text())["task"]
    assert saved["calibration"] == gamma
    assert saved["split"]["val"] == ["anchor"] and saved["split"]["unseen"] == ["beacon"]
    assert json.loads((out / "eval_test.json").read_text())["calibration_gamma"] == gamma
    # the harmonic mean on validation is the one the chosen constant reaches
    assert dev["harmonic_mean"] == pytest.approx(dev["calibration"]["h"], abs=1e-9)
    assert dev["calibration"]["h"] >= dev["calibration"]["h_at_0"]
    res, recs = _recompute(out, tmp_path)
    preds = read_jsonl(out / "predictions_test.jsonl")
    assert [r["pred"] for r in recs] == [p["pred"] for p in preds]
    assert {p["gold"] for p in preds} <= {"beacon"} | set(saved["split"]["seen"])
