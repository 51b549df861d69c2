"""The shape every supervised mmie model shares.

A model is an ``nn.Module`` that computes its own loss (``forward``) and its own predictions
(``predict``); Lightning only drives it. Subclasses implement :meth:`represent`, which maps a
batch to token representations plus named regularizer terms; this class adds the task head
(CRF tagging for NER, entity-pair classification for RE), the weighted loss and decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mmie.config import ModelConfig


@dataclass
class ModelOutput:
    loss: torch.Tensor
    #: every loss term, unweighted, detached (for logging): task, kl_text, align, ...
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


class ImageInput(nn.Module):
    """Turns a batch's image part into projected image tokens ``[B, 1 + R + K, H]``.

    Training batches carry cached features (``image_global`` ``[B, D]``, ``image_regions``
    ``[B, R, D]``); prediction batches may carry ``pixel_values`` instead, encoded here by the
    frozen vision encoder. ``image_present`` ``[B]`` marks posts that have an image; the others
    get a fully masked image (no attention paid to it).

    Tokens: the global vector (type 0), the ``R`` grid regions (type 1, row-major cells of a
    square grid) and, when the batch has detected objects (``objects`` ``[B, K, D]``,
    ``object_boxes`` ``[B, K, 4]``, ``object_mask`` ``[B, K]``), the object crops (projected
    like the global vector, type 1; padding masked). With ``box_embedding`` every token gets
    ``Linear(5, H)([x0, y0, x1, y1, area])`` of its normalised box added (the global token:
    the full picture ``[0, 0, 1, 1, 1]``), so attention can tell left from right; without it
    the regions are an unordered set.
    """

    def __init__(self, vision_dim: int, hidden: int, use_regions: bool = True,
                 dropout: float = 0.1, box_embedding: bool = False):
        super().__init__()
        self.use_regions = use_regions
        self.proj_global = nn.Sequential(nn.Linear(vision_dim, hidden), nn.Dropout(dropout))
        self.proj_regions = nn.Sequential(nn.Linear(vision_dim, hidden), nn.Dropout(dropout))
        self.type_embed = nn.Parameter(torch.zeros(2, hidden))
        self.box_embed = nn.Linear(5, hidden) if box_embedding else None

    def _box(self, boxes: torch.Tensor) -> torch.Tensor | float:
        if self.box_embed is None:
            return 0.0
        from mmie.encoders.regions import box_features

        return self.box_embed(box_features(boxes.to(self.box_embed.weight.dtype)))

    def forward(self, glob: torch.Tensor, regions: torch.Tensor | None,
                present: torch.Tensor, objects: torch.Tensor | None = None,
                object_boxes: torch.Tensor | None = None,
                object_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        from mmie.encoders.regions import FULL_BOX, boxes_for_regions

        full = glob.new_tensor(FULL_BOX)
        g = self.proj_global(glob).unsqueeze(1) + self.type_embed[0] + self._box(full)
        toks = [g]
        B = glob.shape[0]
        masks = [torch.ones(B, 1, dtype=torch.bool, device=glob.device)]
        if self.use_regions and regions is not None and regions.shape[1] > 0:
            r = self.proj_regions(regions) + self.type_embed[1]
            if self.box_embed is not None:
                r = r + self._box(boxes_for_regions(regions.shape[1], device=regions.device))
            toks.append(r)
            masks.append(torch.ones(B, regions.shape[1], dtype=torch.bool, device=glob.device))
        if self.use_regions and objects is not None and objects.shape[1] > 0:
            o = self.proj_global(objects) + self.type_embed[1]
            if self.box_embed is not None:
                o = o + self._box(object_boxes)
            toks.append(o)
            masks.append(object_mask.bool())
        tokens = torch.cat(toks, dim=1)
        mask = present.bool().unsqueeze(1) & torch.cat(masks, dim=1)
        return tokens, mask


class MMIEModel(nn.Module):
    """Base class: text encoder (+ optional frozen vision encoder) -> represent -> head."""

    uses_image: bool = True

    def __init__(self, cfg: ModelConfig, task, text_encoder, vision_encoder=None):
        super().__init__()
        self.cfg = cfg
        self.task_name = task.name
        self.num_labels = len(task.labels)
        self.text = text_encoder
        self.vision = vision_encoder if self.uses_image else None
        if self.vision is not None:
            for p in self.vision.parameters():
                p.requires_grad_(False)
        H = text_encoder.hidden_size
        self.hidden = H
        self.dropout = nn.Dropout(cfg.dropout)
        if task.name == "ner":
            from mmie.modules.crf import CRF, allowed_transitions_bio
            from mmie.modules.heads import TokenTaggingHead

            self.head = TokenTaggingHead(H, self.num_labels, cfg.dropout)
            constraints = allowed_transitions_bio(task.labels) if cfg.crf_constraints else None
            self.crf = CRF(self.num_labels, constraints=constraints)
        elif task.name == "re":
            from mmie.modules.heads import PairClassifierHead

            self.head = PairClassifierHead(H, self.num_labels, cfg.dropout)
        else:  # pragma: no cover - guarded by config validation
            raise ValueError(f"supervised model for task {task.name!r} not available")

    # ---- image features -----------------------------------------------------------------
    def image_features(self, batch: dict[str, torch.Tensor]):
        """``(global [B, D], regions [B, R, D], present [B])`` from cached features or pixels."""
        if "image_global" in batch:
            return batch["image_global"], batch.get("image_regions"), batch["image_present"]
        B = batch["input_ids"].shape[0]
        dev = batch["input_ids"].device
        if "pixel_values" in batch and self.vision is not None:
            self.vision.eval()
            from mmie.encoders.vision import pool_regions

            with torch.no_grad():
                g, r = self.vision(batch["pixel_values"])
            return g, pool_regions(r.float(), self.cfg.region_grid), batch["image_present"]
        D = self.vision.out_dim if self.vision is not None else 1
        R = self.vision.num_regions if self.vision is not None else 1
        return (torch.zeros(B, D, device=dev), torch.zeros(B, R, D, device=dev),
                torch.zeros(B, dtype=torch.bool, device=dev))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.vision is not None:
            self.vision.eval()  # frozen: BatchNorm statistics and dropout stay fixed
        return self

    # ---- to implement ---------------------------------------------------------------------
    def represent(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Token representations ``[B, T, H]`` and unweighted regularizer terms."""
        raise NotImplementedError

    def term_weights(self) -> dict[str, float]:
        return {}

    # ---- heads ----------------------------------------------------------------------------
    def _word_emissions(self, hidden, batch):
        idx = batch["word_index"].unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        words = torch.gather(hidden, 1, idx)
        return self.head(words)

    def forward(self, batch: dict[str, torch.Tensor]) -> ModelOutput:
        hidden, terms = self.represent(batch)
        if self.task_name == "ner":
            em = self._word_emissions(hidden, batch)
            task_loss = self.crf.nll(em, batch["tags"], batch["word_mask"].bool())
        else:
            logits = self.head(hidden, batch["head_pos"], batch["tail_pos"])
            # summed over the batch by default, as MMIB's released code (model.re_loss_reduction)
            task_loss = nn.functional.cross_entropy(logits.float(), batch["labels"],
                                                    reduction=self.cfg.re_loss_reduction)
        loss = task_loss
        weights = self.term_weights()
        for name, value in terms.items():
            loss = loss + weights.get(name, 1.0) * value
        log = {"task": task_loss.detach(), **{k: v.detach() for k, v in terms.items()}}
        log["loss"] = loss.detach()
        return ModelOutput(loss=loss, terms=log)

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        """Per example: NER ``{"tags": [...], "scores": [...]}``; RE ``{"label", "score"}``."""
        hidden, _ = self.represent(batch)
        if self.task_name == "ner":
            em = self._word_emissions(hidden, batch)
            mask = batch["word_mask"].bool()
            # paths and the marginal of each decoded tag, on the device; one transfer per field
            paths, lengths, scores = self.crf.decode_with_scores(em, mask)
            return [{"tags": p[:n], "scores": s[:n]} for p, s, n in
                    zip(paths.tolist(), scores.tolist(), lengths.tolist())]
        logits = self.head(hidden, batch["head_pos"], batch["tail_pos"])
        prob = logits.float().softmax(-1)
        score, label = prob.max(-1)
        return [{"label": l, "score": s, "probs": p}
                for l, s, p in zip(label.tolist(), score.tolist(), prob.tolist())]
