"""Where the time of new pictures goes, host path vs ``image_decode='device'``, and how far the
device's pixels and features are from the host's, on real photographs (JPEG).

Times (median of ``--reps`` after 2 warm-ups, CUDA-synchronised) for ``--n`` pictures:
host = ``load_images`` (Pillow, thread pool) + ``vision.preprocess``; device = ``read_picture``
(file + header, thread pool) + ``DevicePixels.decode`` (``decode_jpeg`` on the device) +
``DevicePixels.transform`` (tensor resize / crop / normalise); and the vision encoder on the
batch. Agreement: raw decode (nvJPEG vs Pillow, uint8 levels), pixel values after the transform
(grey levels), global features (cosine). Writes one JSON; nothing here is asserted.

    python benchmarks/device_decode_check.py --pictures device/photos_pool/pics --device cuda \\
        --output results/speed/device_decode_h200.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, reps: int):
    for _ in range(2):
        out = fn()
    _sync(device)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)), out


def levels(a: torch.Tensor, b: torch.Tensor, scale: float) -> dict:
    d = (a.float().cpu() - b.float().cpu()).abs().flatten() * scale
    q = torch.quantile(d[torch.randperm(len(d))[:2_000_000]], torch.tensor([0.5, 0.99, 0.999]))
    return {"mean": round(d.mean().item(), 4), "p50": round(q[0].item(), 3),
            "p99": round(q[1].item(), 3), "p99.9": round(q[2].item(), 3),
            "max": round(d.max().item(), 3),
            "share_over_4_levels": round((d > 4).float().mean().item(), 5)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pictures", required=True, help="a folder of JPEG pictures")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--output", required=True)
    a = ap.parse_args(argv)

    from torchvision.io import ImageReadMode, decode_jpeg

    from mmie.data.images import image_workers, load_images, map_images
    from mmie.encoders.device_pixels import DevicePixels, read_picture
    from mmie.encoders.vision import build_vision_encoder

    device = torch.device(a.device)
    files = sorted(p for p in Path(a.pictures).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        raise SystemExit(f"{a.pictures}: no JPEG pictures")
    paths = [str(files[k % len(files)]) for k in range(a.n)]
    vision = build_vision_encoder("efficientnet_lite0").to(device).eval()
    dp = DevicePixels(vision, decoder="libjpeg")
    nv = DevicePixels(vision, decoder="nvjpeg")
    res = {"command": " ".join(["python", "benchmarks/device_decode_check.py", *(argv or sys.argv[1:])]),
           "machine": {"python": platform.python_version(), "torch": torch.__version__,
                       "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                       "cpu_count": os.cpu_count(), "image_workers": image_workers()},
           "pictures": {"folder": a.pictures, "distinct": len(files), "n": a.n},
           "times_ms": {}}
    T = res["times_ms"]

    def host():
        return vision.preprocess(load_images(paths), device=device)

    T["host_load_and_preprocess"], x_host = timed(host, device, a.reps)
    T["read_picture_loop"], pics = timed(lambda: [read_picture(p) for p in paths], device,
                                         a.reps)
    T["read_picture_pool"], _ = timed(lambda: map_images(read_picture, paths), device, a.reps)
    T["decode_libjpeg_pool_to_device"], dec = timed(lambda: dp.decode(pics, device), device,
                                                    a.reps)
    T["decode_nvjpeg"], dec_nv = timed(lambda: nv.decode(pics, device), device, a.reps)
    T["transform"], x_dev = timed(lambda: dp.transform(dec), device, a.reps)
    x_nv = nv.transform(dec_nv)
    T["device_all_libjpeg"], _ = timed(lambda: dp([read_picture(p) for p in paths], device),
                                       device, a.reps)
    T["device_all_nvjpeg"], _ = timed(lambda: nv([read_picture(p) for p in paths], device),
                                      device, a.reps)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                         enabled=device.type == "cuda"):
        T["vision_encoder_bf16"], (g_dev, _) = timed(lambda: vision.encode_batch(x_dev), device,
                                                     a.reps)
        g_host, _ = vision.encode_batch(x_host)
        g_nv, _ = vision.encode_batch(x_nv)
    res["per_picture_ms"] = {k: round(v * 1000 / a.n, 4) for k, v in T.items()}
    res["times_ms"] = {k: round(v * 1000, 2) for k, v in T.items()}
    res["counts"] = {"libjpeg": dict(dp.counts), "nvjpeg": dict(nv.counts)}

    # agreement: raw decode (as stored, no EXIF turn), transformed pixels, features
    k = min(64, a.n)
    raw = [torch.frombuffer(bytearray(p.data), dtype=torch.uint8) for p in pics[:k]]
    raw_cpu = [decode_jpeg(r, mode=ImageReadMode.RGB) for r in raw]
    raw_nv = (decode_jpeg(raw, mode=ImageReadMode.RGB, device=device) if device.type == "cuda"
              else raw_cpu)
    res["raw_decode_levels_nvjpeg_vs_libjpeg"] = levels(
        torch.cat([r.flatten().cpu() for r in raw_nv]), torch.cat([r.flatten() for r in raw_cpu]),
        1.0)
    res["pixel_levels_vs_host"] = {"libjpeg": levels(x_dev, x_host, 127.5),
                                   "nvjpeg": levels(x_nv, x_host, 127.5)}
    res["feature_cosine_vs_host"] = {}
    for name, g in (("libjpeg", g_dev), ("nvjpeg", g_nv)):
        cos = torch.nn.functional.cosine_similarity(g.float(), g_host.float())
        res["feature_cosine_vs_host"][name] = {"min": round(cos.min().item(), 5),
                                               "mean": round(cos.mean().item(), 5)}
    out = Path(a.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: res[k] for k in ("times_ms", "per_picture_ms",
                                          "raw_decode_levels_nvjpeg_vs_libjpeg",
                                          "pixel_levels_vs_host", "feature_cosine_vs_host",
                                          "counts")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
