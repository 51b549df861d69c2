"""The one data path (MMIEDataModule): the instances, features and loaders that training,
evaluation and plot-zs share."""

from __future__ import annotations

import pytest

from mmie.config import load_config
from mmie.errors import ConfigError
from mmie.training.data import MMIEDataModule
from mmie.training.train import build_encoders

from helpers import TINY_BASE


def _cfg(tiny_cache, *extra):
    return load_config(None, [*TINY_BASE, f"cache_dir={tiny_cache}", *extra])


def test_zero_shot_evaluation_sees_the_training_instances(tiny_cache):
    cfg = _cfg(tiny_cache, "model.type=mg_vmoe", "model.task=typing")
    text, vision = build_encoders(cfg, True)
    train = MMIEDataModule(cfg, text, vision)
    train.setup()
    # instances partitioned by label over every split: train = seen, dev = val, test = unseen
    split = train.task.split
    for part, labels in (("train", split.seen), ("dev", split.val), ("test", split.unseen)):
        assert {ex.entities[0].label for ex in train.examples[part]} <= set(labels)
    # a saved model evaluated on "valid" gets exactly the run's dev instances, in order
    ev = MMIEDataModule(cfg, text, vision, train.task, splits=("valid",))
    ev.setup()
    assert list(ev.examples) == ["dev"]
    assert [e.id for e in ev.examples["dev"]] == [e.id for e in train.examples["dev"]]
    batch = next(iter(ev.loader("dev", 4, group_by_length=False)))
    assert batch["candidates"] == list(split.candidates("val"))
    assert batch["index"].tolist() == [0, 1, 2, 3]
    assert batch["labels"].tolist() == [list(split.val).index(e.entities[0].label)
                                        for e in ev.examples["dev"][:4]]


def test_supervised_evaluation_reads_only_its_split_and_limit_cuts(tiny_cache):
    cfg = _cfg(tiny_cache, "model.type=text", "model.task=ner")
    text, _ = build_encoders(cfg, False)
    train = MMIEDataModule(cfg, text, None, count_truncation=True)
    train.setup()
    assert train.report["examples"] == {"train": 24, "dev": 15, "test": 15}
    assert train.report["truncated"] == {"train": 0, "dev": 0, "test": 0}
    assert train.features is None and train.rows == {"train": None, "dev": None, "test": None}
    ev = MMIEDataModule(cfg, text, None, train.task, splits=("test",), limit=4)
    ev.setup()
    assert ev.report["examples"] == {"test": 15}
    assert [e.id for e in ev.examples["test"]] == [e.id for e in train.examples["test"][:4]]
    assert ev.task is train.task


def test_unknown_split_is_an_error(tiny_cache):
    cfg = _cfg(tiny_cache, "model.type=label_sim", "model.task=typing")
    text, _ = build_encoders(cfg, False)
    with pytest.raises(ConfigError, match="unknown split 'holdout'; expected train, dev or test"):
        MMIEDataModule(cfg, text, None, splits=("holdout",)).setup()
