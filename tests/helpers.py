"""Small helpers shared by the test modules (imported as ``from helpers import ...``)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """The benchmark data directory: ``$MMIE_DATA``, else ``<repo>/../shared/data``. Tests
    that need it fail (never skip) when it is absent."""
    d = Path(os.environ.get("MMIE_DATA") or REPO.parent / "shared" / "data")
    assert d.is_dir(), f"benchmark data not found at {d} (set MMIE_DATA)"
    return d


def subprocess_env() -> dict[str, str]:
    """Environment for a ``python -m mmie`` child process: this checkout's ``src`` first on
    ``PYTHONPATH`` and one OpenMP thread unless set."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


#: overrides every tiny run shares: the generated synthetic set cut small, tiny random encoders
TINY_BASE = ["data.name=synthetic", "data.synthetic_size=60", "data.max_length=48",
             "model.text_encoder=random:tiny-bert", "model.vision_encoder=random:tiny-resnet",
             "trainer.max_epochs=2", "trainer.batch_size=8", "trainer.progress=false",
             "trainer.log_every_n_steps=2", "trainer.accelerator=cpu", "trainer.devices=1",
             "trainer.patience=50", "data.limit_train=24"]

#: name -> overrides of every (model type x task) combination that exists
COMBOS = {
    "mmib_ner": ("model.type=mmib", "model.task=ner", "trainer.max_epochs=3",
                 "data.limit_train=40", "trainer.head_lr=3e-3", "trainer.lr=1e-3"),
    "mmib_re": ("model.type=mmib", "model.task=re"),
    "text_ner": ("model.type=text", "model.task=ner"),
    "text_re": ("model.type=text", "model.task=re"),
    "fusion_ner": ("model.type=fusion", "model.task=ner"),
    "fusion_re": ("model.type=fusion", "model.task=re"),
    "mg_vmoe_typing": ("model.type=mg_vmoe", "model.task=typing"),
    "label_sim_typing": ("model.type=label_sim", "model.task=typing"),
}

#: objects of the running test session (set by conftest.py's session fixtures)
SESSION: dict[str, object] = {}


def get_run(name: str, *overrides: str):
    """``(run dir, summary, config)`` of the tiny model ``name`` trained with ``overrides``
    (once per session; see ``conftest.TinyRuns``), for code that cannot take a fixture."""
    return SESSION["runs"].get(name, *overrides)
