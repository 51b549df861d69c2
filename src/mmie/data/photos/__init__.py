"""A real-photo multimodal benchmark where the picture decides: ``mmie data photos OUT``.

Modules: :mod:`~mmie.data.photos.sources` (pinned packages, fetching, which files),
:mod:`~mmie.data.photos.rcc` (Qt resource bundles), :mod:`~mmie.data.photos.pool` (the
compact source pool with its disjoint splits), :mod:`~mmie.data.photos.dhash`
(near-duplicates), :mod:`~mmie.data.photos.text` (categories, names, templates, relations),
:mod:`~mmie.data.photos.posts` (the post generator), :mod:`~mmie.data.photos.augment`
(augmentation and collages), :mod:`~mmie.data.photos.ceiling` (text-only ceilings) and
:mod:`~mmie.data.photos.build` (files, MANIFEST.json, summary.json). See docs/data.md.

This module stays light (argparse only): the CLI parser imports it.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "SIZE_NAMES"]

SIZE_NAMES = ("default", "small", "tiny")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``mmie data photos``."""
    p.add_argument("output_dir")
    p.add_argument("--size", choices=SIZE_NAMES, default="default",
                   help="default: 6000/1500/1500 posts per task and split; small: "
                        "1200/300/300; tiny: 48/16/16 from the test fixture pool")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", help="where the source packages are fetched (default "
                                   "~/.cache/mmie/photos)")
    p.add_argument("--pool", help="build from this exported pool (no fetching, no network)")
    p.add_argument("--export-pool", dest="export_pool", metavar="DIR",
                   help="also write the compact source pool (pool.json + pics/, < 10 MB)")
