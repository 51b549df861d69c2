"""Exact resume after SIGKILL: a run killed mid-epoch and resumed with ``--resume`` ends with
the same weights, logs and dev/test metrics as an uninterrupted run of the same seed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmie.training.data import ResumableLoader, ResumableSampler

from helpers import subprocess_env

PY = sys.executable
TINY = ("data.name=synthetic", "data.synthetic_size=60", "data.max_length=48",
        "data.limit_train=28", "data.limit_eval=9", "model.type=mmib", "model.task=ner",
        "model.text_encoder=random:tiny-bert", "model.vision_encoder=random:tiny-resnet",
        "trainer.max_epochs=2", "trainer.batch_size=4", "trainer.eval_batch_size=4",
        "trainer.progress=false", "trainer.log_every_n_steps=1",
        "trainer.checkpoint_every_n_steps=2", "trainer.accelerator=cpu", "trainer.devices=1",
        "seed=3")


def _cmd(config: Path, out: Path, cache: Path, *extra: str) -> list[str]:
    sets = [a for kv in TINY + (f"output_dir={out}", f"cache_dir={cache}") for a in ("--set", kv)]
    return [PY, "-m", "mmie", "train", str(config), *sets, *extra]


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def test_sampler_resumes_mid_epoch_and_shards():
    s = ResumableSampler(10, shuffle=True, seed=5)
    s.set_epoch(1)
    full = list(s)
    assert sorted(full) == list(range(10))
    fresh = ResumableSampler(10, shuffle=True, seed=5)
    fresh.set_epoch(1)
    assert list(fresh) == full  # the order is a function of (seed, epoch) only
    s.set_epoch(1)
    s.skip = 4
    assert list(s) == full[4:]
    assert list(s) == full  # skip applies once
    s.set_epoch(2)
    assert list(s) != full  # a new epoch, a new order from (seed, epoch)
    # the loader counts delivered batches and skips them after load_state_dict
    dl = ResumableLoader(list(range(10)), ResumableSampler(10, True, 5), batch_size=3)
    dl.sampler.set_epoch(1)
    it = iter(dl)
    first = [next(it).tolist(), next(it).tolist()]
    state = dl.state_dict()
    assert state == {"epoch": 1, "batches": 2}
    rest = [b.tolist() for b in it]
    dl2 = ResumableLoader(list(range(10)), ResumableSampler(10, True, 5), batch_size=3)
    dl2.load_state_dict(state)
    dl2.sampler.set_epoch(1)  # Lightning sets the epoch after iter(); the skip is lazy
    assert [b.tolist() for b in dl2] == rest
    assert sum(first + rest, []) == full


def test_length_grouping_keeps_every_example_once_and_reduces_padding():
    lengths = [3, 17, 5, 9, 1, 12, 8, 2, 15, 6, 4, 11, 7, 14, 10, 16]
    # evaluation: longest first, each index once
    ev = ResumableSampler(len(lengths), shuffle=False, lengths=lengths)
    assert list(ev) == sorted(range(len(lengths)), key=lambda i: -lengths[i])
    # training: windows of 2 batches of 4 sorted by length, batches shuffled
    tr = ResumableSampler(len(lengths), shuffle=True, seed=3, lengths=lengths, batch_size=4,
                          bucket_batches=2)
    tr.set_epoch(1)
    order = list(tr)
    assert sorted(order) == list(range(len(lengths)))
    again = ResumableSampler(len(lengths), shuffle=True, seed=3, lengths=lengths, batch_size=4,
                             bucket_batches=2)
    again.set_epoch(1)
    assert list(again) == order  # still a function of (seed, epoch): resume stays exact
    tr.set_epoch(1)
    tr.skip = 4
    assert list(tr) == order[4:]

    def padding(seq: list[int]) -> int:
        batches = [seq[k:k + 4] for k in range(0, len(seq), 4)]
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b)
                   for b in batches)

    plain = ResumableSampler(len(lengths), shuffle=True, seed=3)
    plain.set_epoch(1)
    assert padding(order) < padding(list(plain))
    # each bucketed batch comes from one window of the plain shuffle, sorted within it
    shuffled = list(plain)
    windows = [set(shuffled[k:k + 8]) for k in range(0, 16, 8)]
    for k in range(0, 16, 4):
        batch = order[k:k + 4]
        assert any(set(batch) <= w for w in windows)
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)
    # n not a multiple of the batch: the short batch stays last, so every full batch still
    # comes from one sorted window
    n = 18
    lengths2 = [(7 * i) % 23 + 1 for i in range(n)]
    tr2 = ResumableSampler(n, shuffle=True, seed=5, lengths=lengths2, batch_size=4,
                           bucket_batches=2)
    tr2.set_epoch(0)
    order2 = list(tr2)
    assert sorted(order2) == list(range(n))
    plain2 = ResumableSampler(n, shuffle=True, seed=5)
    plain2.set_epoch(0)
    shuffled2 = list(plain2)
    windows2 = [set(shuffled2[k:k + 8]) for k in range(0, n, 8)]
    for k in range(0, 16, 4):
        assert any(set(order2[k:k + 4]) <= w for w in windows2), k
    assert set(order2[16:]) <= windows2[-1]
    with pytest.raises(ValueError, match="lengths has 3 entries for 16"):
        ResumableSampler(16, shuffle=True, lengths=[1, 2, 3])


def test_sigkill_mid_epoch_then_resume_is_exact(tmp_path: Path):
    cache = tmp_path / "cache"
    config = tmp_path / "tiny.yaml"
    config.write_text("seed: 3\n")
    ref, crash = tmp_path / "ref", tmp_path / "crash"
    t0 = time.perf_counter()
    # the uninterrupted reference runs alongside the run that gets killed
    # (own cache dir: two processes never build the same synthetic set / feature cache)
    ref_log = open(tmp_path / "ref.log", "w")
    ref_p = subprocess.Popen(_cmd(config, ref, tmp_path / "cache_ref"), env=subprocess_env(),
                             stdout=ref_log, stderr=subprocess.STDOUT)

    # start the same run, kill -9 it once a mid-epoch step checkpoint (step 4 of 7/epoch) exists
    step_ckpt = crash / "checkpoints" / "step.ckpt"
    p = subprocess.Popen(_cmd(config, crash, cache), env=subprocess_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    killed_at = None
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        if step_ckpt.exists():
            try:
                step = torch.load(step_ckpt, map_location="cpu", weights_only=False)["global_step"]
            except Exception:  # pragma: no cover - would mean a torn file
                raise AssertionError("a step checkpoint was readable only partially")
            if step >= 4:
                p.send_signal(signal.SIGKILL)
                p.wait()
                killed_at = step
                break
        time.sleep(0.05)
    assert killed_at is not None, "run ended before it could be killed mid-epoch"
    assert killed_at % 7 != 0, "kill should land mid-epoch (7 steps per epoch)"
    assert not (crash / "summary.json").exists()

    r = subprocess.run(_cmd(config, crash, cache, "--resume"), env=subprocess_env(), capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    ref_p.wait(timeout=300)
    ref_log.close()
    assert ref_p.returncode == 0, (tmp_path / "ref.log").read_text()[-3000:]
    t_total = time.perf_counter() - t0

    # final weights of the selected and of the last checkpoint
    worst = 0.0
    for name in ("last.ckpt", "best.ckpt"):
        a, b = _state(ref / "checkpoints" / name), _state(crash / "checkpoints" / name)
        assert a.keys() == b.keys()
        worst = max([worst] + [(a[k].double() - b[k].double()).abs().max().item()
                               for k in a if a[k].is_floating_point() and a[k].numel()])
    assert worst <= 1e-6, worst
    # dev / test metrics, per-epoch training losses (same rows, no duplicates) and predictions
    for name in ("eval_dev.json", "eval_test.json"):
        ea = json.loads((ref / name).read_text())
        eb = json.loads((crash / name).read_text())
        for k, v in ea.items():
            if isinstance(v, float):
                assert abs(v - eb[k]) <= 1e-6, (name, k, v, eb[k])
            else:
                assert v == eb[k], (name, k)
    ma = [json.loads(l) for l in (ref / "metrics.jsonl").read_text().splitlines()]
    mb = [json.loads(l) for l in (crash / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in mb] == [1, 2]
    for ra, rb in zip(ma, mb):
        for k, v in ra.items():
            if k.startswith("train/") or k.startswith("dev/"):
                assert abs(v - rb[k]) <= 1e-6, (k, v, rb[k])
    sa = [json.loads(l) for l in (ref / "steps.jsonl").read_text().splitlines()]
    sb = [json.loads(l) for l in (crash / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in sb] == list(range(1, 15))
    assert max(abs(x["train/loss"] - y["train/loss"]) for x, y in zip(sa, sb)) <= 1e-6
    assert ((ref / "predictions_test.jsonl").read_text()
            == (crash / "predictions_test.jsonl").read_text())
    # no half-written checkpoint or temporary file anywhere
    assert not list(crash.rglob("*.tmp"))
    assert sorted(p.name for p in (crash / "checkpoints").iterdir()) == [
        "best.ckpt", "last.ckpt", "step.ckpt"]
    print(f"both runs {t_total:.1f}s, killed at step {killed_at}, max |dw| {worst:.2e}")
