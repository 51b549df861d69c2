"""Build ``device/``: what a GPU machine without registry access needs to run mmie.

``device/`` is ignored by git (``.git/info/exclude``) and carried to the GPU machine with the
working tree (64 MiB limit): the embedded encoders as fp16 safetensors, the pure-Python
packages the machine lacks (seqeval, pytorch-crf), and a copy of the benchmark text files.

    python benchmarks/device_bundle.py --data-dir ../shared/data
    # the photo benchmark's claims grid: the compact picture pool instead of the text files
    python benchmarks/device_bundle.py --photos-pool POOL_DIR --no-text-data
    # on the GPU machine:
    source device/env.sh && python3 -m mmie train configs/mmib_twitter2015.yaml ...
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import zipfile
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--out", default="device")
    ap.add_argument("--no-text-data", action="store_true",
                    help="leave out the Twitter / MNRE text files (and remove an earlier copy), "
                         "e.g. to make room for the photo pool")
    ap.add_argument("--photos-pool", type=Path, default=None, metavar="DIR",
                    help="copy this compact picture pool of `mmie data photos` to "
                         "device/photos_pool (the set is built from it on the GPU machine)")
    a = ap.parse_args()
    import torch
    from safetensors.torch import load_file, save_file

    from mmie.encoders.text import minilm_path
    from mmie.encoders.vision import build_vision_encoder

    out = Path(a.out)
    out.mkdir(exist_ok=True)
    # text encoder: config + tokenizer files + fp16 weights. tokenizer.json (466 KB) is left
    # out: the tokenizer is rebuilt from vocab.txt + tokenizer_config.json, which gave the same
    # ids and word_ids on 12,240 Twitter / MNRE / photo texts (checked 2026-12-03)
    src = minilm_path()
    dst = out / "minilm"
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir()
    for f in src.iterdir():
        if (f.is_file() and f.suffix in (".json", ".txt")
                and f.name not in ("tokenizer.json", "data_config.json")):
            shutil.copy(f, dst / f.name)
    sd = load_file(str(src / "model.safetensors"))
    save_file({k: v.half().contiguous() if v.is_floating_point() else v for k, v in sd.items()},
              str(dst / "model.safetensors"))
    # vision encoder: timm-named fp16 state dict (loads by name, see encoders/vision.py)
    enc = build_vision_encoder("efficientnet_lite0")
    model = getattr(enc, "model", None) or next(m for m in enc.children())
    sd = {k: (v.half() if v.is_floating_point() else v).contiguous()
          for k, v in model.state_dict().items()}
    save_file(sd, str(out / "lite0.safetensors"))
    # pure-Python packages the GPU image lacks
    import seqeval
    import torchcrf

    lib = out / "pylib"
    lib.mkdir(exist_ok=True)
    for mod in (seqeval, torchcrf):
        p = Path(mod.__file__).parent
        shutil.copytree(p, lib / p.name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    # text files of the benchmarks (never committed)
    if a.no_text_data:
        shutil.rmtree(out / "data", ignore_errors=True)
    else:
        data = Path(a.data_dir)
        for name in ("twitter2015", "twitter2017", "mnre"):
            shutil.copytree(data / name, out / "data" / name, dirs_exist_ok=True)
        shutil.copy(data / "SHA256SUMS", out / "data" / "SHA256SUMS")
    if a.photos_pool is not None:
        if not a.photos_pool.is_dir():
            raise SystemExit(f"device_bundle.py: --photos-pool {a.photos_pool}: not a folder")
        # one stored zip, not 1,500 small files: the device tool counts disk blocks
        shutil.rmtree(out / "photos_pool", ignore_errors=True)
        with zipfile.ZipFile(out / "photos_pool.zip", "w", zipfile.ZIP_STORED) as z:
            for f in sorted(a.photos_pool.rglob("*")):
                if f.is_file():
                    z.write(f, Path("photos_pool") / f.relative_to(a.photos_pool))
    (out / "env.sh").write_text(
        'export PYTHONPATH="$PWD/src:$PWD/device/pylib:$PYTHONPATH"\n'
        'export MMIE_MINILM_PATH="$PWD/device/minilm"\n'
        'export MMIE_EFFICIENTNET_LITE0_WEIGHTS="$PWD/device/lite0.safetensors"\n'
        'export MMIE_DATA="$PWD/device/data"\n'
        'export MMIE_CACHE="${MMIE_CACHE:-/tmp/mmie-cache}"\n'
        'export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1\n'
        '# the photo pool travels as one zip; unpacked once where it is used\n'
        'if [ -f device/photos_pool.zip ] && [ ! -d device/photos_pool ]; then\n'
        '  python3 -c "import zipfile; zipfile.ZipFile(\'device/photos_pool.zip\')'
        '.extractall(\'device\')"\n'
        'fi\n')
    # what travels is counted in disk blocks (4 KiB), the bundle and the tracked tree together
    def blocks(files):
        return sum(-(-f.stat().st_size // 4096) * 4096 for f in files if f.is_file())

    root = Path(__file__).resolve().parents[1]
    tracked = subprocess.run(["git", "ls-files", "-z"], capture_output=True, text=True,
                             cwd=root).stdout.split("\0")
    own, tree = blocks(out.rglob("*")), blocks(root / t for t in tracked if t)
    print(f"wrote {out} ({own / 2**20:.1f} MiB; with the tracked tree "
          f"{(own + tree) / 2**20:.1f} MiB of the device call's 64)")
    if own + tree > 63 * 2**20:
        print("device_bundle.py: WARNING: over 63 MiB with the tracked tree "
              "(use --no-text-data, or a smaller pool)")
    del torch


if __name__ == "__main__":
    main()
