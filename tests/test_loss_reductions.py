"""Loss reductions and learning-rate groups against MMIB's released code (issue 17, items 5-6).

RE: cross-entropy summed over the batch (``model.re_loss_reduction=sum``; ``mean`` an option).
NER: the CRF negative log-likelihood averaged over the sequences. KL: the mean over every
valid element. The alignment discriminator is tested by hand in ``test_alignment.py``. The
NER emission projection trains at the CRF learning rate (``trainer.crf_lr_emissions``).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from mmie.config import load_config
from mmie.data.schema import Example, Relation, Span
from mmie.models.factory import build_model
from mmie.tasks.ner import NERTask
from mmie.tasks.re import RETask
from mmie.training.train import build_encoders

TINY = ["model.text_encoder=random:tiny-bert", "model.vision_encoder=random:tiny-resnet",
        "model.dropout=0.0"]


def _re_examples():
    rows = [(["Jordan", "plays", "for", "Chicago"], 0, 3, "/per/org/member_of"),
            (["Paris", "loves", "Rome"], 0, 2, "/per/per/couple"),
            (["Tim", "runs", "Apple", "now"], 0, 2, "/per/org/member_of"),
            (["Ann", "met", "Bob"], 0, 2, "None")]
    out = []
    for i, (w, h, t, lab) in enumerate(rows):
        ents = [Span(h, h + 1, "PER"), Span(t, t + 1, "ORG")]
        out.append(Example(id=f"r{i}", tokens=w, image=None, entities=ents,
                           relations=[Relation(0, 1, lab)]))
    return out


def _ner_examples():
    return [Example(id="n0", tokens=["Jordan", "in", "Chicago"], entities=[Span(0, 1, "PER"),
                                                                           Span(2, 3, "LOC")]),
            Example(id="n1", tokens=["Apple", "hires"], entities=[Span(0, 1, "ORG")]),
            Example(id="n2", tokens=["rain", "in", "Rome", "today", "again"],
                    entities=[Span(2, 3, "LOC")])]


def _model(kind, task_name, examples, *extra):
    cfg = load_config(None, [*TINY, f"model.type={kind}", f"model.task={task_name}", *extra])
    torch.manual_seed(0)
    text, vision = build_encoders(cfg, kind != "text")
    task = (RETask if task_name == "re" else NERTask).from_examples(examples)
    model = build_model(cfg.model, task, text, vision).eval()
    batch = task.collate(examples, text, 32)
    if vision is not None:
        g = torch.Generator().manual_seed(1)
        B = len(examples)
        batch["image_global"] = torch.randn(B, vision.out_dim, generator=g)
        batch["image_regions"] = torch.randn(B, 9, vision.out_dim, generator=g)
        batch["image_present"] = torch.ones(B, dtype=torch.bool)
    return model, batch, cfg


@pytest.mark.parametrize("kind", ["text", "mmib"])
def test_re_cross_entropy_summed_over_the_batch(kind):
    model, batch, _ = _model(kind, "re", _re_examples())
    out = model(batch)
    hidden, _ = model.represent(batch)
    logits = model.head(hidden, batch["head_pos"], batch["tail_pos"]).double()
    logp = logits.log_softmax(-1)
    by_hand = -sum(float(logp[i, y].detach()) for i, y in enumerate(batch["labels"].tolist()))
    assert out.terms["task"].item() == pytest.approx(by_hand, rel=1e-5)
    mean_model, _, _ = _model(kind, "re", _re_examples(), "model.re_loss_reduction=mean")
    assert mean_model(batch).terms["task"].item() == pytest.approx(by_hand / 4, rel=1e-5)


def test_ner_crf_loss_is_the_mean_over_sequences():
    model, batch, _ = _model("text", "ner", _ner_examples())
    out = model(batch)
    hidden, _ = model.represent(batch)
    em = model._word_emissions(hidden, batch).double()
    mask = batch["word_mask"].bool()
    crf = model.crf.crf
    start, trans, end = (crf.start_transitions.double(), crf.transitions.double(),
                         crf.end_transitions.double())
    nlls = []
    for i in range(em.shape[0]):  # brute force over every tag path of each short sentence
        n = int(mask[i].sum())
        tags = batch["tags"][i, :n].tolist()
        K = em.shape[-1]

        def score(path):
            s = start[path[0]] + em[i, 0, path[0]]
            for t in range(1, n):
                s = s + trans[path[t - 1], path[t]] + em[i, t, path[t]]
            return s + end[path[-1]]

        import itertools

        log_z = torch.logsumexp(torch.stack([score(p) for p in
                                             itertools.product(range(K), repeat=n)]), 0)
        nlls.append(float((log_z - score(tags)).detach()))
    assert out.terms["task"].item() == pytest.approx(sum(nlls) / len(nlls), rel=1e-5)


def test_mmib_kl_is_the_mean_over_every_valid_element():
    model, batch, _ = _model("mmib", "ner", _ner_examples())
    out = model(batch)  # evaluation mode: z = mu, no sampling
    mask = batch["attention_mask"].bool()
    h_t = model.text(batch["input_ids"], batch["attention_mask"])
    vib = model.vib_text(h_t, mask)
    per_el = 0.5 * (vib.mu.double() ** 2 + vib.logvar.double().exp() - 1 - vib.logvar.double())
    by_hand = float(per_el[mask].sum().detach()) / (int(mask.sum()) * per_el.shape[-1])
    assert out.terms["kl_text"].item() == pytest.approx(by_hand, rel=1e-5)


def _groups(model, cfg):
    from mmie.training.module import MMIELightningModule

    module = MMIELightningModule(model, None, cfg, {})
    module._trainer = SimpleNamespace(estimated_stepping_batches=10, precision="32-true")
    opt = module.configure_optimizers()["optimizer"]
    return {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}


@pytest.mark.parametrize("kind", ["text", "mmib"])
def test_emission_projection_trains_at_the_crf_lr(kind):
    model, _, cfg = _model(kind, "ner", _ner_examples(), "trainer.crf_lr=0.05",
                           "trainer.head_lr=0.001", "trainer.lr=3e-5")
    lr = _groups(model, cfg)
    assert lr[id(model.head.proj.weight)] == lr[id(model.head.proj.bias)] == 0.05
    assert lr[id(model.crf.crf.transitions)] == 0.05
    assert lr[id(next(model.text.parameters()))] == 3e-5
    if kind == "mmib":
        assert lr[id(model.fusion.gate.weight)] == 0.001
    # the option restores the head learning rate for the emissions
    model2, _, cfg2 = _model(kind, "ner", _ner_examples(), "trainer.crf_lr=0.05",
                             "trainer.head_lr=0.001", "trainer.crf_lr_emissions=false")
    assert _groups(model2, cfg2)[id(model2.head.proj.weight)] == 0.001


def test_re_head_is_not_in_the_crf_group():
    model, _, cfg = _model("text", "re", _re_examples(), "trainer.crf_lr=0.05",
                           "trainer.head_lr=0.001")
    assert _groups(model, cfg)[id(model.head.proj.weight)] == 0.001
    assert math.isfinite(cfg.trainer.crf_lr)


@pytest.mark.parametrize("init", [0.0, -4.0])
def test_vib_init_logvar_sets_both_bottlenecks_sampling_noise(init):
    """``model.vib_init_logvar``: the log-variance heads start at that bias, so the training
    sample's noise around the mean has standard deviation ~exp(init / 2) (0 = the released
    code's unit variance)."""
    model, _, cfg = _model("mmib", "ner", _ner_examples(), f"model.vib_init_logvar={init}")
    assert cfg.model.mmib.vib_init_logvar == init
    for vib in (model.vib_text, model.vib_image):
        b = vib.logvar_head.bias
        # PyTorch's own bias init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), shifted by init
        assert float((b - init).abs().max()) <= 1 / vib.logvar_head.in_features ** 0.5
    vib = model.vib_text.train()
    x = torch.randn(64, 6, vib.logvar_head.in_features)
    out = vib(x)
    noise_std = (out.z - out.mu).std().item()
    expected = torch.exp(0.5 * out.logvar).mean().item()
    assert abs(noise_std - expected) < 0.15 * expected
    assert abs(out.logvar.mean().item() - init) < 1.0


def test_vib_init_mean_identity_starts_the_mean_as_the_block_output():
    """``model.vib_init_mean=identity``: both mean heads start as ``I`` with zero bias, so in
    eval mode ``z = mu`` equals the self-attention block's output; ``random`` does not."""
    model, _, cfg = _model("mmib", "ner", _ner_examples(), "model.vib_init_mean=identity")
    assert cfg.model.mmib.vib_init_mean == "identity"
    x = torch.randn(3, 5, model.vib_text.dim)
    mask = torch.ones(3, 5, dtype=torch.bool)
    for vib in (model.vib_text, model.vib_image):
        vib.eval()
        block = vib.mu_block(x, ~mask)
        torch.testing.assert_close(vib(x, mask).mu, block)
    rand, _, _ = _model("mmib", "ner", _ner_examples())
    rand.vib_text.eval()
    assert not torch.allclose(rand.vib_text(x, mask).mu, rand.vib_text.mu_block(x, ~mask),
                              atol=1e-3)
    with pytest.raises(Exception, match="vib_init_mean"):
        _model("mmib", "ner", _ner_examples(), "model.vib_init_mean=zeros")
