"""The rows every method is compared to: text only, and simple fusion without regularizers."""

from __future__ import annotations

import torch

from mmie.encoders.regions import object_inputs
from mmie.models.base import ImageInput, MMIEModel
from mmie.modules.fusion import ConcatFusion, CrossModalFusion


class TextOnlyModel(MMIEModel):
    """Text encoder + head (CRF for NER, head/tail marker classifier for RE). No image."""

    uses_image = False

    def represent(self, batch):
        h = self.text(batch["input_ids"], batch["attention_mask"])
        return self.dropout(h), {}


class SimpleFusionModel(MMIEModel):
    """Text encoder + image features, fused without any regularizer.

    ``model.fusion=concat`` (what the ``fusion_*`` recipes use): the projected global image vector is
    concatenated to every token and mapped back to the hidden size. ``model.fusion=cross``:
    the same cross-modal attention MMIB uses, over the global vector and the region grid.
    """

    def __init__(self, cfg, task, text_encoder, vision_encoder):
        super().__init__(cfg, task, text_encoder, vision_encoder)
        H = self.hidden
        D = vision_encoder.out_dim
        if cfg.fusion == "concat":
            self.fusion = ConcatFusion(H, D, init=cfg.fusion_init)
        else:
            self.image_in = ImageInput(D, H, use_regions=cfg.use_regions, dropout=cfg.dropout,
                                       box_embedding=cfg.box_embedding)
            self.fusion = CrossModalFusion(H, num_heads=_heads(H), dropout=cfg.dropout)

    def represent(self, batch):
        h = self.dropout(self.text(batch["input_ids"], batch["attention_mask"]))
        g, r, present = self.image_features(batch)
        if self.cfg.fusion == "concat":
            return self.fusion(h, g, present), {}
        img, img_mask = self.image_in(g, r, present, **object_inputs(batch))
        fused = self.fusion(h, batch["attention_mask"].bool(), img, img_mask)
        if isinstance(fused, tuple):
            fused = fused[0]
        return fused, {}


def _heads(hidden: int) -> int:
    for n in (8, 6, 4, 2, 1):
        if hidden % n == 0:
            return n
    return 1


__all__ = ["TextOnlyModel", "SimpleFusionModel", "_heads", "torch"]
