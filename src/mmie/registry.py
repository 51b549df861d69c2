"""The one list of tasks and model types.

Config validation (:meth:`mmie.config.RunConfig.validate`), the model factory
(:mod:`mmie.models.factory`), training and the CLI read these tables; adding a model type or a
task is one entry here plus its class. Entries name their class as ``"module:Class"`` and the
class is imported on first use, so reading a config does not import torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mmie.errors import ConfigError, MMIEError

if TYPE_CHECKING:  # typing only: importing these pulls in torch
    from mmie.config import RunConfig
    from mmie.data.schema import Example
    from mmie.tasks.base import Task


@dataclass(frozen=True)
class TaskType:
    """A task as saved in a model directory (``config.json``'s ``task.task``)."""

    name: str
    target: str
    """``module:Class`` of its :class:`mmie.tasks.base.Task` subclass."""
    zero_shot: bool
    """Labels are scored by their names / descriptions (candidate labels at call time)."""


@dataclass(frozen=True)
class ModelType:
    """A value of ``model.type``."""

    name: str
    target: str
    """``module:Class`` of its ``nn.Module``."""
    tasks: tuple[str, ...]
    """The ``model.task`` values it trains on."""
    uses_image: bool
    """Whether it reads the picture (text-only types get no vision encoder and no features)."""
    zero_shot: bool
    """Scores labels by their texts: ``model.task=re`` means zero-shot RE (task ``zs_re``)."""
    options: str | None
    """The method section of :class:`mmie.config.ModelConfig` it reads (``mmib``, ``mg_vmoe``)."""
    summary: str


TASK_TYPES: dict[str, TaskType] = {t.name: t for t in (
    TaskType("ner", "mmie.tasks.ner:NERTask", zero_shot=False),
    TaskType("re", "mmie.tasks.re:RETask", zero_shot=False),
    TaskType("typing", "mmie.tasks.zs:ZeroShotTask", zero_shot=True),
    TaskType("zs_re", "mmie.tasks.zs:ZeroShotTask", zero_shot=True),
)}

MODEL_TYPES: dict[str, ModelType] = {m.name: m for m in (
    ModelType("text", "mmie.models.baselines:TextOnlyModel", ("ner", "re"), uses_image=False,
              zero_shot=False, options=None, summary="text encoder and task head, no image"),
    ModelType("fusion", "mmie.models.baselines:SimpleFusionModel", ("ner", "re"),
              uses_image=True, zero_shot=False, options=None,
              summary="text and image fused without regularizers (model.fusion)"),
    ModelType("mmib", "mmie.models.mmib:MMIBModel", ("ner", "re"), uses_image=True,
              zero_shot=False, options="mmib",
              summary="MMIB: refinement (VIB) and alignment regularizers"),
    ModelType("mg_vmoe", "mmie.models.mg_vmoe:MGVMoEModel", ("typing", "re"), uses_image=True,
              zero_shot=True, options="mg_vmoe",
              summary="MG-VMoE: zero-shot typing / RE with a mixture of experts"),
    ModelType("label_sim", "mmie.models.mg_vmoe:LabelSimilarityModel", ("typing", "re"),
              uses_image=False, zero_shot=True, options="mg_vmoe",
              summary="text-only zero-shot baseline: mention vs label-text similarity"),
)}

#: the values of ``model.task``
CONFIG_TASKS = ("ner", "re", "typing")


def _load(target: str) -> Any:
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def model_type(name: str) -> ModelType:
    try:
        return MODEL_TYPES[name]
    except KeyError:
        raise ConfigError(f"model.type={name!r} is not one of {', '.join(MODEL_TYPES)}") from None


def zero_shot_types() -> tuple[str, ...]:
    """The model types that score labels by their names / descriptions."""
    return tuple(n for n, m in MODEL_TYPES.items() if m.zero_shot)


def task_name(model_type_name: str, config_task: str) -> str:
    """The task a ``(model.type, model.task)`` pair trains: ``re`` on a zero-shot model type
    is zero-shot RE (``zs_re``)."""
    if config_task == "re" and model_type(model_type_name).zero_shot:
        return "zs_re"
    return config_task


def check_model_task(model_type_name: str, config_task: str) -> None:
    """A :class:`ConfigError` when the model type does not train on the task."""
    spec = model_type(model_type_name)
    if config_task not in CONFIG_TASKS:
        raise ConfigError(f"model.task={config_task!r} is not one of {', '.join(CONFIG_TASKS)}")
    if config_task in spec.tasks:
        return
    if spec.zero_shot:
        raise ConfigError(f"model.type={spec.name} is a zero-shot model: use model.task="
                          f"{' or '.join(spec.tasks)}")
    able = [m.name for m in MODEL_TYPES.values() if config_task in m.tasks]
    raise ConfigError(f"model.task={config_task} needs a zero-shot model type "
                      f"({', '.join(able)}), got model.type={spec.name}")


def task_class(name: str) -> type["Task"]:
    try:
        return _load(TASK_TYPES[name].target)
    except KeyError:
        raise MMIEError(f"unknown task {name!r} (known: {', '.join(TASK_TYPES)})") from None


def new_task(cfg: "RunConfig", splits: dict[str, list["Example"]]) -> "Task":
    """The task of a new run, built from its data (labels of the train split, or the
    zero-shot label split over every split)."""
    name = task_name(cfg.model.type, cfg.model.task)
    return task_class(name).from_data(name, cfg, splits)


def task_from_dict(d: dict[str, Any]) -> "Task":
    """The task saved in a model directory (:meth:`Task.to_dict`)."""
    return task_class(d["task"]).from_dict(d)


def model_class(name: str) -> type:
    """The ``nn.Module`` class of ``model.type=name``."""
    return _load(model_type(name).target)


__all__ = ["CONFIG_TASKS", "MODEL_TYPES", "TASK_TYPES", "ModelType", "TaskType",
           "check_model_task", "model_class", "model_type", "new_task", "task_class",
           "task_from_dict", "task_name", "zero_shot_types"]
