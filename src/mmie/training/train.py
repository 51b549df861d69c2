"""``mmie train``: one function from a resolved config to a saved, evaluated model.

Model selection uses the dev split only; the test split is evaluated once, with the selected
checkpoint, after training. The run directory receives::

    config.yaml          the fully resolved configuration (every default written out)
    metrics.jsonl        one row per epoch (train loss terms, dev metrics, lr, seconds)
    steps.jsonl          loss terms every few optimizer steps
    checkpoints/         best.ckpt (dev) and last.ckpt (for --resume)
    model/               save_pretrained directory of the selected model
    eval_dev.json, eval_test.json, predictions_test.jsonl, summary.json
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.strategies import DDPStrategy
from transformers import BertConfig, ResNetConfig

from mmie import registry
from mmie.config import RunConfig
from mmie.encoders.text import TextEncoder
from mmie.encoders.vision import build_vision_encoder
from mmie.errors import ConfigError, MMIEError
from mmie.logs import quiet_lightning_warnings
from mmie.models.factory import build_model, save_pretrained
from mmie.training.callbacks import DDPInfo, EvalTimer, JsonlLogger
from mmie.training.data import MMIEDataModule
from mmie.training.module import MMIELightningModule

log = logging.getLogger(__name__)


TINY_TEXT = "random:tiny-bert"
TINY_VISION = "random:tiny-resnet"


def build_encoders(cfg: RunConfig, uses_image: bool):
    """The configured encoders. ``random:tiny-bert`` / ``random:tiny-resnet`` build tiny
    randomly initialised BERT / ResNet encoders (tests, smoke runs; no download)."""
    if cfg.model.text_encoder == TINY_TEXT:
        text = TextEncoder("minilm", config=BertConfig(
            vocab_size=30530, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=512))
        text.name = TINY_TEXT
    else:
        text = TextEncoder(cfg.model.text_encoder)
    vision = None
    if uses_image:
        if cfg.model.vision_encoder == TINY_VISION:
            vision = build_vision_encoder(TINY_VISION, config=ResNetConfig(
                embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_channels=3),
                pretrained=False)
        else:
            vision = build_vision_encoder(cfg.model.vision_encoder)
    return text, vision


def _cuda_training(accelerator: str) -> bool:
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def resolve_precision(precision: str, accelerator: str, strategy: str = "auto") -> str:
    """``auto`` -> ``bf16-mixed`` where training runs on a CUDA GPU with native bfloat16
    (Ampere or newer; emulated bf16 on older cards is slow), else ``32-true``; any other value
    is returned unchanged. Fork-based strategies (``ddp_fork``, ``ddp_notebook``) get
    ``32-true``: asking the GPU for its capability would initialise CUDA in the parent, which
    forked workers cannot inherit (set ``trainer.precision`` explicitly there)."""
    if precision != "auto":
        return precision
    on_gpu = _cuda_training(accelerator)
    if not on_gpu or "fork" in strategy or "notebook" in strategy:
        return "32-true"
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch without the argument
        native = torch.cuda.is_bf16_supported()
    return "bf16-mixed" if native else "32-true"


def model_uses_image(cfg: RunConfig) -> bool:
    return registry.model_type(cfg.model.type).uses_image


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)


def eval_payload(module, cfg: RunConfig, split: str, task) -> dict[str, Any]:
    ev = module.last_eval
    return {"split": split, "data": cfg.data.name, "n": ev["n"], "seed": cfg.seed,
            "text_encoder": cfg.model.text_encoder,
            "vision_encoder": cfg.model.vision_encoder if model_uses_image(cfg) else None,
            "image_policy": cfg.data.image_policy if model_uses_image(cfg) else None,
            **ev["scores"]}


def launch_rank() -> int:
    """This process's global rank as set by Lightning's DDP launcher (0 before launching)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0)


def build_strategy(tc) -> Any:
    """``trainer.strategy`` for Lightning: ``ddp`` becomes a :class:`DDPStrategy` carrying
    ``trainer.static_graph`` and ``trainer.bucket_cap_mb`` (torch's default bucket size when
    None); any other value is passed through."""
    if tc.strategy != "ddp":
        return tc.strategy
    kwargs: dict[str, Any] = {"static_graph": tc.static_graph}
    if tc.bucket_cap_mb is not None:
        kwargs["bucket_cap_mb"] = tc.bucket_cap_mb
    return DDPStrategy(**kwargs)


LR_KEYS = ("lr", "head_lr", "crf_lr")


def scale_learning_rates(tc, world_size: int) -> dict[str, Any] | None:
    """With ``trainer.lr_scale_with_world_size``: multiply every learning rate by the world
    size in place and clear the flag (so the saved config.yaml holds the rates the run used
    and re-running it does not scale twice); returns what summary.json records, else None."""
    if not tc.lr_scale_with_world_size:
        return None
    base = {k: getattr(tc, k) for k in LR_KEYS}
    for k in LR_KEYS:
        setattr(tc, k, base[k] * world_size)
    tc.lr_scale_with_world_size = False
    return {"world_size": world_size, "base": base,
            "scaled": {k: getattr(tc, k) for k in LR_KEYS}}


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """A training checkpoint read with ``torch.load(weights_only=True)``: tensors, numbers,
    strings and lists / dicts / tuples of them only. Anything else (a pickled object, which
    could run code when loaded) is refused, and so is an unreadable file; both with an
    :class:`~mmie.errors.MMIEError` naming the file and what to do."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise MMIEError(f"{path}: refused to load this checkpoint: it holds Python objects "
                            "other than tensors and plain values, and loading them could run "
                            "code. mmie checkpoints never do; delete the file (or the run's "
                            "checkpoints/ folder) to train from scratch") from None
        raise MMIEError(f"{path}: not a readable checkpoint ({e}); it may be truncated or "
                        "corrupt: delete it to train from scratch") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise MMIEError(f"{path}: not a readable checkpoint ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else 'empty'}); it may be "
                        "truncated or corrupt: delete it to train from scratch") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise MMIEError(f"{path}: not an mmie training checkpoint (no state_dict); delete it "
                        "to train from scratch")
    return ckpt


def check_output_dir(out: Path) -> None:
    """Create ``out`` (and its parents) and make sure files can be written in it, before any
    work: a :class:`~mmie.errors.ConfigError` names the directory and the reason."""
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"output_dir {out}: {parent} is a file, not a directory; choose "
                              "another --output-dir")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise ConfigError(f"output_dir {out}: cannot write there ({e.strerror or e}); choose "
                          "a writable --output-dir") from None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to ``<name>.tmp`` in the same directory, fsync'ed, then
    ``os.replace``'d: a crash leaves the previous complete file or the new one, never a
    half-written checkpoint. Reading uses :func:`load_checkpoint` (``weights_only=True``)."""

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return load_checkpoint(path)

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def resume_checkpoint(ckpt_dir: Path) -> Path | None:
    """The most advanced of ``last.ckpt`` and ``step.ckpt`` (by global step; ``last`` wins a
    tie, as it is written after the epoch's validation). Leftover ``*.tmp`` files of an
    interrupted save are removed."""
    for tmp in ckpt_dir.glob("*.tmp"):
        tmp.unlink(missing_ok=True)
    best: tuple[int, int, Path] | None = None
    for pref, name in ((1, "last.ckpt"), (0, "step.ckpt")):
        path = ckpt_dir / name
        if not path.exists():
            continue
        step = int(load_checkpoint(path, mmap=True).get("global_step", -1))
        if best is None or (step, pref) > best[:2]:
            best = (step, pref, path)
    return best[2] if best else None


def train(cfg: RunConfig, *, resume: bool = False,
          callbacks: list | None = None) -> dict[str, Any]:
    """Train, select on dev, test, save; returns ``summary.json``'s contents. ``callbacks``
    are added to the Lightning trainer's (e.g. :class:`~mmie.training.progress.EpochLines`
    for the demo's one line per epoch)."""
    t0 = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out = Path(cfg.output_dir)
    check_output_dir(out)
    # read the checkpoint to resume from before any other work (a bad one fails at once)
    start = resume_checkpoint(out / "checkpoints") if resume else None
    cfg.trainer.precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator,
                                              str(cfg.trainer.strategy))
    if "16" in cfg.trainer.precision and not _cuda_training(cfg.trainer.accelerator):
        log.warning("trainer.precision=%s without a GPU: half precision on the CPU is slow "
                    "(a config.yaml saved by a GPU run pins it); use trainer.precision=auto",
                    cfg.trainer.precision)
    if launch_rank() == 0:  # DDP workers re-run this function: only rank 0 writes files
        if not resume:
            for stale in ("metrics.jsonl", "steps.jsonl"):
                (out / stale).unlink(missing_ok=True)
        cfg.save(out / "config.yaml")

    text, vision = build_encoders(cfg, model_uses_image(cfg))
    # every epoch (and dev evaluation) sees the same posts: tokenise each once
    data = MMIEDataModule(cfg, text, vision, count_truncation=True, cache_tokens=True,
                          pin_memory=_cuda_training(cfg.trainer.accelerator))
    data.setup("fit")
    task, report = data.task, data.report
    log.info("data: %s", report)

    model = build_model(cfg.model, task, text, vision)
    tc = cfg.trainer

    module = MMIELightningModule(model, task, cfg,
                                 {"dev": data.examples["dev"], "test": data.examples["test"]})
    monitor = f"dev/{task.monitor}"
    ckpt = ModelCheckpoint(dirpath=out / "checkpoints", filename="best", monitor=monitor,
                           mode="max", save_top_k=1, save_last=True,
                           enable_version_counter=False)
    timer, ddp_info = EvalTimer(), DDPInfo()
    callbacks = [ckpt, EarlyStopping(monitor=monitor, mode="max", patience=tc.patience),
                 JsonlLogger(out, every_n_steps=tc.log_every_n_steps), timer, ddp_info,
                 *(callbacks or [])]
    if tc.checkpoint_every_n_steps:
        callbacks.append(ModelCheckpoint(dirpath=out / "checkpoints", filename="step",
                                         every_n_train_steps=tc.checkpoint_every_n_steps,
                                         save_top_k=1, enable_version_counter=False))
    trainer = L.Trainer(
        max_epochs=tc.max_epochs, accelerator=tc.accelerator, devices=tc.devices,
        strategy=build_strategy(tc), num_nodes=tc.num_nodes, precision=tc.precision,
        accumulate_grad_batches=tc.grad_accum, gradient_clip_val=tc.grad_clip or None,
        deterministic=tc.deterministic, callbacks=callbacks, logger=False,
        plugins=[AtomicCheckpointIO()], use_distributed_sampler=False,
        enable_progress_bar=tc.progress, enable_model_summary=False,
        num_sanity_val_steps=0, log_every_n_steps=tc.log_every_n_steps,
        default_root_dir=str(out))
    lr_scale = scale_learning_rates(tc, trainer.world_size)
    if lr_scale is not None and launch_rank() == 0:
        cfg.save(out / "config.yaml")  # the rates this run trains with
    last = out / "checkpoints" / "last.ckpt"
    if resume and start is None:
        log.warning("--resume: no checkpoint in %s; training from scratch", out / "checkpoints")
    t_fit = time.perf_counter()
    with quiet_lightning_warnings():  # notices about mmie's deliberate set-up (see mmie.logs)
        trainer.fit(module, datamodule=data, ckpt_path=str(start) if start else None)
    train_seconds = time.perf_counter() - t0
    fit_seconds = time.perf_counter() - t_fit
    fit_eval_seconds = timer.seconds

    best_path = ckpt.best_model_path or str(last)
    state = load_checkpoint(best_path)["state_dict"]
    module.load_state_dict(state)
    best_epoch = _best_epoch(out / "metrics.jsonl", monitor)

    t_eval = time.perf_counter()
    with quiet_lightning_warnings():  # notices about mmie's deliberate set-up (see mmie.logs)
        trainer.validate(module, datamodule=data, verbose=False)
        calibration = None
        if cfg.model.mg_vmoe.calibrated_stacking:  # the constant is chosen on validation, applied
            calibration = task.calibrate(module.last_eval["examples"],
                                         module.last_eval["predictions"])
            trainer.validate(module, datamodule=data, verbose=False)
        dev_eval = eval_payload(module, cfg, "dev", task)
        if calibration is not None:
            dev_eval["calibration"] = calibration
        trainer.test(module, datamodule=data, verbose=False)
        test_eval = eval_payload(module, cfg, "test", task)
        if calibration is not None:
            test_eval["calibration_gamma"] = calibration["gamma"]
    final_eval_seconds = time.perf_counter() - t_eval
    summary: dict[str, Any] = {}
    if trainer.is_global_zero:
        ev = module.last_eval
        with open(out / "predictions_test.jsonl.tmp", "w", encoding="utf-8") as f:
            for ex, p in zip(ev["examples"], ev["predictions"]):
                f.write(json.dumps(task.record(ex, p), ensure_ascii=False, default=_span) + "\n")
        (out / "predictions_test.jsonl.tmp").replace(out / "predictions_test.jsonl")
        write_json(out / "eval_dev.json", dev_eval)
        write_json(out / "eval_test.json", test_eval)
        save_pretrained(model, task, cfg, out / "model")
        summary = {"output_dir": str(out), "model_dir": str(out / "model"),
                   "data": cfg.data.name, "task": task.name, "model": cfg.model.type,
                   "seed": cfg.seed, "epochs_run": trainer.current_epoch,
                   "best_epoch": best_epoch, "selected_on": monitor,
                   "dev": _headline(dev_eval), "test": _headline(test_eval),
                   "train_seconds": round(train_seconds, 2),
                   # train_seconds split up: set-up before fit, the training loop alone, the
                   # dev evaluations inside fit, and the final dev + test evaluation
                   "timing": {"setup_seconds": round(t_fit - t0, 3),
                              "train_loop_seconds": round(fit_seconds - fit_eval_seconds, 3),
                              "fit_eval_seconds": round(fit_eval_seconds, 3),
                              "final_eval_seconds": round(final_eval_seconds, 3),
                              "optimizer_steps": int(trainer.global_step),
                              "train_posts": len(data.examples["train"]),
                              "world_size": int(trainer.world_size)},
                   "lr_scale": lr_scale, "ddp": ddp_info.info,
                   "total_seconds": round(time.perf_counter() - t0, 2),
                   "device": _device_name(trainer), "report": report}
        write_json(out / "summary.json", summary)
    return summary


def _span(o: Any) -> Any:
    return o.to_dict() if hasattr(o, "to_dict") else str(o)


def _headline(ev: dict[str, Any]) -> dict[str, Any]:
    keys = ("precision", "recall", "f1", "strict_f1", "accuracy", "macro_p", "macro_r", "macro_f1",
            "unseen_accuracy", "seen_accuracy", "harmonic_mean")
    return {k: ev[k] for k in keys if k in ev}


def _best_epoch(path: Path, monitor: str) -> int | None:
    if not path.exists():
        return None
    rows = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    rows = [r for r in rows if r.get(monitor) is not None]
    return max(rows, key=lambda r: r[monitor])["epoch"] if rows else None


def _device_name(trainer) -> str:
    """What trained the model (Lightning moves the module back to the CPU after fit)."""
    dev = trainer.strategy.root_device
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} x{trainer.world_size}"
    return f"{dev.type} x{trainer.world_size} ({torch.get_num_threads()} threads)"
