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
