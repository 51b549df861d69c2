"""``mmie data boxes``: run the detector over every picture of a data set once and write a
small boxes file, so that a machine without detector weights (the GPU box) computes the same
object-region features from it (``data.boxes_file``).

Pictures are read exactly as :func:`mmie.training.data.compute_image_features` reads them
(the same loader, the same content hash), so every key the training run looks up is there.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mmie.config import RunConfig


def dataset_boxes(cfg: RunConfig, out: str | Path, *, detector=None,
                  splits: tuple[str, ...] = ("train", "dev", "test"),
                  progress: bool | None = None) -> dict[str, Any]:
    """Detect objects on every distinct picture of ``cfg``'s data set; write ``out``
    (:func:`mmie.encoders.regions.write_boxes_file`). Returns a summary: pictures, boxes,
    pictures without a box, detector milliseconds per picture, file size."""
    from mmie.data.images import ImageLoader
    from mmie.encoders.cache import image_content_hash
    from mmie.encoders.regions import detector_from_config, detector_settings, write_boxes_file
    from mmie.training.data import image_dir_for, load_examples

    det = detector if detector is not None else detector_from_config(cfg.data)
    seen: dict[str, int] = {}
    rows = []
    missing = 0
    spent = 0.0
    todo = []
    for split in splits:
        try:
            exs = load_examples(cfg, split)
        except Exception:  # noqa: BLE001 - a data set without this split
            if split == "train":
                raise
            continue
        todo.append((split, exs, ImageLoader(image_dir_for(cfg, split), policy="skip")))
    total = sum(len(e) for _, e, _ in todo)
    bar = None
    if progress if progress is not None else total >= 256:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="detect", unit="post")
    for split, exs, loader in todo:
        done_ids: set[str] = set()
        for ex in exs:
            if bar is not None:
                bar.update(1)
            if ex.image is None or ex.image in done_ids:
                continue
            done_ids.add(ex.image)
            img = loader.load(ex.image, example_id=ex.id)
            if img is None:
                missing += 1
                continue
            digest, _ = image_content_hash(img)
            if digest in seen:
                continue
            t0 = time.perf_counter()
            found = det.detect(img)
            spent += time.perf_counter() - t0
            seen[digest] = len(rows)
            rows.append((digest, f"{split}/{ex.image}", found, img.size))
    if bar is not None:
        bar.close()
    if not rows and missing:
        from mmie.errors import DataError

        dirs = sorted({str(loader.image_dir) for _, _, loader in todo})
        raise DataError(f"none of the data set's pictures could be read ({missing} missing or "
                        f"broken; image folder {', '.join(dirs)}); give --image-dir")
    settings = detector_settings(cfg.data)
    path = write_boxes_file(out, settings, det.identity, rows)
    n = len(rows)
    return {"file": str(path), "bytes": path.stat().st_size, "pictures": n,
            "boxes": sum(len(r[2]) for r in rows),
            "pictures_without_boxes": sum(1 for r in rows if not r[2]),
            "missing_or_broken_images": missing,
            "detector": det.identity, "settings": settings,
            "detector_ms_per_picture": round(1000 * spent / n, 2) if n else None}
