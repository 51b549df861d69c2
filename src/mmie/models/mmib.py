"""MMIB (Cui et al., TASLP 2024, arXiv 2304.02328): multimodal NER and RE with a refinement
regularizer (a variational information bottleneck per modality) and an alignment regularizer
(a mutual-information discriminator between paired text and image representations).

Composition (each part a module of :mod:`mmie.modules`)::

    words ──text encoder──> H_t ──VIB_t──> Z_t ─┐
                                                ├─ cross-modal fusion ─> head (CRF / pair)
    image ──frozen vision──> [global; regions] ──proj──> H_v ──VIB_v──> Z_v ─┘
    alignment:  MI discriminator on (Z_t[CLS], Z_v[global])

    loss = task + beta_align * align + beta_kl_text * KL_t + beta_kl_image * KL_v

Each regularizer is switched and weighted from the config (``model.refinement``,
``model.alignment``, ``model.beta_*``), so the paper's ablations are config changes:
w/o refinement (no VIB: Z = H, no KL), w/o alignment, w/o both; text-only is
``model.type=text``. Choices where the paper leaves room are listed in ``docs/mmib.md``.
"""

from __future__ import annotations

import torch

from mmie.encoders.regions import object_inputs
from mmie.models.base import ImageInput, MMIEModel
from mmie.models.baselines import _heads
from mmie.modules.alignment import MIDiscriminator, info_nce
from mmie.modules.fusion import CrossModalFusion
from mmie.modules.vib import VariationalEncoder, gaussian_kl


class MMIBModel(MMIEModel):
    def __init__(self, cfg, task, text_encoder, vision_encoder):
        super().__init__(cfg, task, text_encoder, vision_encoder)
        H = self.hidden
        self.image_in = ImageInput(vision_encoder.out_dim, H, use_regions=cfg.use_regions,
                                   dropout=cfg.dropout, box_embedding=cfg.box_embedding)
        opt = cfg.mmib
        if opt.refinement:
            vib = dict(num_heads=_heads(H), attention=opt.vib_attention, dropout=cfg.dropout,
                       init_logvar=opt.vib_init_logvar, init_mean=opt.vib_init_mean)
            self.vib_text = VariationalEncoder(H, H, **vib)
            self.vib_image = VariationalEncoder(H, H, **vib)
        if cfg.mmib.alignment and cfg.mmib.alignment_estimator == "discriminator":
            self.discriminator = MIDiscriminator(H, H, reduction=cfg.mmib.alignment_reduction,
                                                 shifts=cfg.mmib.alignment_shifts)
        self.fusion = CrossModalFusion(H, num_heads=_heads(H), dropout=cfg.dropout)

    def term_weights(self):
        return {"align": self.cfg.mmib.beta_align, "kl_text": self.cfg.mmib.beta_kl_text,
                "kl_image": self.cfg.mmib.beta_kl_image}

    def represent(self, batch):
        cfg = self.cfg
        text_mask = batch["attention_mask"].bool()
        h_t = self.dropout(self.text(batch["input_ids"], batch["attention_mask"]))
        g, r, present = self.image_features(batch)
        h_v, img_mask = self.image_in(g, r, present, **object_inputs(batch))
        terms: dict[str, torch.Tensor] = {}
        if cfg.mmib.refinement:
            out_t = self.vib_text(h_t, text_mask)
            # posts without an image: the image bottleneck still runs (masked keys are
            # replaced by the all-visible mask inside it), but its KL is not counted
            vib_mask = img_mask | ~present.bool().unsqueeze(1)
            out_v = self.vib_image(h_v, vib_mask)
            z_t, z_v = out_t.z, out_v.z
            terms["kl_text"] = gaussian_kl(out_t.mu, out_t.logvar, mask=text_mask)
            # img_mask is False for every token of a post without a picture: exactly 0 when
            # no post of the batch has one
            terms["kl_image"] = gaussian_kl(out_v.mu, out_v.logvar, mask=img_mask)
        else:
            z_t, z_v = h_t, h_v
        if cfg.mmib.alignment and self.training:
            keep = present.bool()
            if int(keep.sum()) >= 2:
                t_vec, v_vec = z_t[keep, 0], z_v[keep, 0]
                if cfg.mmib.alignment_estimator == "discriminator":
                    out = self.discriminator(t_vec, v_vec)
                    terms["align"] = out[0] if isinstance(out, tuple) else out
                else:
                    terms["align"] = info_nce(t_vec, v_vec)
            else:  # fewer than two pictures: no pair to align (0, still in the log), kept
                # connected to the discriminator so DDP sees every parameter used
                zero = z_t.new_zeros((), dtype=torch.float32)
                if cfg.mmib.alignment_estimator == "discriminator":
                    zero = zero + 0.0 * sum(p.sum() for p in self.discriminator.parameters())
                terms["align"] = zero
        fused = self.fusion(z_t, text_mask, z_v, img_mask)
        if isinstance(fused, tuple):
            fused = fused[0]
        return fused, terms
