"""MG-VMoE (Zhou et al., 2025, arXiv 2502.15290): zero-shot multimodal entity typing and
relation extraction with a variational mixture-of-experts uni-backbone and multimodal
graph-based virtual adversarial training.

Composition (each part a module of :mod:`mmie.modules`)::

    text tokens ──text encoder──> H_t ─┐
                                       ├─ the SAME VMoE layer (experts = VIBs) ─> O_t, O_v
    image patches ──frozen vision──proj──> H_v ─┘
    cross-modal term:  symmetric InfoNCE(mean O_t, mean O_v)          (multi-grained: global)
    mention/pair:      marker vector attends over [O_v; O_t]          (region + token grain)
                       rep = [marker; attended] (head and tail for RE)
    graph VAT:         h = [mean O_v; mean O_t]; batch graph context; adversarial KL
    labels:            "name: description" -> text encoder -> mean pool; scored by dot product
                       after projection (LabelScorer); ranking hinge over the candidates

    loss = hinge + beta_aux * (beta_kl * (KL_text + KL_image) + gate term + beta_nce * NCE
                               + beta_vat * VAT)

Gate term: gate entropy for dense gating (the paper's code), the load-balancing term for
top-k gating. A post without a picture (``image_present`` False) is absent from every image
term: its image tokens are masked out of the KL, the gate term and the mention attention, it
is left out of InfoNCE, and its image half of the VAT vector is 0. Every term is returned in
every batch (0 when nothing contributes), so per-epoch means are over all examples.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mmie.encoders.regions import object_inputs
from mmie.encoders.vision import pool_regions
from mmie.models.base import ImageInput, ModelOutput
from mmie.models.baselines import _heads
from mmie.modules.alignment import info_nce
from mmie.modules.label_scorer import LabelScorer, ranking_hinge_loss
from mmie.modules.moe import VMoELayer
from mmie.modules.vat import GraphVAT


class MentionAttention(nn.Module):
    """The marker vector (query) attends over the concatenated image and text outputs."""

    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)

    def forward(self, query: torch.Tensor, memory: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        out, _ = self.attn(query.unsqueeze(1), memory, memory, key_padding_mask=~valid)
        return out.squeeze(1)


class MGVMoEModel(nn.Module):
    uses_image = True

    def __init__(self, cfg, task, text_encoder, vision_encoder):
        super().__init__()
        self.cfg = cfg
        self.task_name = task.name
        self.text = text_encoder
        self.vision = vision_encoder
        for p in self.vision.parameters():
            p.requires_grad_(False)
        H = text_encoder.hidden_size
        self.hidden = H
        self.dropout = nn.Dropout(cfg.dropout)
        self.image_in = ImageInput(vision_encoder.out_dim, H, use_regions=True, dropout=cfg.dropout,
                                   box_embedding=cfg.box_embedding)
        opt = cfg.mg_vmoe
        self.moe = VMoELayer(H, num_experts=opt.num_experts, gating=opt.gating, k=opt.top_k,
                             dropout=cfg.dropout, form=opt.moe_form)
        self.mention_attn = MentionAttention(H, _heads(H), cfg.dropout)
        n_mentions = 2 if task.name == "zs_re" else 1
        sample_dim = 2 * H * n_mentions
        proj = cfg.mg_vmoe.proj_dim if task.name == "zs_re" else min(cfg.mg_vmoe.proj_dim, 64)
        self.scorer = LabelScorer(sample_dim, H, proj_dim=proj)
        self.vat = GraphVAT(2 * H, mode=opt.vat) if opt.vat != "off" else None

    def train(self, mode: bool = True):
        super().train(mode)
        self.vision.eval()
        return self

    # ---- pieces -------------------------------------------------------------------------------
    def image_features(self, batch):
        if "image_global" in batch:
            return batch["image_global"], batch.get("image_regions"), batch["image_present"]
        with torch.no_grad():
            g, r = self.vision(batch["pixel_values"])
        return g, pool_regions(r.float(), self.cfg.region_grid), batch["image_present"]

    def encode_labels(self, batch) -> torch.Tensor:
        """Label names / descriptions -> mean-pooled text-encoder states ``[L, H]``."""
        h = self.text(batch["label_input_ids"], batch["label_attention_mask"])
        m = batch["label_attention_mask"].unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp_min(1.0)

    def represent(self, batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        t_mask = batch["attention_mask"].bool()
        h_t = self.dropout(self.text(batch["input_ids"], batch["attention_mask"]))
        g, r, present = self.image_features(batch)
        h_v, v_mask = self.image_in(g, r, present, **object_inputs(batch))
        out_t = self.moe(h_t, t_mask)
        # posts without a picture: the experts run on their image tokens, but the mask keeps
        # them out of every term (KL, gate term: 0 when no post has a picture)
        out_v = self.moe(h_v, v_mask)
        o_t, o_v = out_t.hidden, out_v.hidden
        mean_t = _masked_mean(o_t, t_mask)
        mean_v = _masked_mean(o_v, v_mask)  # 0 for a post without a picture
        terms: dict[str, torch.Tensor] = {"kl_text": out_t.kl, "kl_image": out_v.kl}
        if self.cfg.mg_vmoe.gating == "dense":
            terms["gate_entropy"] = out_t.gate_entropy + out_v.gate_entropy
        else:
            terms["load_balance"] = out_t.load_balance + out_v.load_balance
        keep = present.bool()
        if self.training:
            terms["nce"] = (info_nce(mean_t[keep], mean_v[keep], temperature=1.0,
                                     normalize=False)
                            if int(keep.sum()) >= 2 else mean_t.new_zeros((), dtype=torch.float32))
        memory = torch.cat([o_v, o_t], dim=1)
        valid = torch.cat([v_mask, t_mask], dim=1)
        reps = []
        for key in (("head_pos", "tail_pos") if self.task_name == "zs_re" else ("head_pos",)):
            idx = batch[key].view(-1, 1, 1).expand(-1, 1, o_t.shape[-1])
            marker = torch.gather(o_t, 1, idx).squeeze(1)
            reps += [marker, self.mention_attn(marker, memory, valid)]
        sample = torch.cat(reps, dim=-1)
        graph_h = torch.cat([mean_v, mean_t], dim=-1)
        return sample, graph_h, terms

    def term_weights(self) -> dict[str, float]:
        """The weight each auxiliary term enters the loss with (``beta_aux`` included)."""
        opt = self.cfg.mg_vmoe
        w = {"kl_text": opt.beta_kl, "kl_image": opt.beta_kl, "gate_entropy": 1.0,
             "load_balance": 1.0, "nce": opt.beta_nce, "vat": opt.beta_vat}
        return {k: opt.beta_aux * v for k, v in w.items()}

    def scores(self, batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        sample, graph_h, terms = self.represent(batch)
        labels = self.encode_labels(batch)
        return self.scorer(sample, labels), graph_h, terms

    # ---- loss and prediction ------------------------------------------------------------------
    def forward(self, batch) -> ModelOutput:
        s, graph_h, terms = self.scores(batch)
        task_loss = ranking_hinge_loss(s, batch["labels"], margin=self.cfg.mg_vmoe.margin)
        if self.vat is not None and self.training and graph_h is not None:
            terms["vat"] = (self.vat(graph_h)[0] if graph_h.shape[0] >= 2
                            else graph_h.new_zeros((), dtype=torch.float32))
        w = self.term_weights()
        loss = task_loss + sum(w[k] * v for k, v in terms.items())
        log = {"task": task_loss.detach(), **{k: v.detach() for k, v in terms.items()},
               "loss": loss.detach()}
        return ModelOutput(loss=loss, terms=log)

    @torch.no_grad()
    def predict(self, batch) -> list[dict[str, Any]]:
        s, _, _ = self.scores(batch)
        s = s.float()
        raw = s
        if "score_offset" in batch:  # calibrated stacking: a constant off the seen labels
            s = s - batch["score_offset"].to(s)
        prob = s.softmax(-1)
        cands = batch["candidates"]
        best = prob.argmax(-1).tolist()  # one transfer each, not one per element
        out = []
        for j, row, r in zip(best, prob.tolist(), raw.tolist()):
            out.append({"label": cands[j], "score": row[j], "scores": dict(zip(cands, row)),
                        "logits": dict(zip(cands, r))})
        return out


class LabelSimilarityModel(MGVMoEModel):
    """The text-only label-similarity baseline of the zero-shot tables (``model.type=label_sim``).

    The same text encoder, mention markers, label encoder, scorer and ranking loss as MG-VMoE,
    without the picture, the mixture of experts, the bottleneck and graph VAT: the sample is
    ``[marker; masked mean of the post]`` per mention (head and tail for RE), scored against the
    label names / descriptions. What MG-VMoE adds is measured against this row.
    """

    uses_image = False

    def __init__(self, cfg, task, text_encoder, vision_encoder=None):
        nn.Module.__init__(self)
        self.cfg = cfg
        self.task_name = task.name
        self.text = text_encoder
        self.vision = None
        H = text_encoder.hidden_size
        self.hidden = H
        self.dropout = nn.Dropout(cfg.dropout)
        n_mentions = 2 if task.name == "zs_re" else 1
        proj = cfg.mg_vmoe.proj_dim if task.name == "zs_re" else min(cfg.mg_vmoe.proj_dim, 64)
        self.scorer = LabelScorer(2 * H * n_mentions, H, proj_dim=proj)
        self.vat = None

    def train(self, mode: bool = True):
        return nn.Module.train(self, mode)

    def represent(self, batch):
        t_mask = batch["attention_mask"].bool()
        h_t = self.dropout(self.text(batch["input_ids"], batch["attention_mask"]))
        mean_t = _masked_mean(h_t, t_mask)
        reps = []
        for key in (("head_pos", "tail_pos") if self.task_name == "zs_re" else ("head_pos",)):
            idx = batch[key].view(-1, 1, 1).expand(-1, 1, h_t.shape[-1])
            reps += [torch.gather(h_t, 1, idx).squeeze(1), mean_t]
        return torch.cat(reps, dim=-1), None, {}


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)
