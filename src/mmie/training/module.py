"""Thin Lightning glue: the model computes loss and predictions; this drives optimisation,
logging and dev-set model selection, on CPU, one GPU or DDP alike."""

from __future__ import annotations

import random
import warnings
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from transformers import get_linear_schedule_with_warmup

from mmie.config import RunConfig


def gather_predictions(local: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """Collect ``(example_index, prediction)`` from every process, drop the duplicates that
    ``DistributedSampler`` pads with, and sort by index (identical on every rank)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, local)
        merged = [item for part in parts for item in part]
    else:
        merged = list(local)
    seen: dict[int, Any] = {}
    for idx, pred in merged:
        seen.setdefault(int(idx), pred)
    return sorted(seen.items())


def rng_state() -> dict[str, Any]:
    """Every random number generator training draws from: Python, NumPy, torch CPU, CUDA."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    # plain types and tensors only, so that checkpoints load with torch.load(weights_only=True)
    state = {"python": random.getstate(),
             "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                       float(gauss)),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def adamw(params, device: torch.device | str, precision: str = "32-true") -> torch.optim.AdamW:
    """AdamW; on CUDA the fused implementation (one kernel for the whole update instead of
    a few per parameter tensor). Not with fp16 (``16-*``): its GradScaler would leave
    unscaling to the fused step, after gradient clipping has seen the scaled gradients."""
    fused = torch.device(device).type == "cuda" and not str(precision).startswith("16")
    return torch.optim.AdamW(params, fused=True) if fused else torch.optim.AdamW(params)


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def lr_group(name: str, model: torch.nn.Module, crf_lr_emissions: bool = True) -> str:
    """Which learning rate a parameter trains at: ``encoder`` (the text encoder), ``crf``
    (the CRF and, with ``crf_lr_emissions``, the NER emission projection ``head.*`` feeding
    it, as HVPNeT / MMIB's code trains both at the CRF rate) or ``other``."""
    if name.startswith("text."):
        return "encoder"
    if name.startswith("crf."):
        return "crf"
    if crf_lr_emissions and name.startswith("head.") and hasattr(model, "crf"):
        return "crf"
    return "other"


def param_groups(model: torch.nn.Module, tc) -> list[dict[str, Any]]:
    """AdamW parameter groups: ``trainer.lr`` (encoder), ``trainer.crf_lr`` (CRF + emission
    projection), ``trainer.head_lr`` (everything else); no weight decay on biases and norms."""
    groups: dict[str, list] = {"encoder": [], "crf": [], "other": []}
    no_decay: dict[str, list] = {"encoder": [], "crf": [], "other": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        g = lr_group(name, model, tc.crf_lr_emissions)
        (no_decay if p.ndim < 2 or "norm" in name.lower() else groups)[g].append(p)
    lrs = {"encoder": tc.lr, "crf": tc.crf_lr, "other": tc.head_lr}
    params = []
    for g, lr in lrs.items():
        if groups[g]:
            params.append({"params": groups[g], "lr": lr, "weight_decay": tc.weight_decay})
        if no_decay[g]:
            params.append({"params": no_decay[g], "lr": lr, "weight_decay": 0.0})
    return params


class MMIELightningModule(L.LightningModule):
    """Training / evaluation glue around an mmie model.

    Exact resume: every checkpoint holds each rank's RNG states (so dropout and VIB sampling
    continue where they stopped) and the running sums behind the epoch's mean losses; they are
    put back at ``on_train_start``, just before the first resumed step. Without a checkpoint,
    each rank is seeded ``seed + rank`` at the start of training (identical initial weights
    come from the common seed used to build the model; DDP also broadcasts rank 0's).
    """

    def __init__(self, model: torch.nn.Module, task, cfg: RunConfig, eval_examples: dict[str, list]):
        super().__init__()
        self.model = model
        self.task = task
        self.cfg = cfg
        self.eval_examples = eval_examples
        self._outputs: list[tuple[int, Any]] = []
        self.last_terms: dict[str, float] = {}
        self.last_eval: dict[str, Any] = {}
        self._epoch_sums: dict[str, tuple[float, int]] = {}

    # ---- training -------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        out = self.model(batch)
        bs = batch["input_ids"].shape[0]
        for k, v in out.terms.items():
            self.log(f"train/{k}", v, on_step=False, on_epoch=True, batch_size=bs,
                     sync_dist=True)
        self.last_terms = {k: float(v) for k, v in out.terms.items()}
        for k, v in self.last_terms.items():
            tot, n = self._epoch_sums.get(k, (0.0, 0))
            self._epoch_sums[k] = (tot + v * bs, n + bs)
        return out.loss

    def on_train_epoch_start(self):
        self._epoch_sums = {}

    # ---- exact resume -----------------------------------------------------------------------
    _restored: dict[str, Any] | None = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store every rank's RNG states and this epoch's loss sums (a collective under DDP:
        Lightning builds the checkpoint on every rank, rank 0 writes it)."""
        mine = {"rng": rng_state(), "epoch_sums": dict(self._epoch_sums)}
        rank, world = _rank_world()
        if world > 1:
            parts: list[Any] = [None] * world
            dist.all_gather_object(parts, mine)
        else:
            parts = [mine]
        checkpoint["mmie_resume"] = {"world_size": world, "ranks": parts}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._restored = checkpoint.get("mmie_resume")
        fit = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {})
        self._loader_states = fit.get("combined_loader") or []

    def on_train_start(self) -> None:
        rank, world = _rank_world()
        saved = self._restored
        self._restored = None
        # Lightning 2.6 only hands the saved loader position back when the train loader is set
        # up after the restore, but ``estimated_stepping_batches`` (configure_optimizers) sets
        # it up before; so put it back here (the loader reads it lazily at the first batch)
        states, self._loader_states = getattr(self, "_loader_states", []), []
        loaders = [self.trainer.train_dataloader] if self.trainer.train_dataloader is not None else []
        for dl, st in zip([d for d in loaders if hasattr(d, "load_state_dict")], states):
            dl.load_state_dict(st)
        if saved is None:
            L.seed_everything(self.cfg.seed + rank, workers=True, verbose=False)
            return
        if saved["world_size"] != world:
            warnings.warn(f"checkpoint was written by {saved['world_size']} processes, resuming "
                          f"with {world}: the random streams are reseeded (resume not exact)")
            L.seed_everything(self.cfg.seed + rank + 7919 * int(self.global_step), verbose=False)
            return
        mine = saved["ranks"][rank]
        self._epoch_sums = dict(mine["epoch_sums"])
        set_rng_state(mine["rng"])

    def epoch_means(self) -> dict[str, float]:
        """This process's mean of every loss term over the epoch's training examples."""
        return {k: tot / max(n, 1) for k, (tot, n) in self._epoch_sums.items()}

    def epoch_weighted(self) -> dict[str, float]:
        """Each term's epoch mean times the weight it enters the loss with (``task`` weight
        1): what each term contributes to ``loss``, so the balance of the terms is visible."""
        weights = getattr(self.model, "term_weights", dict)()
        return {k: (1.0 if k == "task" else weights.get(k, 1.0)) * v
                for k, v in self.epoch_means().items() if k != "loss"}

    # ---- evaluation -----------------------------------------------------------------------
    def _eval_step(self, batch):
        preds = self.model.predict(batch)
        for idx, p in zip(batch["index"].tolist(), preds):
            self._outputs.append((idx, p))

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch)

    def test_step(self, batch, batch_idx):
        self._eval_step(batch)

    def on_validation_epoch_start(self):
        self._outputs = []

    on_test_epoch_start = on_validation_epoch_start

    def _finish(self, split: str, prefix: str):
        gathered = gather_predictions(self._outputs)
        self._outputs = []
        examples = self.eval_examples[split]
        if self.trainer.sanity_checking:
            return
        ex = [examples[i] for i, _ in gathered]
        preds = self.task.decode(ex, [p for _, p in gathered])
        scores = self.task.evaluate(ex, preds)
        self.last_eval = {"split": split, "scores": scores, "n": len(ex),
                          "examples": ex, "predictions": preds}
        for k in ("f1", "precision", "recall", "accuracy", "strict_f1"):
            if isinstance(scores.get(k), (int, float)):
                # identical on every rank after the gather, so no reduction is needed
                self.log(f"{prefix}/{k}", float(scores[k]), sync_dist=False, rank_zero_only=False)

    def on_validation_epoch_end(self):
        self._finish("dev", "dev")

    def on_test_epoch_end(self):
        self._finish("test", "test")

    # ---- optimisation ---------------------------------------------------------------------
    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None,
                                    gradient_clip_algorithm=None):
        """Clip a fused optimizer's gradients here: Lightning's mixed-precision plugin refuses
        any fused optimizer (it could unscale fp16 gradients itself), although with bf16 or
        fp32 there is no scaler and the gradients are the true ones (:func:`adamw` never
        fuses under fp16). Same clipping as Lightning's (over the optimizer's parameters)."""
        opt = getattr(optimizer, "optimizer", optimizer)
        if gradient_clip_val and opt.defaults.get("fused"):
            params = [p for g in opt.param_groups for p in g["params"]]
            if str(getattr(gradient_clip_algorithm, "value", gradient_clip_algorithm)) == "value":
                torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        tc = self.cfg.trainer
        opt = adamw(param_groups(self.model, tc), self.device, self.trainer.precision)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = get_linear_schedule_with_warmup(opt, int(tc.warmup_ratio * total), total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
