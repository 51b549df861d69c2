"""Configuration loading: unknown keys (with suggestions), wrong types, bad choices, overrides
and the ``mmie train`` shorthands."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

import mmie.cli
from mmie import registry
from mmie.config import (MODEL_SECTIONS, MMIBConfig, MGVMoEConfig, ModelConfig, RunConfig,
                         config_from_dict, load_config, parse_override)
from mmie.errors import ConfigError


def _yaml(tmp_path, data) -> str:
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(p)


def test_defaults_and_file_and_override_precedence(tmp_path):
    path = _yaml(tmp_path, {"seed": 3, "trainer": {"max_epochs": 7, "lr": 1e-4}})
    cfg = load_config(path, ["trainer.max_epochs=9"], {"trainer": {"batch_size": 4}})
    assert cfg.seed == 3
    assert cfg.trainer.max_epochs == 9          # --set beats the file
    assert cfg.trainer.lr == pytest.approx(1e-4)
    assert cfg.trainer.batch_size == 4          # extra dict applied
    assert cfg.trainer.eval_batch_size == RunConfig().trainer.eval_batch_size


def test_unknown_key_in_file_suggests_close_key(tmp_path):
    path = _yaml(tmp_path, {"trainer": {"max_epoch": 3}})
    with pytest.raises(ConfigError) as ei:
        load_config(path)
    msg = str(ei.value)
    assert "trainer.max_epoch" in msg
    assert "did you mean 'max_epochs'" in msg
    assert path in msg  # names the file


def test_unknown_top_level_section(tmp_path):
    path = _yaml(tmp_path, {"modle": {"type": "mmib"}})
    with pytest.raises(ConfigError, match=r"unknown config key 'modle'.*did you mean 'model'"):
        load_config(path)


def test_unknown_key_in_override_suggests_close_key():
    with pytest.raises(ConfigError) as ei:
        load_config(None, ["trainer.max_epoch=3"])
    msg = str(ei.value)
    assert "trainer.max_epoch" in msg and "'max_epochs'" in msg
    assert "--set trainer.max_epoch=3" in msg


def test_unknown_model_key_override():
    with pytest.raises(ConfigError, match=r"model\.refinment.*'refinement'"):
        load_config(None, ["model.refinment=false"])


@pytest.mark.parametrize("override,key,want", [
    ("trainer.max_epochs=abc", "trainer.max_epochs", "int"),
    ("trainer.lr=fast", "trainer.lr", "float"),
    ("model.refinement=3", "model.refinement", "bool"),
    ("trainer.batch_size=1.5", "trainer.batch_size", "int"),
    ("trainer.max_epochs=true", "trainer.max_epochs", "int"),
])
def test_wrong_type(override, key, want):
    with pytest.raises(ConfigError) as ei:
        load_config(None, [override])
    msg = str(ei.value)
    assert f"'{key}'" in msg and f"expects {want}" in msg


def test_section_given_a_scalar(tmp_path):
    path = _yaml(tmp_path, {"trainer": 5})
    with pytest.raises(ConfigError, match=r"'trainer' is a section"):
        load_config(path)


def test_null_for_non_optional():
    with pytest.raises(ConfigError, match=r"'trainer.lr' may not be null"):
        load_config(None, ["trainer.lr="])


@pytest.mark.parametrize("override,key", [
    ("model.type=transformer", "model.type"),
    ("model.task=ocr", "model.task"),
    ("model.fusion=sum", "model.fusion"),
    ("data.image_policy=ignore", "data.image_policy"),
    ("model.vat=maybe", "model.vat"),
])
def test_bad_choice_names_key_and_options(override, key):
    with pytest.raises(ConfigError) as ei:
        load_config(None, [override])
    msg = str(ei.value)
    assert key in msg and "is not one of" in msg
    bad = override.split("=", 1)[1]
    assert repr(bad) in msg


def test_incompatible_type_and_task():
    with pytest.raises(ConfigError, match="mg_vmoe.*typing or re"):
        load_config(None, ["model.type=mg_vmoe", "model.task=ner"])


def test_bad_batch_size():
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(None, ["trainer.batch_size=0"])


def test_override_syntax():
    assert parse_override("trainer.max_epochs=10") == ("trainer.max_epochs", 10)
    assert parse_override("model.refinement=false") == ("model.refinement", False)
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_override("trainer.max_epochs")


def test_missing_and_invalid_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: {max_epochs: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(lst)


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config(None, ["model.type=fusion", "trainer.lr=2e-4", "data.limit_train=5",
                             "trainer.devices=2"])
    cfg.save(tmp_path / "config.yaml")
    assert not (tmp_path / "config.yaml.tmp").exists()
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert config_from_dict(yaml.safe_load((tmp_path / "config.yaml").read_text())) == cfg


def test_cli_shorthands_set_trainer_keys(monkeypatch, tmp_path):
    """--devices/--strategy/--accelerator/--num-nodes/--precision/--seed/--output-dir land in
    the config passed to train()."""
    seen = {}

    def fake_train(cfg, resume=False):
        seen["cfg"] = cfg
        seen["resume"] = resume
        return {}

    monkeypatch.setattr("mmie.training.train.train", fake_train)
    rc = mmie.cli.main(["train", "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu",
                        "--num-nodes", "3", "--precision", "bf16-mixed", "--seed", "7",
                        "--output-dir", str(tmp_path / "run"), "--set", "trainer.max_epochs=4"])
    assert rc == 0
    cfg = seen["cfg"]
    assert cfg.trainer.devices == 2 and isinstance(cfg.trainer.devices, int)
    assert cfg.trainer.strategy == "ddp"
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.trainer.num_nodes == 3
    assert cfg.trainer.precision == "bf16-mixed"
    assert cfg.seed == 7
    assert cfg.output_dir == str(tmp_path / "run")
    assert cfg.trainer.max_epochs == 4
    assert seen["resume"] is False


def test_cli_train_unknown_key_exit_code(capsys):
    rc = mmie.cli.main(["train", "--set", "trainer.max_epoch=3"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "trainer.max_epoch" in err and "max_epochs" in err


def test_exponent_without_dot_is_a_float(tmp_path):
    """PyYAML reads '3e-5' as a string; the config accepts it as the float it means."""
    path = _yaml(tmp_path, {})
    (tmp_path / "cfg.yaml").write_text("trainer:\n  lr: 3e-5\n", encoding="utf-8")
    assert load_config(path, ["trainer.head_lr=2E-4"]).trainer.lr == pytest.approx(3e-5)
    assert load_config(None, ["trainer.head_lr=2E-4"]).trainer.head_lr == pytest.approx(2e-4)
    with pytest.raises(ConfigError, match="expects float"):
        load_config(None, ["trainer.lr=3e-"])


def test_precision_auto_resolves_per_machine(monkeypatch):
    """``auto`` is bf16-mixed only on a bf16-capable CUDA GPU; explicit values pass through."""
    import torch

    from mmie.training.train import resolve_precision

    assert RunConfig().trainer.precision == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_precision("auto", "auto") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    asked = []

    def native_only(including_emulation=True):  # a card with native bf16
        asked.append(including_emulation)
        return True

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", native_only)
    assert resolve_precision("auto", "auto") == "bf16-mixed"
    assert resolve_precision("auto", "gpu") == "bf16-mixed"
    assert asked and not any(asked)  # emulated bf16 (pre-Ampere) does not count
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("auto", "gpu", "ddp_fork") == "32-true"  # CUDA untouched
    monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                        lambda including_emulation=True: including_emulation)  # emulation only
    assert resolve_precision("auto", "auto") == "32-true"
    assert resolve_precision("16-mixed", "cpu") == "16-mixed"


def test_yaml_off_is_a_string_not_a_boolean(tmp_path):
    """YAML 1.1 reads off/no as False; mmie configs use YAML 1.2 booleans (true/false only)."""
    cfg = load_config(None, ["model.type=mg_vmoe", "model.task=re", "model.vat=off"])
    assert cfg.model.mg_vmoe.vat == "off"
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  type: mg_vmoe\n  task: typing\n  vat: off\n")
    assert load_config(p).model.mg_vmoe.vat == "off"
    p.write_text("model:\n  type: mmib\n  refinement: false\n")
    assert load_config(p).model.mmib.refinement is False
    assert load_config(None, ["model.alignment=False"]).model.mmib.alignment is False
    with pytest.raises(ConfigError, match="model.refinement' expects bool"):
        load_config(None, ["model.refinement=no"])


# --- per-method sections, resolution of the shipped recipes ----------------------------------
REPO = Path(__file__).resolve().parents[1]
#: ``load_config(p).to_dict()`` of every recipe, captured before the per-method sections
#: existed (the flat ModelConfig): the recipes must resolve to exactly these values
RESOLVED = json.loads((REPO / "tests" / "fixtures" / "config_resolution.json").read_text())


def _leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


@pytest.mark.parametrize("name", sorted(RESOLVED))
def test_every_recipe_resolves_as_before(name):
    now = dict(_leaves(load_config(REPO / "configs" / name).to_dict()))
    before = dict(_leaves(RESOLVED[name]))
    assert {k: now.get(k, "<missing>") for k in before} == before
    # keys added since the capture hold their defaults in a recipe that does not set them
    defaults = dict(_leaves(RunConfig().to_dict()))
    text = (REPO / "configs" / name).read_text()
    assert {k: now[k] for k in set(now) - set(before) if k.split(".")[-1] not in text} == \
        {k: defaults[k] for k in set(now) - set(before) if k.split(".")[-1] not in text}


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_every_recipe_sets_what_it_writes(name):
    """Every key a recipe writes (flat model keys included) resolves to the written value."""
    written = dict(_leaves(yaml.safe_load((REPO / "configs" / name).read_text()) or {}))
    now = dict(_leaves(load_config(REPO / "configs" / name).to_dict()))
    got = {k: now.get(k, "<missing>") for k in written}
    assert got == {k: float(v) if isinstance(got[k], float) else v
                   for k, v in written.items()}


def test_method_options_live_in_their_section_flat_and_nested_alike(tmp_path):
    mm = ["model.type=mmib"]
    mg = ["model.type=mg_vmoe", "model.task=typing"]
    flat_mm = load_config(None, mm + ["model.refinement=false", "model.beta_align=0.5"])
    nested_mm = load_config(None, mm + ["model.mmib.refinement=false",
                                        "model.mmib.beta_align=0.5"])
    flat_mg = load_config(None, mg + ["model.num_experts=4", "model.vat=power"])
    nested_mg = load_config(None, mg + ["model.mg_vmoe.num_experts=4", "model.mg_vmoe.vat=power"])
    for cfg in (flat_mm, nested_mm):
        assert cfg.model.mmib == MMIBConfig(refinement=False, beta_align=0.5)
        assert cfg.model.mg_vmoe == MGVMoEConfig()
    for cfg in (flat_mg, nested_mg):
        assert cfg.model.mg_vmoe == MGVMoEConfig(num_experts=4, vat="power")
        assert cfg.model.mmib == MMIBConfig()
    # written flat, as before: a saved config reloads to the same sections
    for i, flat in enumerate((flat_mm, flat_mg)):
        d = flat.to_dict()["model"]
        assert "mmib" not in d and "mg_vmoe" not in d
        assert config_from_dict(flat.to_dict()).model == flat.model
        flat.save(tmp_path / f"c{i}.yaml")
        assert load_config(tmp_path / f"c{i}.yaml").model == flat.model
    assert flat_mm.to_dict()["model"]["refinement"] is False
    assert flat_mg.to_dict()["model"]["num_experts"] == 4


def test_section_keys_are_unique_and_cannot_shadow_shared_keys():
    shared = {f.name for f in dataclasses.fields(ModelConfig)}
    seen: set[str] = set()
    for section in MODEL_SECTIONS:
        names = {f.name for f in dataclasses.fields(getattr(ModelConfig(), section))}
        assert not names & shared and not names & seen
        seen |= names


def test_unknown_method_key_suggests_flat_and_nested_names():
    with pytest.raises(ConfigError, match=r"model\.num_expert\b.*'num_experts'"):
        load_config(None, ["model.num_expert=4"])
    with pytest.raises(ConfigError, match=r"model\.mmib\.refinment.*'refinement'"):
        load_config(None, ["model.mmib.refinment=false"])


def test_registry_is_what_validation_accepts():
    for name, spec in registry.MODEL_TYPES.items():
        for task in registry.CONFIG_TASKS:
            args = [f"model.type={name}", f"model.task={task}"]
            if task in spec.tasks:
                assert load_config(None, args).model.type == name
            else:
                with pytest.raises(ConfigError, match=f"model.t(ype|ask)={name if spec.zero_shot else task}"):
                    load_config(None, args)
    with pytest.raises(ConfigError, match="model.type='gpt' is not one of text, fusion, mmib, "
                                          "mg_vmoe, label_sim"):
        load_config(None, ["model.type=gpt"])
    assert registry.task_name("mg_vmoe", "re") == "zs_re"
    assert registry.task_name("mmib", "re") == "re"
    assert registry.zero_shot_types() == ("mg_vmoe", "label_sim")


def test_registry_targets_exist_and_agree_with_the_classes():
    for spec in registry.MODEL_TYPES.values():
        assert registry.model_class(spec.name).uses_image is spec.uses_image
        assert spec.options is None or spec.options in MODEL_SECTIONS
    for name, spec in registry.TASK_TYPES.items():
        assert registry.task_class(name).zero_shot is spec.zero_shot


def test_cli_train_help_lists_the_registry(capsys):
    with pytest.raises(SystemExit):
        mmie.cli.main(["train", "--help"])
    lines = capsys.readouterr().out.splitlines()
    rows = [l.split() for l in lines[lines.index("model types (model.type, the model.task values "
                                                 "each trains on):") + 1:] if l.strip()]
    assert [(r[0], r[1]) for r in rows] == [(m.name, "/".join(m.tasks))
                                            for m in registry.MODEL_TYPES.values()]
    assert [r[0] for r in rows] == ["text", "fusion", "mmib", "mg_vmoe", "label_sim"]
    assert [r[-1] for r in rows if r[-1].endswith(".*]")] == ["model.mmib.*]", "model.mg_vmoe.*]",
                                                               "model.mg_vmoe.*]"]


def test_another_methods_options_are_refused():
    """An MG-VMoE option on an MMIB run (or any method option on a baseline) would do nothing:
    it is an error naming the key and the model types that read it."""
    from mmie.config import load_config
    from mmie.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model.type=mmib does not read the mg_vmoe options "
                                          r"\(model.num_experts\).*mg_vmoe"):
        load_config(None, ["model.type=mmib", "model.num_experts=3"])
    with pytest.raises(ConfigError, match=r"model.refinement"):
        load_config(None, ["model.type=fusion", "model.refinement=false"])
    assert load_config(None, ["model.type=mg_vmoe", "model.task=typing", "model.num_experts=3"]
                       ).model.mg_vmoe.num_experts == 3
    with pytest.raises(ConfigError, match="data.boxes_file"):
        load_config(None, ["model.type=mmib", "data.boxes_file=b.jsonl"])
