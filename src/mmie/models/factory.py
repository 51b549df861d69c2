"""Build a model from its config, and save / load it in the ``save_pretrained`` layout.

A model directory holds::

    config.json          mmie version, model + data settings, task and labels, encoder names
    model.safetensors    every weight (text encoder, frozen vision encoder, heads)
    text_encoder/        tokenizer files and the text encoder's transformers config
    vision_encoder.json  how to rebuild the vision encoder and preprocess images

Loading never downloads: architectures are rebuilt from the saved configs and the weights
come from ``model.safetensors``.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

import mmie
from mmie import registry
from mmie.config import ModelConfig, RunConfig, config_from_dict
from mmie.encoders.text import TextEncoder
from mmie.encoders.vision import VisionEncoder
from mmie.errors import MMIEError


def build_model(cfg: ModelConfig, task, text_encoder, vision_encoder=None):
    """The model of ``cfg.type`` (:data:`mmie.registry.MODEL_TYPES`); types that read no
    image get no vision encoder."""
    spec = registry.model_type(cfg.type)
    return registry.model_class(cfg.type)(cfg, task, text_encoder,
                                          vision_encoder if spec.uses_image else None)


def save_pretrained(model, task, run_cfg: RunConfig, directory: str | Path,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write a self-contained model directory (atomically: a temporary folder, then rename)."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    meta = {"mmie_version": mmie.__version__, "format": 1,
            "run": run_cfg.to_dict(), "task": task.to_dict(),
            "text_encoder": model.text.name,
            "vision_encoder": getattr(model.vision, "name", None) if model.vision is not None else None}
    if extra:
        meta.update(extra)
    (tmp / "config.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    model.text.save_pretrained(tmp / "text_encoder")
    if model.vision is not None:
        model.vision.save_config(tmp / "vision_encoder.json")
    save_model(model, str(tmp / "model.safetensors"))
    if directory.exists():
        old = directory.with_name(directory.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        directory.rename(old)
        tmp.rename(directory)
        shutil.rmtree(old)
    else:
        tmp.rename(directory)
    return directory


def load_pretrained(directory: str | Path, map_location: str | torch.device = "cpu"):
    """``(model, task, run_config, meta)`` from a directory written by :func:`save_pretrained`."""
    directory = Path(directory)
    cfg_path = directory / "config.json"
    if not cfg_path.exists():
        raise MMIEError(f"{directory} is not an mmie model directory (no config.json); "
                        "pass the 'model' folder inside a run directory")
    meta = json.loads(cfg_path.read_text(encoding="utf-8"))
    run_cfg = config_from_dict(meta["run"])
    if "box_embedding" not in (meta["run"].get("model") or {}):
        run_cfg.model.box_embedding = False  # saved before box embeddings existed
    task = registry.task_from_dict(meta["task"])
    with _no_weight_init():  # every parameter comes from model.safetensors just below
        text = TextEncoder.from_saved(directory / "text_encoder")
        vision = None
        if (directory / "vision_encoder.json").exists():
            vision = VisionEncoder.from_config_file(directory / "vision_encoder.json")
        model = build_model(run_cfg.model, task, text, vision)
    load_model(model, str(directory / "model.safetensors"), strict=True, device=str(map_location))
    model.eval()
    return model, task, run_cfg, meta


@contextmanager
def _no_weight_init():
    """Build modules without their random initialisation, as transformers' ``from_pretrained``
    does (its ``no_init_weights``: torch's ``nn.init`` functions and ``init_weights`` become
    no-ops), when the strict load that follows overwrites every parameter and persistent
    buffer anyway. Saves the BERT encoder's initialisation (about 0.2 s of a CLI start-up).
    Non-persistent buffers (position ids) are computed, not initialised, so they are kept."""
    try:
        from transformers.initialization import no_init_weights  # transformers >= 5
    except ImportError:  # pragma: no cover - transformers 4.x
        from transformers.modeling_utils import no_init_weights
    with no_init_weights():
        yield
