"""A missing or blank picture is *absent* for every image term (issue 17, item 4).

``data.image_policy=blank`` stands a grey picture in for a missing or broken image; such a
post (and a post without an image reference) gets ``image_present=False``, and then takes
part in no image term: not the image KL, the alignment / InfoNCE, the VAT graph, nor fusion.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from mmie.config import load_config
from mmie.data.schema import Example, Span
from mmie.models.factory import build_model
from mmie.tasks.ner import NERTask
from mmie.training.train import build_encoders

TINY = ["model.text_encoder=random:tiny-bert", "model.vision_encoder=random:tiny-resnet",
        "model.dropout=0.0"]


def _examples(n: int = 4) -> list[Example]:
    words = [["Jordan", "scores", "in", "Chicago"], ["Paris", "is", "nice"],
             ["Apple", "hires", "Tim", "Cook"], ["Rain", "in", "Rome", "today"]]
    ents = [[Span(0, 1, "PER"), Span(3, 4, "LOC")], [Span(0, 1, "LOC")],
            [Span(0, 1, "ORG"), Span(2, 4, "PER")], [Span(2, 3, "LOC")]]
    return [Example(id=f"p{i}", tokens=words[i % 4], image=f"img{i}.png",
                    entities=ents[i % 4]) for i in range(n)]


def test_blank_and_missing_pictures_are_absent_in_training_batches(tmp_path):
    from mmie.training.data import Collator, compute_image_features

    img_dir = tmp_path / "images"
    img_dir.mkdir()
    colours = [(200, 10, 10), (10, 200, 10), (10, 10, 200)]
    for i, c in enumerate(colours):  # img0..img2 exist; img3 is missing; p4 has no reference
        Image.new("RGB", (40, 30), c).save(img_dir / f"img{i}.png")
    exs = _examples(4) + [Example(id="p4", tokens=["no", "picture"], image=None)]
    cfg = load_config(None, [*TINY, "data.image_policy=blank", f"data.image_dir={img_dir}",
                             f"cache_dir={tmp_path / 'cache'}", "model.type=fusion"])
    text, vision = build_encoders(cfg, True)
    report: dict = {}
    feats, kept = compute_image_features(cfg, vision, {"train": exs}, report)
    assert len(kept["train"]) == 5 and report["images"]["train"]["blank"] == 2
    task = NERTask.from_examples(exs)
    batch = Collator(task, text, 32, feats)([(i, ex, feats.rows["train"][i])
                                              for i, ex in enumerate(kept["train"])])
    assert batch["image_present"].tolist() == [True, True, True, False, False]
    # the two stand-ins share one grey row, and it is the blank row
    assert feats.rows["train"][3] == feats.rows["train"][4] == feats.blank_row


# ---- model level: what an absent picture contributes ---------------------------------------
def _model(kind: str, *extra: str, task=None):
    cfg = load_config(None, [*TINY, f"model.type={kind}", *extra])
    text, vision = build_encoders(cfg, True)
    task = task or NERTask.from_examples(_examples())
    torch.manual_seed(0)
    return build_model(cfg.model, task, text, vision), task, text, vision


def _batch(task, text, vision, present, seed=0, **collate_kw):
    exs = _examples(len(present))
    if getattr(task, "zero_shot", False):
        exs = [Example(id=e.id, tokens=e.tokens, image=e.image, entities=[e.entities[0]])
               for e in exs]
    batch = task.collate(exs, text, 32, **collate_kw)
    g = torch.Generator().manual_seed(seed)
    B = len(present)
    batch["image_global"] = torch.randn(B, vision.out_dim, generator=g)
    batch["image_regions"] = torch.randn(B, 9, vision.out_dim, generator=g)
    batch["image_present"] = torch.tensor(present)
    return batch


def _replace_images(batch, rows, seed=7):
    """The same batch with other image features on ``rows``."""
    g = torch.Generator().manual_seed(seed)
    other = dict(batch)
    other["image_global"] = batch["image_global"].clone()
    other["image_regions"] = batch["image_regions"].clone()
    for r in rows:
        other["image_global"][r] = 5 * torch.randn(batch["image_global"].shape[1], generator=g)
        other["image_regions"][r] = 5 * torch.randn(batch["image_regions"].shape[1:], generator=g)
    return other


_STATES: dict[int, dict] = {}


def _train_forward(model, batch, seed=3):
    """A training forward from the same state: the same VIB / expert samples, and the same
    learned VAT perturbation (a buffer that every training forward updates)."""
    import copy

    state = _STATES.setdefault(id(model), copy.deepcopy(model.state_dict()))
    model.load_state_dict(state)
    model.train()
    torch.manual_seed(seed)
    return model(batch)


def test_mmib_all_absent_image_terms_are_zero_and_loss_is_text_only():
    model, task, text, vision = _model("mmib")
    batch = _batch(task, text, vision, [False] * 4)
    out = _train_forward(model, batch)
    assert out.terms["kl_image"].item() == 0.0
    assert out.terms["align"].item() == 0.0
    # the loss is the text-only part: task + beta_kl_text * KL_text
    assert out.loss.item() == pytest.approx(
        (out.terms["task"] + out.terms["kl_text"]).item(), rel=1e-6)
    # ... and does not depend on what the blank picture's features are
    other = _train_forward(model, _replace_images(batch, range(4)))
    for k in ("loss", "task", "kl_text"):
        assert other.terms[k].item() == pytest.approx(out.terms[k].item(), rel=1e-6), k
    model.eval()
    h1, _ = model.represent(batch)
    h2, _ = model.represent(_replace_images(batch, range(4)))
    torch.testing.assert_close(h1, h2)


def test_mmib_mixed_batch_only_present_pictures_contribute():
    model, task, text, vision = _model("mmib")
    batch = _batch(task, text, vision, [True, False, True, False])
    out = _train_forward(model, batch)
    assert out.terms["kl_image"].item() > 0 and out.terms["align"].item() > 0
    absent_changed = _train_forward(model, _replace_images(batch, [1, 3]))
    for k in ("loss", "task", "kl_text", "kl_image", "align"):
        assert absent_changed.terms[k].item() == pytest.approx(out.terms[k].item(), rel=1e-6), k
    # a present picture's features do count (the check above can fail)
    present_changed = _train_forward(model, _replace_images(batch, [0]))
    assert present_changed.terms["kl_image"].item() != pytest.approx(out.terms["kl_image"].item())


@pytest.mark.parametrize("fusion", ["cross", "concat"])
def test_fusion_output_independent_of_absent_pictures(fusion):
    # random start: an untrained identity-started concat layer ignores every picture
    model, task, text, vision = _model("fusion", f"model.fusion={fusion}",
                                       "model.fusion_init=random")
    model.eval()
    batch = _batch(task, text, vision, [True, False, True, False])
    h1, _ = model.represent(batch)
    h2, _ = model.represent(_replace_images(batch, [1, 3]))
    torch.testing.assert_close(h1, h2)
    h3, _ = model.represent(_replace_images(batch, [0]))
    assert not torch.allclose(h1[0], h3[0], atol=1e-4)


def _zs_task():
    from mmie.tasks.zs_labels import ZeroShotSplit
    from mmie.tasks.zs import ZeroShotTask

    split = ZeroShotSplit(("PER", "LOC", "ORG"), ("MISC",), ("MISC",), generalized=True)
    texts = {"PER": "person", "LOC": "location", "ORG": "organization", "MISC": "other"}
    return ZeroShotTask("typing", split, texts)


def test_mg_vmoe_all_absent_image_terms_are_zero():
    model, task, text, vision = _model("mg_vmoe", "model.task=typing", task=_zs_task())
    batch = _batch(task, text, vision, [False] * 4, phase="train")
    out = _train_forward(model, batch)
    assert out.terms["kl_image"].item() == 0.0
    assert out.terms["nce"].item() == 0.0
    # the gate term is the text tokens' alone
    model.eval()
    h_t = model.text(batch["input_ids"], batch["attention_mask"])
    text_only = model.moe(h_t, batch["attention_mask"].bool())
    _, graph_h, terms = model.represent(batch)
    assert terms["gate_entropy"].item() == pytest.approx(text_only.gate_entropy.item(), rel=1e-6)
    # the VAT vector's image half is 0 for a post without a picture
    assert graph_h[:, :model.hidden].abs().max().item() == 0.0
    other = _train_forward(model, _replace_images(batch, range(4)))
    for k in out.terms:
        assert other.terms[k].item() == pytest.approx(out.terms[k].item(), rel=1e-6), k


def test_mg_vmoe_mixed_batch_only_present_pictures_contribute():
    model, task, text, vision = _model("mg_vmoe", "model.task=typing", task=_zs_task())
    batch = _batch(task, text, vision, [True, False, True, False], phase="train")
    out = _train_forward(model, batch)
    assert out.terms["kl_image"].item() > 0
    changed = _train_forward(model, _replace_images(batch, [1, 3]))
    for k in out.terms:
        assert changed.terms[k].item() == pytest.approx(out.terms[k].item(), rel=1e-6), k
    present_changed = _train_forward(model, _replace_images(batch, [2]))
    assert present_changed.terms["kl_image"].item() != pytest.approx(out.terms["kl_image"].item())


@pytest.mark.parametrize("kind", ["mmib", "fusion", "mg_vmoe"])
def test_without_pictures_every_parameter_is_still_reached(kind):
    """With no picture in the batch every trainable parameter still gets a (zero) gradient,
    so DDP (which requires every parameter used) trains on data without images."""
    if kind == "mg_vmoe":
        model, task, text, vision = _model(kind, "model.task=typing", task=_zs_task())
        batch = _batch(task, text, vision, [False] * 4, phase="train")
    else:
        model, task, text, vision = _model(kind)
        batch = _batch(task, text, vision, [False] * 4)
    out = _train_forward(model, batch)
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
