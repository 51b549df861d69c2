"""``mmie evaluate``: score a saved model on a data split and write per-example predictions."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from mmie.errors import ConfigError
from mmie.inference.predictor import load


def config_for_data(cfg, data: str | None = None, data_dir: str | None = None,
                    image_dir: str | None = None):
    """A copy of a saved model's run config pointed at another data set: ``data`` replaces the
    data set (with ``data_dir`` and ``image_dir``, ``None`` = defaults); without ``data`` a
    given ``data_dir`` / ``image_dir`` replaces the training one."""
    cfg = copy.deepcopy(cfg)
    if data is not None:
        cfg.data.name = data
        cfg.data.data_dir = data_dir
        cfg.data.image_dir = image_dir
        cfg.data.boxes_file = None  # the training set's boxes: the detector runs instead
    else:
        if data_dir is not None:
            cfg.data.data_dir = data_dir
        if image_dir is not None:
            cfg.data.image_dir = image_dir
    if cfg.data.boxes_file and not Path(cfg.data.boxes_file).is_file():
        import warnings

        warnings.warn(f"the training run's boxes file {cfg.data.boxes_file} is not here; the "
                      f"detector ({cfg.data.detector}) computes the object boxes instead",
                      stacklevel=2)
        cfg.data.boxes_file = None
    return cfg


def check_task_fits(task: str, examples, data: str, split: str, model_dir) -> None:
    """Refuse to score a model on data of another task (an NER model on MNRE relation
    instances, an RE model on tagged posts) with an error that says so, instead of a label
    error deep in the encoding."""
    has_rel = any(ex.relations for ex in examples)
    kind = "relation instances (RE)" if has_rel else "tagged posts (NER)"
    if (task == "ner" and has_rel) or (task == "re" and examples and not has_rel):
        want = "NER (CoNLL posts)" if task == "ner" else "RE (MNRE-style relation instances)"
        raise ConfigError(f"wrong task: {model_dir} is an {task.upper()} model but {data!r} "
                          f"split {split!r} holds {kind}; pass --data with {want} data, or "
                          f"evaluate a model of the data's task")


def evaluate(model_dir: str | Path, *, data: str | None = None, split: str = "test",
             data_dir: str | None = None, image_dir: str | None = None,
             image_policy: str | None = None, output: str | Path | None = None,
             batch_size: int = 64, limit: int | None = None, device: str = "cpu",
             progress: bool = True) -> dict[str, Any]:
    """Evaluate on ``split`` of ``data`` (default: the data set the model was trained on).

    Returns the scores (headline entity F1 in seqeval's default mode plus the strict IOB2 F1
    for NER; micro P/R/F1 without ``None`` for RE). With ``output``, writes one JSON line per
    example holding the gold and predicted spans / labels.
    """
    # the training data path (examples -> cached image features -> loader); imports Lightning,
    # which prediction alone never needs
    from mmie.training.data import MMIEDataModule, canonical_split

    pred = load(model_dir, device=device)
    cfg = config_for_data(pred.cfg, data, data_dir, image_dir)
    if image_policy is not None:
        cfg.data.image_policy = image_policy
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be a positive number of instances, got {limit}")
    task, model = pred.task, pred.model
    # supervised: the first `limit` posts of the split file; zero-shot: the first `limit`
    # instances after they are regrouped by label over every split (cutting the files would
    # leave the train file's instances in)
    cfg.data.limit_eval = None if task.zero_shot else limit
    # zero-shot instances go with their label, pooled over the data set's splits (as in
    # training), so the same instances are scored here as in the run's eval_test.json
    def fits(read):  # before any picture is read: a model of another task says so
        check_task_fits(task.name, read[canonical_split(split)], cfg.data.name, split, model_dir)

    dm = MMIEDataModule(cfg, model.text, model.vision, task, splits=(split,),
                        limit=limit if task.zero_shot else None,
                        check_examples=None if task.zero_shot else fits)
    dm.setup("test")
    key = dm.splits[0]
    examples = dm.examples[key]
    report: dict[str, Any] = {"examples": dm.report["instances"][key],
                              **{k: dm.report[k] for k in ("images", "feature_cache")
                                 if k in dm.report}}
    dl = dm.loader(key, batch_size, group_by_length=False, num_workers=0)
    outputs: list[Any] = []
    for batch in tqdm(dl, desc=f"evaluate {split}", disable=not progress):
        outputs.extend(pred.forward_batch(batch))  # the forward step of every prediction
    preds = task.decode(examples, outputs)
    scores = task.evaluate(examples, preds)
    result = {"model_dir": str(model_dir), "data": cfg.data.name, "split": split,
              "n": len(examples), "image_policy": cfg.data.image_policy,
              "text_encoder": pred.meta.get("text_encoder"),
              "vision_encoder": pred.meta.get("vision_encoder"), "report": report, **scores}
    if output is not None:
        out = Path(output)
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for ex, p in zip(examples, preds):
                f.write(json.dumps(task.record(ex, p), ensure_ascii=False,
                                   default=lambda o: o.to_dict()) + "\n")
        tmp.replace(out)
    return result
