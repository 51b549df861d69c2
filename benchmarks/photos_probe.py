"""Are the photo benchmark's held-out pictures recognisable? A linear probe on frozen
EfficientNet-Lite0 global features: fit on train typing posts, score the 12 types on test
posts (pictures never seen in training).

    OMP_NUM_THREADS=2 python benchmarks/photos_probe.py /work/photos_out \
        --n-train 2400 --out results/photos_probe_cpu.json

Needs scikit-learn. Prints and writes the 12-way test accuracy, per type, and the times.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", help="a build of `mmie data photos`")
    ap.add_argument("--n-train", type=int, default=2400)
    ap.add_argument("--n-test", type=int, default=1500)
    ap.add_argument("--encoder", default="efficientnet_lite0")
    ap.add_argument("--out", default="results/photos_probe_cpu.json")
    a = ap.parse_args()
    import torch
    from PIL import Image
    from sklearn.linear_model import LogisticRegression

    from mmie.data import catalog
    from mmie.encoders.vision import build_vision_encoder

    enc = build_vision_encoder(a.encoder).eval()

    def feats(split: str, n: int):
        exs = catalog.load_split("photos_typing", split, data_dir=a.data_dir).examples[:n]
        img_dir = catalog.image_dir("photos_typing", split, data_dir=a.data_dir)
        xs, ys = [], []
        for i in range(0, len(exs), 64):
            batch = exs[i:i + 64]
            ims = [Image.open(img_dir / e.image).convert("RGB") for e in batch]
            with torch.no_grad():
                g, _ = enc(enc.preprocess(ims))
            xs.append(g.float().numpy())
            ys += [e.entities[0].label for e in batch]
        return np.concatenate(xs), np.array(ys)

    t0 = time.perf_counter()
    xtr, ytr = feats("train", a.n_train)
    xte, yte = feats("test", a.n_test)
    t1 = time.perf_counter()
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    clf = LogisticRegression(max_iter=2000, C=0.5).fit((xtr - mu) / sd, ytr)
    pred = clf.predict((xte - mu) / sd)
    row = {"data_dir": str(a.data_dir), "encoder": a.encoder, "n_train": len(ytr),
           "n_test": len(yte), "test_accuracy_12_types": round(float((pred == yte).mean()), 4),
           "chance": round(1 / 12, 4),
           "per_type": {c: round(float((pred[yte == c] == c).mean()), 3)
                        for c in sorted(set(yte))},
           "encode_s": round(t1 - t0, 1), "fit_s": round(time.perf_counter() - t1, 1)}
    print(json.dumps(row, indent=2))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(row, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
