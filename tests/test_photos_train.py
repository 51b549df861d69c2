"""The photo benchmark's recipes train unchanged on a tiny build (tiny random encoders):
configs/*_photos_*.yaml with data.data_dir pointing at the build, one short epoch each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmie.config import load_config
from mmie.data.photos.build import build

REPO = Path(__file__).resolve().parents[1]
TINY = ["model.text_encoder=random:tiny-bert", "model.vision_encoder=random:tiny-resnet",
        "trainer.max_epochs=1", "trainer.batch_size=8", "trainer.progress=false",
        "trainer.accelerator=cpu", "trainer.devices=1", "data.max_length=32"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("photos-train") / "data"
    build(out, size="tiny", seed=0)
    return out


def test_every_photos_config_loads_and_names_a_photos_set() -> None:
    files = sorted((REPO / "configs").glob("*_photos_*.yaml"))
    assert [f.stem for f in files] == [
        "fusion_photos_ner", "fusion_photos_re", "label_sim_photos_typing",
        "mg_vmoe_photos_typing", "mmib_photos_ner", "mmib_photos_re", "text_photos_ner",
        "text_photos_re"]
    for f in files:
        cfg = load_config(f)
        assert cfg.data.name == f"photos_{cfg.model.task}"
        assert cfg.model.type == f.stem.split("_photos_")[0]


@pytest.mark.parametrize("recipe", ["mmib_photos_ner", "mmib_photos_re",
                                    "mg_vmoe_photos_typing"])
def test_recipe_trains_on_a_tiny_build(recipe, photos, tmp_path) -> None:
    from mmie.training.train import train

    cfg = load_config(REPO / "configs" / f"{recipe}.yaml",
                      [*TINY, f"data.data_dir={photos}", f"output_dir={tmp_path / 'run'}",
                       f"cache_dir={tmp_path / 'cache'}"])
    summary = train(cfg)
    preds = [json.loads(x) for x in
             (tmp_path / "run" / "predictions_test.jsonl").read_text().splitlines() if x]
    assert preds, summary
    if recipe.endswith("typing"):  # fold 0 tests on the unseen group 3 only
        types = json.loads((photos / "photos_typing" / "types.json").read_text())
        group3 = {t["name"] for t in types if t["group"] == 3}
        assert {p["gold"] for p in preds} == group3


def test_claims_harness_reads_the_subsets_files(photos) -> None:
    """benchmarks/claims.py matches every subsets line to the reader's example (same ids,
    same order, one line per post) for all three tasks."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("claims", REPO / "benchmarks" / "claims.py")
    claims = importlib.util.module_from_spec(spec)
    import sys

    sys.modules.setdefault("claims", claims)  # its dataclasses look their module up
    spec.loader.exec_module(sys.modules["claims"])
    claims = sys.modules["claims"]
    for recipe, first in (("mmib_photos_ner", "pner_test_00000"), ("mmib_photos_re", "test-0"),
                          ("mg_vmoe_photos_typing", "ptyp_test_00000")):
        cfg = load_config(REPO / "configs" / f"{recipe}.yaml", [f"data.data_dir={photos}"])
        subsets = claims.read_subsets(cfg, ["train", "test"])
        assert len(subsets) == 48 + 16 and first in subsets
