"""DDP on 2 CPU processes (gloo): evaluation gathers predictions by example index and drops
the padding duplicates of the sharded sampler, so a 2-process run scores an odd-size test set
exactly like a 1-process ``mmie evaluate`` of the saved model; only rank 0 writes files.

The run goes through the real CLI in a subprocess (``--devices 2 --strategy ddp
--accelerator cpu``): Lightning's ``ddp`` launcher re-executes ``python -m mmie train ...``
for rank 1, which is robust under pytest (no pickling of the test process, unlike
``ddp_spawn``) and is exactly what users run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmie.training import data as tdata
from mmie.training.module import gather_predictions

from helpers import subprocess_env

PY = sys.executable
N_EVAL = 9  # odd: 2 ranks x 5 = 10 slots, one padding duplicate


def test_sharding_pads_and_gather_drops_duplicates(monkeypatch):
    shares = []
    for rank in (0, 1):
        monkeypatch.setattr(tdata, "_dist_info", lambda r=rank: (r, 2))
        s = tdata.ResumableSampler(N_EVAL, shuffle=False)
        assert len(s) == 5
        shares.append(list(s))
    assert shares == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 0]]  # index 0 is the padding duplicate
    merged = [(i, f"p{i}") for share in shares for i in share]
    assert gather_predictions(merged) == [(i, f"p{i}") for i in range(N_EVAL)]


def test_two_process_ddp_matches_single_process_evaluate(tmp_path: Path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    config = tmp_path / "tiny.yaml"
    config.write_text("seed: 3\n")
    sets = ["data.name=synthetic", "data.synthetic_size=60", "data.max_length=48",
            "data.limit_train=28", f"data.limit_eval={N_EVAL}", "model.type=mmib",
            "model.task=ner", "model.text_encoder=random:tiny-bert",
            # emissions at the encoder lr: 8 tiny steps at the CRF lr collapse to all-O, and
            # the comparison below needs predicted spans
            "trainer.crf_lr_emissions=false",
            "model.vision_encoder=random:tiny-resnet", "trainer.max_epochs=2",
            "trainer.batch_size=4", "trainer.eval_batch_size=2", "trainer.progress=false",
            "trainer.log_every_n_steps=1", f"output_dir={out}", f"cache_dir={cache}"]
    cmd = [PY, "-m", "mmie", "train", str(config), "--devices", "2", "--strategy", "ddp",
           "--accelerator", "cpu"] + [a for kv in sets for a in ("--set", kv)]
    r = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:]

    # rank 0 alone wrote the logs: one row per epoch / per logged step, no duplicates
    metrics = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    steps = [json.loads(l)["step"] for l in (out / "steps.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))  # 28 examples / 2 ranks / batch 4 = 4 steps per epoch
    assert not list(out.rglob("*.tmp"))

    ddp = json.loads((out / "eval_test.json").read_text())
    assert ddp["n"] == N_EVAL
    # one process, no process group: what `mmie evaluate RUN/model --split test` computes
    from mmie.inference.evaluate import evaluate

    ev_out = tmp_path / "eval_preds.jsonl"
    single = evaluate(out / "model", split="test", limit=N_EVAL, output=ev_out, progress=False)
    assert single["n"] == N_EVAL
    assert ddp["n_pred"] > 0  # the comparison is about real predicted spans
    for k in ("precision", "recall", "f1", "strict_f1", "support", "n_pred", "n_correct",
              "per_type"):
        assert ddp[k] == single[k], k
    # per-example predictions: same ids in order, each once, same spans (scores to 1e-5)
    a = [json.loads(l) for l in (out / "predictions_test.jsonl").read_text().splitlines()]
    b = [json.loads(l) for l in ev_out.read_text().splitlines()]
    assert [x["id"] for x in a] == [x["id"] for x in b] and len({x["id"] for x in a}) == N_EVAL
    for x, y in zip(a, b):
        assert [(s["start"], s["end"], s["label"]) for s in x["pred"]] == \
            [(s["start"], s["end"], s["label"]) for s in y["pred"]]
        for s, t in zip(x["pred"], y["pred"]):
            assert s.get("score") == pytest.approx(t.get("score"), abs=1e-5)
