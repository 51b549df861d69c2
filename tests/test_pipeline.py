"""The extraction pipeline (raw post -> entities + relations), its CLI / service entry points
and the end-to-end MNRE benchmark's grouping and scoring."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mmie
from mmie.data.schema import Span
from mmie.errors import ConfigError, DataError
from mmie.inference.pipeline import Pipeline, label_fits, label_signature, pipeline

from helpers import data_root

REPO = Path(__file__).resolve().parents[1]
TINY = {"data.name": "synthetic", "data.synthetic_size": "60", "data.max_length": "48",
        "model.type": "mmib", "model.text_encoder": "random:tiny-bert",
        "model.vision_encoder": "random:tiny-resnet", "trainer.batch_size": "8",
        "trainer.progress": "false", "trainer.log_every_n_steps": "2"}

# words the fake NER (below) tags, with their types
FAKE_TYPES = {"Alice": "PER", "Bob": "PER", "Paris": "LOC", "Rome": "LOC", "Acme": "ORG"}


@pytest.fixture(scope="session")
def models(tiny_runs):
    """Tiny NER and RE models trained on the whole tiny synthetic set (session runs)."""
    full = ["model.type=mmib", "data.limit_train=null", "trainer.patience=5"]
    ner = tiny_runs.get("pipe_ner", *full, "model.task=ner", "trainer.max_epochs=8",
                        "trainer.lr=3e-3")
    re_ = tiny_runs.get("pipe_re", *full, "model.task=re", "trainer.max_epochs=2")
    return {"ner": ner.out / "model", "re": re_.out / "model", "root": tiny_runs.root,
            "ner_run": ner.out}


@pytest.fixture(scope="session")
def pipe(models) -> Pipeline:
    return pipeline(ner=models["ner"], re=models["re"], type_constraints=False)


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))


def _fake_decode(examples, outputs):
    """NER output fixed by FAKE_TYPES: one single-word span per listed word."""
    preds = []
    for ex in examples:
        ents = [Span(i, i + 1, FAKE_TYPES[w], score=0.9) for i, w in enumerate(ex.tokens)
                if w in FAKE_TYPES]
        preds.append({"tags": [], "entities": ents})
    return preds


@pytest.fixture
def fake_ner(pipe, monkeypatch):
    monkeypatch.setattr(pipe.ner.task, "decode", _fake_decode)
    return pipe


def _synthetic_posts(models, n=12):
    rows = [json.loads(l) for l in
            (models["ner_run"] / "predictions_test.jsonl").read_text().splitlines()]
    return [" ".join(r["tokens"]) for r in rows[:n]]


# ---- entities from the real NER model ------------------------------------------------------

def test_extract_entities_match_ner_predictor_with_and_without_image(pipe, models):
    texts = _synthetic_posts(models, 6)
    n_ents = 0
    for k, text in enumerate(texts):
        for image in (None, _image(k)):
            res = pipe.extract(text, image=image)
            assert set(res) == {"entities", "relations"}
            # the pipeline's cached-feature path gives exactly the predictor's pixel path
            assert res["entities"] == pipe.ner.predict(text=text, image=image)
            for e in res["entities"]:
                assert text[e["start"]:e["end"]] == e["text"]
                assert set(e) == {"text", "type", "start", "end", "score"}
            n_ents += len(res["entities"])
            for r in res["relations"]:
                assert r["head"] != r["tail"]
                assert r["label"] != "None"
    assert n_ents > 0, "the tiny NER model found no entity at all"



def test_offsets_on_messy_text(fake_ner):
    text = "RT @x:  Alice   moved to  Paris!!! 😍 #Acme"
    res = fake_ner.extract(text)
    assert [(e["text"], e["type"]) for e in res["entities"]] == [("Alice", "PER"),
                                                                  ("Paris", "LOC")]
    for e in res["entities"]:
        assert text[e["start"]:e["end"]] == e["text"]


# ---- batching: RE forward passes and vision calls ------------------------------------------

def test_re_passes_per_chunk_and_one_vision_call_per_post(pipe, fake_ner, monkeypatch):
    p = Pipeline(pipe.ner, pipe.re, type_constraints=False, pair_batch_size=8)
    p.extract("Alice met Bob")  # encodes the placeholder picture once per model (cached)
    re_calls, vision_rows = [], {"ner": [], "re": []}
    real_predict = p.re.model.predict
    monkeypatch.setattr(p.re.model, "predict",
                        lambda b: re_calls.append(b["input_ids"].shape[0]) or real_predict(b))
    for name, pred in (("ner", p.ner), ("re", p.re)):
        vis = pred.model.vision
        real_fwd = vis.forward
        monkeypatch.setattr(vis, "forward", lambda x, _f=real_fwd, _n=name:
                            vision_rows[_n].append(x.shape[0]) or _f(x))
    items = [{"text": "Alice met Bob in Paris", "image": _image(1)},
             {"text": "Bob flew to Rome with Alice", "image": None},
             {"text": "Alice , Bob and Acme in Rome", "image": _image(2)},
             {"text": "nobody here", "image": _image(3)},
             {"text": "Acme hires Bob", "image": None}]
    out = p.extract_batch(items)
    n_pairs = 3 * 2 + 3 * 2 + 4 * 3 + 0 + 2 * 1  # ordered pairs of 3, 3, 4, 0, 2 mentions
    assert sum(re_calls) == n_pairs == 26
    assert len(re_calls) == math.ceil(n_pairs / 8) == 4
    # each picture through each model's vision encoder once, in one call per chunk
    assert vision_rows["ner"] == [3] and vision_rows["re"] == [3]
    assert [len(o["entities"]) for o in out] == [3, 3, 4, 0, 2]


# ---- type constraints ----------------------------------------------------------------------
def test_label_signatures():
    assert label_signature("/per/loc/place_of_residence") == ("per", "loc")
    assert label_signature("None") is None and label_signature("founded_by") is None
    assert label_fits("/per/loc/place_of_residence", "PER", "LOC")
    assert not label_fits("/per/loc/place_of_residence", "LOC", "PER")
    assert label_fits("/misc/loc/held_on", "OTHER", "LOC")
    assert label_fits("/misc/loc/held_on", "MISC", "LOC")
    assert label_fits("/per/org/member_of", "PER", "ENTITY")  # unknown type: unrestricted
    assert label_fits("founded_by", "LOC", "LOC")  # no signature: always allowed



def test_type_constraints_filter_pairs(pipe, fake_ner, monkeypatch):
    labels = pipe.re.labels
    assert set(labels) >= {"None", "/per/per/couple", "/per/loc/place_of_residence",
                           "/per/org/member_of"}
    # a fixed RE model: couple > place_of_residence > None > everything else
    rank = {"/per/per/couple": 0.5, "/per/loc/place_of_residence": 0.3, "None": 0.15}
    probs = [rank.get(l, 0.05 / (len(labels) - 3)) for l in labels]
    seen = []

    def fixed(batch):
        seen.append(batch["input_ids"].shape[0])
        return [{"label": 0, "score": 0.0, "probs": probs}] * batch["input_ids"].shape[0]

    monkeypatch.setattr(pipe.re.model, "predict", fixed)
    text = "Alice lives in Paris and works at Acme"  # PER, LOC, ORG
    on = Pipeline(pipe.ner, pipe.re, type_constraints=True).extract(text)
    # only (PER, LOC) and (PER, ORG) fit a label; the 4 other ordered pairs never reach RE
    assert seen == [2]
    # (PER, LOC): couple does not fit, place_of_residence does; (PER, ORG): only None and
    # member_of fit and None wins
    assert on["relations"] == [{"head": 0, "tail": 1, "label": "/per/loc/place_of_residence",
                                "score": 0.3}]
    seen.clear()
    off = Pipeline(pipe.ner, pipe.re, type_constraints=False).extract(text)
    assert seen == [6]
    assert [(r["head"], r["tail"], r["label"]) for r in off["relations"]] == [
        (h, t, "/per/per/couple") for h in range(3) for t in range(3) if h != t]


# ---- equality with the RE predictor run pair by pair ---------------------------------------

def test_relations_equal_predictor_pair_by_pair(fake_ner):
    items = [{"text": "Alice met Bob in Paris", "image": _image(5)},
             {"text": "Acme hires Bob in Rome", "image": None}]
    out = fake_ner.extract_batch(items)
    n_checked = 0
    for item, res in zip(items, out):
        ents = res["entities"]
        got = {(r["head"], r["tail"]): r for r in res["relations"]}
        for i, h in enumerate(ents):
            for j, t in enumerate(ents):
                if i == j:
                    continue
                ref = fake_ner.re.predict(text=item["text"], image=item["image"],
                                          head=(h["start"], h["end"]),
                                          tail=(t["start"], t["end"]))
                n_checked += 1
                if ref["relation"] == "None":
                    assert (i, j) not in got
                else:
                    assert got[(i, j)]["label"] == ref["relation"]
                    assert got[(i, j)]["score"] == pytest.approx(ref["score"], abs=1e-4)
    assert n_checked == 6 + 6


# ---- construction and errors ---------------------------------------------------------------

def test_one_directory_form_and_errors(models, tmp_path):
    both = tmp_path / "both"
    both.mkdir()
    (both / "ner").symlink_to(models["ner"], target_is_directory=True)
    (both / "re").symlink_to(models["re"], target_is_directory=True)
    p = mmie.pipeline(ner=both)
    assert p.ner.task.name == "ner" and p.re.task.name == "re" and p.type_constraints
    with pytest.raises(ConfigError, match="'ner' and 're'"):
        pipeline(ner=models["ner"])
    with pytest.raises(ConfigError, match="not an NER model"):
        Pipeline(p.re, p.re)
    with pytest.raises(DataError, match="zero-shot"):
        p.extract("Alice met Bob", candidate_labels=["/per/per/couple"])
    with pytest.raises(DataError, match="empty"):
        p.extract("   ")


# ---- CLI and service -----------------------------------------------------------------------

def test_cli_extract(models, pipe, tmp_path, capsys):
    from mmie.cli import main

    p = Pipeline(pipe.ner, pipe.re, type_constraints=True)
    text = _synthetic_posts(models, 1)[0]
    assert main(["extract", "--ner", str(models["ner"]), "--re", str(models["re"]),
                 "--text", text]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(p.extract(text)))
    img = tmp_path / "post.png"
    _image(7).save(img)
    items = [{"text": t} for t in _synthetic_posts(models, 3)] + [{"text": text, "image": str(img)}]
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(i) + "\n" for i in items))
    assert main(["extract", "--ner", str(models["ner"]), "--re", str(models["re"]),
                 "--input", str(src), "--output", str(dst)]) == 0
    got = [json.loads(l) for l in dst.read_text().splitlines()]
    assert got == json.loads(json.dumps(p.extract_batch(items)))



def test_service_extract(models, pipe):
    from fastapi.testclient import TestClient

    from mmie.serve.app import create_app

    client = TestClient(create_app(pipe.ner, pipeline=pipe))
    text = _synthetic_posts(models, 1)[0]
    r = client.post("/extract", json={"text": text})
    assert r.status_code == 200, r.text
    assert r.json() == json.loads(json.dumps(pipe.extract(text)))
    buf = io.BytesIO()
    _image(9).save(buf, format="PNG")
    r = client.post("/extract", json={"text": text,
                                      "image": base64.b64encode(buf.getvalue()).decode()})
    assert r.status_code == 200, r.text
    assert r.json() == json.loads(json.dumps(pipe.extract(text, image=_image(9))))


# ---- benchmark: grouping MNRE instances into posts and scoring ------------------------------
def _bench():
    spec = importlib.util.spec_from_file_location("e2e_mnre", REPO / "benchmarks" / "e2e_mnre.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["e2e_mnre"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


MNRE_LINES = [
    {"token": ["Alice", "met", "Bob", "in", "New", "York"], "h": {"name": "Alice", "pos": [0, 1]},
     "t": {"name": "Bob", "pos": [2, 3]}, "img_id": "a.jpg", "relation": "/per/per/peer"},
    {"token": ["Alice", "met", "Bob", "in", "New", "York"], "h": {"name": "Alice", "pos": [0, 1]},
     "t": {"name": "New York", "pos": [4, 6]}, "img_id": "a.jpg", "relation": "None"},
    {"token": ["Alice", "met", "Bob", "in", "New", "York"], "h": {"name": "Bob", "pos": [2, 3]},
     "t": {"name": "New York", "pos": [4, 6]}, "img_id": "a.jpg",
     "relation": "/per/loc/place_of_residence"},
    # same tokens, other picture: another post
    {"token": ["Alice", "met", "Bob", "in", "New", "York"], "h": {"name": "Alice", "pos": [0, 1]},
     "t": {"name": "Bob", "pos": [2, 3]}, "img_id": "b.jpg", "relation": "None"},
]


def test_benchmark_grouping_and_scoring(tmp_path):
    from mmie.data.readers import read_mnre

    bench = _bench()
    path = tmp_path / "mnre_test.txt"
    path.write_text("".join(repr(d) + "\n" for d in MNRE_LINES))
    posts = bench.group_posts(read_mnre(path).examples)
    assert len(posts) == 2
    a, b = posts
    assert a.image == "a.jpg" and a.entities == [(0, 1), (2, 3), (4, 6)]
    assert a.relations == {((0, 1), (2, 3), "/per/per/peer"),
                           ((2, 3), (4, 6), "/per/loc/place_of_residence")}
    assert a.annotated == {((0, 1), (2, 3)), ((0, 1), (4, 6)), ((2, 3), (4, 6))}
    assert b.entities == [(0, 1), (2, 3)] and b.relations == set()
    text = "Alice met Bob in New York"
    assert bench.token_char_offsets(a.tokens)[4] == (text.index("New"), text.index("New") + 3)
    ents = [{"start": 0, "end": 5}, {"start": 10, "end": 13}, {"start": 17, "end": 25},
            {"start": 6, "end": 9}]  # Alice, Bob, New York, "met" (not a gold mention)
    out_a = {"entities": ents, "relations": [
        {"head": 0, "tail": 1, "label": "/per/per/peer"},            # correct
        {"head": 1, "tail": 2, "label": "/per/loc/contain"},         # wrong label
        {"head": 2, "tail": 0, "label": "/loc/per/x"},               # annotated (as None)
        {"head": 3, "tail": 0, "label": "/per/per/peer"}]}           # unannotated, non-gold
    out_b = {"entities": ents[:2], "relations": []}
    res = bench.score(posts, [out_a, out_b])
    assert res["relations"]["tp"] == 1 and res["relations"]["n_pred"] == 4
    assert res["relations"]["n_gold"] == 2
    assert res["relations"]["f1"] == pytest.approx(2 * 0.25 * 0.5 / 0.75)
    assert res["ner_spans"]["tp"] == 5 and res["ner_spans"]["n_pred"] == 6
    assert res["ner_spans"]["n_gold"] == 5
    assert res["unannotated"] == 1 and res["unannotated_non_gold_mention"] == 1


@pytest.mark.data
def test_benchmark_grouping_on_mnre_test():
    """Every MNRE test instance lands in exactly one post pair; non-None ones are relations."""
    from mmie.data.readers import read_mnre

    data = data_root()
    examples = read_mnre(data / "mnre" / "mnre_test.txt").examples
    posts = _bench().group_posts(examples)
    assert len(examples) == 1614
    assert sum(len(p.annotated) for p in posts) == 1614  # no instance repeats a pair
    assert sum(len(p.relations) for p in posts) == sum(e.relation != "None" for e in examples)
    assert len(posts) == len({(tuple(e.tokens), e.image) for e in examples}) == 914
    assert all(len(p.entities) >= 2 for p in posts)


# ---- zero-shot relation model (untrained MG-VMoE: the wiring, not the quality) -------------
@pytest.fixture
def zs_pipe(pipe, monkeypatch):
    from mmie.config import load_config
    from mmie.inference.predictor import Predictor
    from mmie.models.factory import build_model
    from mmie.tasks.zs_labels import ZeroShotSplit
    from mmie.tasks.zs import ZeroShotTask
    from mmie.training.train import build_encoders

    over = [f"{k}={v}" for k, v in TINY.items() if k != "model.type"]
    cfg = load_config(None, over + ["model.type=mg_vmoe", "model.task=re"])
    labs = ["/per/loc/place_of_residence", "/per/per/couple", "/per/org/member_of"]
    task = ZeroShotTask("zs_re", ZeroShotSplit((labs[0],), (labs[1],), (labs[2],)),
                        {l: l.strip("/").replace("/", " ") for l in labs})
    torch.manual_seed(0)
    text, vision = build_encoders(cfg, True)
    zs = Predictor(build_model(cfg.model, task, text, vision), task, cfg, {})
    monkeypatch.setattr(pipe.ner.task, "decode", _fake_decode)
    return Pipeline(pipe.ner, zs, type_constraints=False)



def test_zero_shot_candidates(zs_pipe, monkeypatch):
    assert zs_pipe.zero_shot
    calls = []
    real = zs_pipe.re.model.predict
    monkeypatch.setattr(zs_pipe.re.model, "predict",
                        lambda b: calls.append(tuple(b["candidates"])) or real(b))
    c1 = ["/per/loc/place_of_residence", "/per/per/couple", "born in"]
    c2 = ["/per/org/member_of", "founded by"]
    items = [{"text": "Alice flies to Paris", "image": _image(11), "candidate_labels": c1},
             {"text": "Bob left Acme", "candidate_labels": c2},
             {"text": "Alice met Bob", "candidate_labels": c1}]
    out = zs_pipe.extract_batch(items)
    assert sorted(calls) == sorted([tuple(c1), tuple(c2)])  # one pass per candidate set
    for item, res in zip(items, out):
        assert len(res["relations"]) == 2  # no None among zero-shot candidates
        for r in res["relations"]:
            h, t = res["entities"][r["head"]], res["entities"][r["tail"]]
            ref = zs_pipe.re.predict(text=item["text"], image=item.get("image"),
                                     head=(h["start"], h["end"]), tail=(t["start"], t["end"]),
                                     candidate_labels=item["candidate_labels"])
            assert r["label"] == ref["relation"] in item["candidate_labels"]
            assert r["score"] == pytest.approx(ref["score"], abs=1e-5)
    # constraints: (LOC -> PER) fits no MNRE-style candidate; "born in" has no signature
    on = Pipeline(zs_pipe.ner, zs_pipe.re, type_constraints=True).extract(
        "Alice flies to Paris", candidate_labels=c1)
    assert {(r["head"], r["tail"]): r["label"] for r in on["relations"]}[(1, 0)] == "born in"
    assert all(label_fits(r["label"], on["entities"][r["head"]]["type"],
                          on["entities"][r["tail"]]["type"]) for r in on["relations"])
