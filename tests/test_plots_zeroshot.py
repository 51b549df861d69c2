"""MG-VMoE diagnostic plots (``mmie.plots.zeroshot`` and ``mmie plot-zs``) on a tiny run."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmie.plots.zeroshot import _routing_sums, pca_2d, plot_zero_shot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tiny_run) -> Path:
    """The session's tiny MG-VMoE typing run."""
    return tiny_run("mg_vmoe_typing").out


def _check_png(path: Path, min_w: int = 300, min_h: int = 200) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    w, h = struct.unpack(">II", data[16:24])  # IHDR
    assert w >= min_w and h >= min_h, (path, w, h)
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        px = np.asarray(im.convert("L"), dtype=float)
    assert px.std() > 5.0, f"{path} looks blank"
    assert len(np.unique(px)) > 20, f"{path} has almost no content"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]


def test_plot_zero_shot_test_split(run_dir, tmp_path):
    paths = plot_zero_shot(run_dir / "model", split="test", out_dir=tmp_path)
    names = [p.name for p in paths]
    assert names == ["routing_test.png", "embeddings_test.png", "zeroshot_test.json"]
    for p in paths[:2]:
        _check_png(p)
    d = json.loads(paths[2].read_text(encoding="utf-8"))

    # rows = the gold labels of the test instances (the unseen labels), as training saw them
    saved = _jsonl(run_dir / "predictions_test.jsonl")
    gold = sorted({r["gold"] for r in saved})
    assert d["labels"] == gold
    assert set(gold) <= set(d["unseen_labels"])
    assert d["n"] == len(saved)
    assert d["examples_per_label"] == {l: sum(r["gold"] == l for r in saved) for l in gold}

    # the model's own prediction path: the accuracy is the run's test accuracy
    eval_test = json.loads((run_dir / "eval_test.json").read_text())
    assert d["accuracy"] == pytest.approx(eval_test["accuracy"], abs=1e-12)
    per = {l: np.mean([r["pred"] == l for r in saved if r["gold"] == l]) for l in gold}
    assert d["accuracy_per_label"] == pytest.approx(per, abs=1e-12)

    # routing: one row per gold label, one column per expert, each row a distribution
    E = d["num_experts"]
    for mod in ("text", "image"):
        m = np.asarray(d["routing"][mod], dtype=float)
        assert m.shape == (len(gold), E), mod
        assert (m >= 0).all()
        np.testing.assert_allclose(m.sum(1), 1.0, atol=1e-5, err_msg=mod)
    # image tokens: 1 global + 3 x 3 regions per instance, all present on the synthetic set
    n_img = d["routing"]["image_tokens_per_label"]
    assert n_img == [10 * d["examples_per_label"][l] for l in gold]
    assert all(c >= d["examples_per_label"][l]
               for c, l in zip(d["routing"]["text_tokens_per_label"], gold))
    r = d["pca_explained_variance"]
    assert 0 < r[1] <= r[0] and r[0] + r[1] <= 1 + 1e-9


def test_routing_matches_a_direct_moe_call(run_dir, tmp_path):
    """The routing of one instance (limit=1) equals the gates of the MoE called directly."""
    import mmie
    from mmie.tasks.zs import instance_label
    from mmie.training.data import Collator, compute_image_features, load_examples

    d_path = plot_zero_shot(run_dir / "model", split="dev", out_dir=tmp_path, limit=1)[2]
    d = json.loads(d_path.read_text(encoding="utf-8"))
    assert d["n"] == 1 and len(d["labels"]) == 1

    pred = mmie.load(run_dir / "model")
    task, model, cfg = pred.task, pred.model.eval(), pred.cfg
    pooled = {s: load_examples(cfg, s) for s in ("train", "dev", "test")}
    ex = task.filter_splits(pooled)["dev"][0]
    assert d["labels"] == [instance_label(ex)]
    feats, _ = compute_image_features(cfg, model.vision, {"dev": [ex]}, {})
    batch = Collator(task, model.text, cfg.data.max_length, feats, phase="dev")([(0, ex, 0)])
    with torch.no_grad():
        h_t = model.text(batch["input_ids"], batch["attention_mask"])
        gates = model.moe(h_t, batch["attention_mask"].bool()).gates[0]
    valid = batch["attention_mask"][0].bool()
    expected = gates[valid].double().mean(0).numpy()
    np.testing.assert_allclose(d["routing"]["text"][0], expected, atol=1e-6)
    assert d["routing"]["text_tokens_per_label"] == [int(valid.sum())]


def test_cli_plot_zs(run_dir, tmp_path, capsys):
    from mmie.cli import main

    out = tmp_path / "figs"
    rc = main(["plot-zs", str(run_dir / "model"), "--split", "dev", "--out-dir", str(out),
               "--limit", "12"])
    assert rc == 0
    printed = capsys.readouterr().out.split()
    assert [Path(p).name for p in printed] == ["routing_dev.png", "embeddings_dev.png",
                                               "zeroshot_dev.json"]
    for name in ("routing_dev.png", "embeddings_dev.png"):
        _check_png(out / name)
    d = json.loads((out / "zeroshot_dev.json").read_text(encoding="utf-8"))
    assert d["split"] == "dev" and d["n"] == 12
    assert sum(d["examples_per_label"].values()) == 12
    # a model directory that does not exist: an error message and exit status 1
    assert main(["plot-zs", str(tmp_path / "missing"), "--out-dir", str(out)]) == 1
    assert "plot-zs" in capsys.readouterr().err


def test_routing_sums_hand_count():
    gates = torch.tensor([[[0.5, 0.5], [1.0, 0.0], [0.2, 0.8]],
                          [[0.0, 1.0], [0.3, 0.7], [0.9, 0.1]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=torch.bool)
    sums, counts = _routing_sums(gates, mask, torch.tensor([1, 1]), 3)
    np.testing.assert_allclose(sums, [[0, 0], [1.5, 1.5], [0, 0]])
    np.testing.assert_allclose(counts, [0, 3, 0])
    sums, counts = _routing_sums(gates, mask, torch.tensor([0, 2]), 3)
    np.testing.assert_allclose(sums, [[1.5, 0.5], [0, 0], [0.0, 1.0]])
    np.testing.assert_allclose(counts, [2, 0, 1])


def test_pca_2d_recovers_known_axes():
    rng = np.random.default_rng(0)
    # variance 9 along e0, 1 along e2, nothing along e1 / e3, shifted by a constant
    z = rng.standard_normal((200, 2)) * [3.0, 1.0]
    z -= z.mean(0)
    z[:, 1] -= z[:, 0] * (z[:, 0] @ z[:, 1]) / (z[:, 0] @ z[:, 0])  # uncorrelated columns
    x = np.zeros((200, 4))
    x[:, 0], x[:, 2] = z[:, 0], z[:, 1]
    x += [5.0, -2.0, 1.0, 7.0]
    coords, ratio = pca_2d(x)
    c0 = z[:, 0] if np.dot(coords[:, 0], z[:, 0]) > 0 else -z[:, 0]
    c1 = z[:, 1] if np.dot(coords[:, 1], z[:, 1]) > 0 else -z[:, 1]
    np.testing.assert_allclose(coords[:, 0], c0, atol=1e-9)
    np.testing.assert_allclose(coords[:, 1], c1, atol=1e-9)
    var = (z ** 2).sum(0)
    np.testing.assert_allclose(ratio, var / var.sum(), atol=1e-12)
    # a single point: no direction, zero coordinates
    coords, ratio = pca_2d(np.ones((1, 3)))
    assert coords.tolist() == [[0.0, 0.0]] and ratio.tolist() == [0.0, 0.0]
