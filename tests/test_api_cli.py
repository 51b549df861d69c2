"""Python API (mmie.load / predict) and the ``mmie`` command on tiny trained models, plus the
data statistics of the real Twitter-2015 files (``data`` marker)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import mmie
import mmie.cli
from helpers import data_root
from test_training_e2e import COMBOS, get_run, read_jsonl



def _ner():
    return get_run("mmib_ner", *COMBOS["mmib_ner"])


def _re():
    return get_run("fusion_re", *COMBOS["fusion_re"])


def _zs():
    return get_run("mg_vmoe_typing", *COMBOS["mg_vmoe_typing"])


def _an_image(cfg) -> str:
    from mmie.training.data import image_dir_for

    d = Path(image_dir_for(cfg, "test"))
    return str(sorted(p for p in d.iterdir() if p.suffix in (".jpg", ".png"))[0])


TEXT = "RT @bob : Jordan met Obama in Chicago , wow 😍 #NBA"


SYNTHETIC_NER_LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER",
                        "I-PER"]


def _force(pred, label: str):
    """Make the model's head answer ``label`` whatever the input (zero weights, one large
    bias): the expected output is then known exactly."""
    import torch

    with torch.no_grad():
        pred.model.head.proj.weight.zero_()
        pred.model.head.proj.bias.zero_()
        # far above every learned transition score (float32 marginals: 1 to about 1e-4)
        pred.model.head.proj.bias[pred.task.labels.index(label)] = 40.0
    return pred


def test_ner_predict_new_post_with_and_without_image():
    from mmie.data.tokenize import split_words

    out, _, cfg = _ner()
    pred = mmie.load(out / "model")
    info = pred.info()
    assert (info["task"], info["model"], info["zero_shot"]) == ("ner", "mmib", False)
    assert info["labels"] == SYNTHETIC_NER_LABELS
    img = _an_image(cfg)
    # the same picture as a path or as bytes: the same prediction, to the last digit
    assert pred.predict(text=TEXT, image=img) == pred.predict(text=TEXT,
                                                              image=Path(img).read_bytes())
    # every word tagged B-PER: each word is one PER entity with its own character offsets
    _force(pred, "B-PER")
    want = [{"text": w, "type": "PER", "start": s, "end": e,
             "score": pytest.approx(1.0, abs=1e-4)} for w, s, e in split_words(TEXT)]
    for image in (img, Path(img).read_bytes(), None):
        assert pred.predict(text=TEXT, image=image) == want
    # the loaded directory of a run also works (run dir -> run/model)
    assert mmie.load(out).info()["labels"] == info["labels"]


def test_typed_results_render_to_the_api_json():
    from mmie.inference.outputs import Entity, to_json, to_jsonl

    out, _, _ = _ner()
    pred = _force(mmie.load(out / "model"), "B-PER")
    typed = pred.run([{"text": "Obama visits Paris"}])[0]
    one = pytest.approx(1.0, abs=1e-4)
    assert typed == [Entity("Obama", "PER", 0, 5, one), Entity("visits", "PER", 6, 12, one),
                     Entity("Paris", "PER", 13, 18, one)]
    assert to_json(typed) == pred.predict(text="Obama visits Paris")
    assert json.loads(to_jsonl(typed)) == to_json(typed)


def test_ner_char_offsets_with_odd_spacing_and_emoji(monkeypatch):
    """Token spans map back to character offsets of the *input* string (double spaces,
    tabs, emoji), whatever the model predicts: decode is pinned to two known spans."""
    from mmie.data.schema import Span

    out, _, _ = _ner()
    pred = mmie.load(out / "model")
    text = "😍  RT @bob :\tJordan   Smith met  Obama 🇺🇸 in Chicago"

    def fake_decode(examples, raw):
        ex = examples[0]
        i = ex.tokens.index("Jordan")
        j = ex.tokens.index("Chicago")
        assert ex.tokens[i + 1] == "Smith"
        return [{"entities": [Span(i, i + 2, "PER", score=0.9), Span(j, j + 1, "LOC", 0.8)],
                 "tags": []}]

    monkeypatch.setattr(pred.task, "decode", fake_decode)
    res = pred.predict(text=text)
    assert [(e["text"], e["type"]) for e in res] == [("Jordan   Smith", "PER"),
                                                    ("Chicago", "LOC")]
    for e in res:
        assert text[e["start"]:e["end"]] == e["text"]


def _test_records(out, cfg, n=6):
    """The run's own test predictions (its training-time test loop, cached image features)
    with each post as text, its picture and its word offsets."""
    from mmie.data.images import resolve_image
    from mmie.data.tokenize import join_words
    from mmie.training.data import image_dir_for

    img_dir = image_dir_for(cfg, "test")
    rows = []
    for rec in read_jsonl(out / "predictions_test.jsonl")[:n]:
        text, offs = join_words(rec["tokens"])
        rows.append((rec, text, offs, str(resolve_image(img_dir, rec["image"]))))
    return rows


def _char(offs, span):
    return (offs[span["start"]][0], offs[span["end"] - 1][1])


def test_re_predict_with_head_tail_offsets():
    out, _, cfg = _re()
    pred = mmie.load(out / "model")
    # new text, given as characters: the same answer as the training run's test loop gave
    seen = set()
    for rec, text, offs, image in _test_records(out, cfg):
        head, tail = _char(offs, rec["head"]), _char(offs, rec["tail"])
        res = pred.predict(text=text, image=image, head=head, tail=tail)
        assert res["relation"] == rec["pred"] and res["head"] == list(head)
        assert res["tail"] == list(tail)
        assert res["score"] == pytest.approx(rec["score"], abs=1e-5)
        seen.add(rec["pred"])
    assert len(seen) >= 2  # not one label for everything
    text = "Jordan moved to Chicago last year"
    head, tail = (0, 6), (16, 23)
    assert text[slice(*head)] == "Jordan" and text[slice(*tail)] == "Chicago"
    _force(pred, "/per/loc/place_of_residence")
    want = {"relation": "/per/loc/place_of_residence", "score": pytest.approx(1.0, abs=1e-6),
            "head": [0, 6], "tail": [16, 23]}
    assert pred.predict(text=text, image=_an_image(cfg), head=head, tail=tail) == want
    assert pred.predict(text=text, head=head, tail=tail) == want  # without a picture


def test_zero_shot_candidate_labels_at_call_time():
    out, _, cfg = _zs()
    pred = mmie.load(out / "model")
    assert pred.zero_shot
    # default candidates (the unseen test labels): the training run's test predictions
    for rec, text, offs, image in _test_records(out, cfg):
        res = pred.predict(text=text, image=image, head=_char(offs, rec["mentions"][0]))
        assert res["type"] == rec["pred"]
        assert res["score"] == pytest.approx(rec["score"], abs=1e-5)
        assert set(res["scores"]) == set(pred.task.candidates("test"))
    unseen = ["volcano eruption", "teapot", "submarine captain"]
    assert not set(unseen) & set(pred.labels)
    text = "Look at Etna tonight"
    res = pred.predict(text=text, head=(8, 12), candidate_labels=unseen, image=_an_image(cfg))
    assert set(res["scores"]) == set(unseen)
    assert res["type"] == max(res["scores"], key=res["scores"].get)
    assert res["score"] == res["scores"][res["type"]]
    assert sum(res["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    # the same labels in another order: the same scores (labels are inputs, not slots)
    again = pred.predict(text=text, head=(8, 12), candidate_labels=unseen[::-1],
                         image=_an_image(cfg))
    assert again["scores"] == pytest.approx(res["scores"], abs=1e-5)


def test_label_similarity_baseline_takes_unseen_labels_and_ignores_pictures():
    """The text-only zero-shot baseline scores labels given at call time; a picture, if one
    is passed, does not change its answer (it has no image path)."""
    out, _, cfg = get_run("label_sim_typing", *COMBOS["label_sim_typing"])
    pred = mmie.load(out / "model")
    assert pred.zero_shot and pred.cfg.model.type == "label_sim"
    unseen = ["volcano eruption", "teapot", "submarine captain"]
    res = pred.predict(text="Look at Etna tonight", head=(8, 12), candidate_labels=unseen)
    assert res["type"] in unseen and set(res["scores"]) == set(unseen)
    assert sum(res["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    with_img = pred.predict(text="Look at Etna tonight", head=(8, 12), candidate_labels=unseen,
                            image=_an_image(cfg))
    assert with_img["scores"] == pytest.approx(res["scores"], abs=1e-6)


def test_predict_batch_equals_single_predictions():
    out, _, cfg = _ner()
    pred = mmie.load(out / "model")
    # lower O so that the barely trained model tags entities: batch and single must agree on
    # every field, scores included
    import torch

    with torch.no_grad():
        pred.model.head.proj.bias[pred.task.labels.index("O")] -= 3.0
    img = _an_image(cfg)
    items = [{"text": TEXT, "image": img}, {"text": "Obama visits Paris"},
             {"tokens": ["Lincoln", "Park", "rocks"], "id": "x"}]
    batch = pred.predict_batch(items)
    single = [pred.predict(text=TEXT, image=img), pred.predict(text="Obama visits Paris"),
              pred.predict(tokens=["Lincoln", "Park", "rocks"])]
    assert sum(len(r) for r in single) >= 3
    assert [[{**e, "score": pytest.approx(e["score"], abs=1e-5)} for e in r] for r in single] \
        == batch


def test_cli_predict_text_and_image(capsys):
    out, _, cfg = _ner()
    img = _an_image(cfg)
    assert mmie.cli.main(["predict", str(out / "model"), "--text", TEXT, "--image", img]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res == mmie.load(out / "model").predict(text=TEXT, image=img)


def test_cli_predict_re_offsets(capsys):
    out, _, _ = _re()
    rc = mmie.cli.main(["predict", str(out / "model"), "--text", "Jordan moved to Chicago",
                        "--head", "0,6", "--tail", "16,23"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["head"] == [0, 6] and res["tail"] == [16, 23]


def test_cli_predict_jsonl_in_out(tmp_path, capsys):
    out, _, cfg = _ner()
    img = _an_image(cfg)
    inp = tmp_path / "in.jsonl"
    rows = [{"text": TEXT, "image": img}, {"text": "Obama visits Paris"}]
    inp.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    dst = tmp_path / "out.jsonl"
    assert mmie.cli.main(["predict", str(out / "model"), "--input", str(inp),
                          "--output", str(dst)]) == 0
    got = read_jsonl(dst)
    assert len(got) == 2
    assert got == mmie.load(out / "model").predict_batch(rows)
    assert not (tmp_path / "out.jsonl.tmp").exists()
    assert "wrote 2 results" in capsys.readouterr().err


def test_cli_evaluate_output_recomputable_ner(tmp_path, capsys):
    from mmie.metrics import entity_scores

    out, _, _ = _ner()
    dst = tmp_path / "ev.jsonl"
    assert mmie.cli.main(["evaluate", str(out / "model"), "--split", "test", "--output",
                          str(dst), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    recs = read_jsonl(dst)
    assert len(recs) == res["n"] > 0
    for r in recs:
        assert {"id", "tokens", "gold", "pred", "gold_tags", "pred_tags"} <= set(r)
        assert len(r["gold_tags"]) == len(r["pred_tags"]) == len(r["tokens"])
    again = entity_scores([r["gold_tags"] for r in recs], [r["pred_tags"] for r in recs])
    for k in ("precision", "recall", "f1", "strict_f1"):
        assert again[k] == pytest.approx(res[k], abs=1e-12), k
    # gold entity count in the file = the metric's support
    assert sum(len(r["gold"]) for r in recs) == res["strict_support"]


def test_cli_evaluate_output_recomputable_re(tmp_path, capsys):
    from mmie.metrics import relation_scores

    out, _, _ = _re()
    dst = tmp_path / "ev.jsonl"
    assert mmie.cli.main(["evaluate", str(out / "model"), "--output", str(dst), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    recs = read_jsonl(dst)
    again = relation_scores([r["gold"] for r in recs], [r["pred"] for r in recs],
                            none_label="None")
    for k in ("precision", "recall", "f1", "accuracy"):
        assert again[k] == pytest.approx(res[k], abs=1e-12), k
    acc = sum(r["gold"] == r["pred"] for r in recs) / len(recs)
    assert res["accuracy"] == pytest.approx(acc)


@pytest.mark.data
def test_data_stats_twitter2015_counts(capsys):
    d = str(data_root())
    assert Path(d, "twitter2015").is_dir(), f"data missing: {d}/twitter2015 (set MMIE_DATA)"
    assert mmie.cli.main(["data", "stats", "twitter2015", "--data-dir", d, "--json"]) == 0
    st = json.loads(capsys.readouterr().out)["splits"]
    got = {s: (st[s]["posts"], st[s]["entities"], st[s]["i_opened_spans"])
           for s in ("train", "valid", "test")}
    assert got == {"train": (4000, 6352, 186), "valid": (1000, 1594, 53),
                   "test": (3257, 5207, 135)}
    for s in st.values():
        assert s["entities"] == s["entities_b_only"] + s["i_opened_spans"]
        assert sum(v["conll"] for v in s["entities_by_label"].values()) == s["entities"]


COMMANDS = [["data"], ["data", "stats"], ["data", "validate"], ["data", "download"],
            ["data", "synthetic"], ["train"], ["evaluate"], ["predict"], ["extract"], ["serve"],
            ["plot"], ["demo"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: "-".join(c))
def test_help_has_example(cmd, capsys):
    with pytest.raises(SystemExit) as ei:
        mmie.cli.main([*cmd, "--help"])
    assert ei.value.code == 0
    text = capsys.readouterr().out
    assert "Example" in text and "mmie " + cmd[0] in text


def test_version_subprocess():
    exe = Path(sys.executable).with_name("mmie")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mmie"]
    r = subprocess.run([*cmd, "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    assert r.stdout.strip() == f"mmie {mmie.__version__}"


def test_no_command_prints_help(capsys):
    assert mmie.cli.main([]) == 2
    assert "Examples" in capsys.readouterr().out


def test_serve_loads_the_ner_model_once(monkeypatch):
    """``serve NER --re RE`` loads each model directory once: the pipeline reuses the loaded
    NER predictor."""
    import uvicorn

    import mmie.inference.pipeline as pipeline_module
    from mmie.serve.app import serve

    ner_out, re_out = _ner()[0], _re()[0]
    loads: list[str] = []
    real_load = mmie.load

    def counting(path, *a, **k):
        loads.append(Path(path).name if Path(path).name != "model" else Path(path).parent.name)
        return real_load(path, *a, **k)

    monkeypatch.setattr(mmie, "load", counting)
    monkeypatch.setattr(pipeline_module, "load", counting)
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app))
    serve(ner_out / "model", port=0, re_model_dir=re_out / "model")
    assert sorted(loads) == sorted([ner_out.name, re_out.name])
    holder = seen["app"].state.mmie
    assert holder.pipeline.ner is holder.predictor


# --------------------------------------------------------------------------- a quiet demo
DEMO_TINY = ["--epochs", "1", "--set", "model.text_encoder=random:tiny-bert", "--set",
             "model.vision_encoder=random:tiny-resnet", "--set", "data.synthetic_size=60",
             "--set", "trainer.batch_size=16"]
DEMO_NOISE = ["LeafSpec", "module(s) in eval mode", "litlogger", "litmodels", "Tip:",
              "GPU available", "TPU available", "Loading `train_dataloader`", "Trainer.fit",
              "new embeddings will be initialized", "Loading weights", "Validation", "Testing",
              "INFO", "Warning", "Ca n't"]


def test_demo_output_is_quiet(tmp_path, capfd, tiny_cache):
    import warnings

    CACHE = tiny_cache

    out = tmp_path / "demo"
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert mmie.cli.main(["demo", "--output-dir", str(out), *DEMO_TINY, "--set",
                              f"cache_dir={CACHE}"]) == 0
    r = capfd.readouterr()
    both = r.out + r.err + "\n".join(str(w.message) for w in caught)
    for noise in DEMO_NOISE:
        assert noise not in both, (noise, both)
    # one line per epoch with the dev score, the summary table, the post as written
    lines = [l.split("\r")[-1].strip() for l in r.err.splitlines() if "train loss" in l]
    assert len(lines) == 1 and lines[0].startswith("epoch 1/1  train loss ")
    assert "dev/f1 " in lines[0]
    summary = json.loads((out / "summary.json").read_text())
    assert (f"dev    {summary['dev']['precision']:.4f}" in r.out and
            f"test   {summary['test']['precision']:.4f}" in r.out)
    assert "split  precision  recall  f1" in r.out
    assert "  text:  Can't stop thinking about Lincoln Park 😍" in r.out
    printed = json.loads(r.out[r.out.index("image:"):].split("\n", 1)[1])
    assert printed == mmie.load(out / "model").predict(
        text="Can't stop thinking about Lincoln Park 😍",
        image=str(CACHE / "synthetic-n60-seed0" / "images" / "ner_test_00000.png"))


def test_demo_verbose_brings_the_detail_back(tmp_path, capsys, caplog, tiny_cache):
    CACHE = tiny_cache

    out = tmp_path / "demo"
    with caplog.at_level("INFO"):
        assert mmie.cli.main(["-v", "demo", "--output-dir", str(out), *DEMO_TINY, "--set",
                              f"cache_dir={CACHE}"]) == 0
    printed = capsys.readouterr().out
    assert '"selected_on": "dev/f1"' in printed  # the full summary JSON
    assert any("GPU available" in r.getMessage() for r in caplog.records)


def test_loading_the_embedded_text_encoder_prints_nothing(capfd):
    from mmie.encoders.text import TextEncoder

    capfd.readouterr()
    TextEncoder("minilm")
    err = capfd.readouterr().err
    assert "new embeddings" not in err and "Loading weights" not in err, err


def test_join_words_restores_the_post_as_written():
    from mmie.data.tokenize import join_words, split_words

    for post in ["Can't stop thinking about Lincoln Park 😍", "Big day for Paris!",
                 "RT @newsdesk: Jackson is trending", "Jaguar vs Rio Grande... who wins?"]:
        words = [w for w, _, _ in split_words(post)]
        text, offs = join_words(words)
        assert text == post and [text[s:e] for s, e in offs] == words
    # no natural form that splits back into the same words: single spaces
    assert join_words(["$", "5"]) == ("$ 5", [(0, 1), (2, 3)])


def test_train_data_dir_flag_sets_the_data_root(monkeypatch, tmp_path):
    """README: ``--data-dir`` works on ``mmie train`` (config key data.data_dir)."""
    import mmie.training.train as train_module

    seen = {}
    monkeypatch.setattr(train_module, "train", lambda cfg, resume=False: seen.setdefault(
        "cfg", cfg) and {})
    assert mmie.cli.main(["train", "--data-dir", str(tmp_path), "--output-dir",
                          str(tmp_path / "run")]) == 0
    assert seen["cfg"].data.data_dir == str(tmp_path)
