"""Session fixtures: the tiny synthetic data set and tiny models trained on it, each built once
per test session and shared by every test module that asks for it.

* ``tiny_cache``: one cache folder for the session (the generated synthetic set of
  ``data.synthetic_size=60`` and the image features of the tiny vision encoder), so the set is
  generated and its pictures encoded once.
* ``tiny_runs``: :class:`TinyRuns`, tiny models trained on demand, each at most once
  (``tiny_runs.get(name, *overrides)``); ``tiny_run(name)`` trains the ``helpers.COMBOS`` entry
  ``name``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import pytest

import helpers
from helpers import COMBOS, TINY_BASE
from mmie.config import RunConfig, load_config
from mmie.training.train import train

class TinyRun(NamedTuple):
    out: Path
    """The run directory (``model/``, ``metrics.jsonl``, ``predictions_test.jsonl``, ...)."""
    summary: dict[str, Any]
    cfg: RunConfig


class TinyRuns:
    """Tiny models trained on the tiny synthetic set, each at most once per session."""

    def __init__(self, root: Path, cache: Path):
        self.root = root
        self.cache = cache
        self._runs: dict[tuple[str, tuple[str, ...]], TinyRun] = {}

    def get(self, name: str, *overrides: str) -> TinyRun:
        key = (name, overrides)
        if key not in self._runs:
            out = self.root / name
            cfg = load_config(None, [*TINY_BASE, f"cache_dir={self.cache}", f"output_dir={out}",
                                     *overrides])
            self._runs[key] = TinyRun(out, train(cfg), cfg)
        return self._runs[key]


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session", autouse=True)
def tiny_runs(tmp_path_factory, tiny_cache) -> TinyRuns:
    """Trains nothing until asked; autouse only to hand the session's runs to
    :func:`helpers.get_run` for modules that call it outside a fixture."""
    runs = TinyRuns(tmp_path_factory.mktemp("runs"), tiny_cache)
    helpers.SESSION["runs"] = runs
    yield runs
    helpers.SESSION.pop("runs", None)


@pytest.fixture(scope="session")
def tiny_run(tiny_runs):
    """``tiny_run("mmib_ner")``: the ``helpers.COMBOS`` run of that name."""
    return lambda name: tiny_runs.get(name, *COMBOS[name])
