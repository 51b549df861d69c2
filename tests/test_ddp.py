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


# --- scaling levers (issue 21) ---------------------------------------------------------------

def test_ddp_strategy_carries_static_graph_and_bucket_size():
    from lightning.pytorch.strategies import DDPStrategy

    from mmie.config import load_config
    from mmie.errors import ConfigError
    from mmie.training.train import build_strategy

    tc = load_config(None, ["trainer.strategy=ddp", "trainer.static_graph=true",
                            "trainer.bucket_cap_mb=4"]).trainer
    s = build_strategy(tc)
    assert isinstance(s, DDPStrategy)
    assert s._ddp_kwargs == {"static_graph": True, "bucket_cap_mb": 4.0}
    plain = build_strategy(load_config(None, ["trainer.strategy=ddp"]).trainer)
    assert plain._ddp_kwargs == {"static_graph": False}  # torch's default bucket size
    assert build_strategy(load_config(None, ["trainer.strategy=auto"]).trainer) == "auto"
    for bad, msg in ((["trainer.static_graph=true"], "strategy=ddp"),
                     (["trainer.strategy=ddp_spawn", "trainer.bucket_cap_mb=8"], "ddp_spawn"),
                     (["trainer.strategy=ddp", "trainer.bucket_cap_mb=0"], "> 0")):
        with pytest.raises(ConfigError, match=msg):
            load_config(None, bad).validate()


def test_lr_scaling_multiplies_every_rate_once():
    from mmie.config import load_config
    from mmie.training.train import scale_learning_rates

    tc = load_config(None, ["trainer.lr=3e-5", "trainer.head_lr=1e-3", "trainer.crf_lr=0.05",
                            "trainer.lr_scale_with_world_size=true"]).trainer
    rec = scale_learning_rates(tc, 4)
    assert (tc.lr, tc.head_lr, tc.crf_lr) == pytest.approx((1.2e-4, 4e-3, 0.2))
    assert rec["world_size"] == 4 and rec["base"] == pytest.approx(
        {"lr": 3e-5, "head_lr": 1e-3, "crf_lr": 0.05})
    assert tc.lr_scale_with_world_size is False  # a re-run of the saved config: no 2nd scaling
    assert scale_learning_rates(tc, 4) is None and tc.lr == pytest.approx(1.2e-4)


def test_two_process_run_records_levers_lr_scale_and_timing(tmp_path: Path):
    import yaml

    out = tmp_path / "run"
    sets = ["data.name=synthetic", "data.synthetic_size=60", "data.max_length=32",
            "data.limit_train=16", "data.limit_eval=4", "model.type=mmib", "model.task=ner",
            "model.text_encoder=random:tiny-bert", "model.vision_encoder=random:tiny-resnet",
            "trainer.max_epochs=1", "trainer.batch_size=4", "trainer.eval_batch_size=4",
            "trainer.progress=false", "trainer.lr=1e-4", "trainer.head_lr=2e-3",
            "trainer.crf_lr=0.05", "trainer.lr_scale_with_world_size=true",
            "trainer.static_graph=true", "trainer.bucket_cap_mb=2",
            f"output_dir={out}", f"cache_dir={tmp_path / 'cache'}"]
    cmd = [PY, "-m", "mmie", "train", "--devices", "2", "--strategy", "ddp",
           "--accelerator", "cpu"] + [a for kv in sets for a in ("--set", kv)]
    r = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    saved = yaml.safe_load((out / "config.yaml").read_text())["trainer"]
    assert (saved["lr"], saved["head_lr"], saved["crf_lr"]) == pytest.approx((2e-4, 4e-3, 0.1))
    assert saved["lr_scale_with_world_size"] is False
    s = json.loads((out / "summary.json").read_text())
    assert s["lr_scale"]["world_size"] == 2
    assert s["lr_scale"]["base"] == pytest.approx({"lr": 1e-4, "head_lr": 2e-3, "crf_lr": 0.05})
    assert s["ddp"] == {"static_graph": True, "bucket_cap_mb": 2.0}  # what DDP itself used
    tm = s["timing"]
    assert tm["world_size"] == 2 and tm["train_posts"] == 16
    assert tm["optimizer_steps"] == 2  # 16 posts / 2 ranks / batch 4
    assert tm["fit_eval_seconds"] > 0 and tm["final_eval_seconds"] > 0
    parts = tm["setup_seconds"] + tm["train_loop_seconds"] + tm["fit_eval_seconds"]
    assert parts == pytest.approx(s["train_seconds"], abs=0.05)
