"""Where mmie keeps generated data and caches (never inside the project)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mmie.data import synthetic


def default_cache_dir(explicit: str | Path | None = None) -> Path:
    """``explicit`` > ``$MMIE_CACHE`` > ``~/.cache/mmie``."""
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("MMIE_CACHE", Path.home() / ".cache" / "mmie"))


def synthetic_dir(size: int = 600, cache_dir: str | Path | None = None, seed: int = 0) -> Path:
    """Generate the synthetic demo set once per (size, seed) into the cache and return it.

    Generation writes into a temporary folder renamed at the end, so an interrupted run never
    leaves a half-written set behind.
    """
    root = default_cache_dir(cache_dir) / f"synthetic-n{size}-seed{seed}"
    if (root / "DONE").exists():
        return root
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    synthetic.generate(tmp, seed=seed, n_train=size, n_valid=max(1, size // 4),
                       n_test=max(1, size // 4))
    (tmp / "DONE").write_text("ok\n")
    try:
        tmp.rename(root)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return root
