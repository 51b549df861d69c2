"""Turn pool pictures into one post picture: augmentation and the two-panel collage.

Every post picture is :data:`SIZE` x :data:`SIZE` pixels. A single picture fills the whole
canvas; a collage puts one picture in the left half and one in the right half, **in the order
the mentions appear in the text** (first mention left). Each panel is a fresh augmentation of
its source: a random crop (72-100 % of the area, aspect jitter), fitted into the panel on a
plain light-grey margin, brightness / contrast / saturation jitter (x 0.75-1.25); a quarter of
the panels (independently) are turned grey and a fifth shown at low resolution (shrunk to
20-40 pixels and scaled back up), because most face pictures are small grey crops (LFW): grey,
blurry pictures occur in every category, so they do not give a person away. The canvas is
JPEG-encoded at a random quality (60-95). No two posts share picture bytes (the builder
checks), so a model must recognise categories, not memorise files.
"""

from __future__ import annotations

import io
import math
from typing import Sequence
from PIL import Image, ImageEnhance

from mmie.data.photos.rand import StableRng

__all__ = ["SIZE", "augment_panel", "compose", "encode"]

SIZE = 224
#: chance that a panel is turned grey / shown at low resolution (20-40 px, scaled back up)
GREY_P = 0.25
LOWRES_P = 0.2


def _crop(img: Image.Image, rng: StableRng) -> Image.Image:
    w, h = img.size
    area = rng.uniform(0.72, 1.0)
    aspect = math.exp(rng.uniform(math.log(0.85), math.log(1.18)))
    cw = min(w, max(4, round(w * math.sqrt(area * aspect))))
    ch = min(h, max(4, round(h * math.sqrt(area / aspect))))
    x = int(rng.integers(0, w - cw + 1))
    y = int(rng.integers(0, h - ch + 1))
    return img.crop((x, y, x + cw, y + ch))


def augment_panel(img: Image.Image, box: tuple[int, int],
                  rng: StableRng) -> Image.Image:
    """A random crop of ``img`` fitted into a ``box`` (w, h) panel, colour-jittered."""
    pic = _crop(img, rng)
    bw, bh = box
    scale = min(bw / pic.width, bh / pic.height) * rng.uniform(0.85, 1.0)
    nw, nh = max(1, round(pic.width * scale)), max(1, round(pic.height * scale))
    pic = pic.resize((nw, nh), Image.Resampling.BILINEAR)
    for enh in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        pic = enh(pic).enhance(float(rng.uniform(0.75, 1.25)))
    # Most face pictures are small grey LFW crops: grey and low resolution happen to every
    # category, so neither tells a person apart.
    if rng.random() < GREY_P:
        pic = pic.convert("L").convert("RGB")
    if rng.random() < LOWRES_P:
        side = int(rng.integers(20, 41))
        s = side / max(pic.size)
        if s < 1:
            small = pic.resize((max(1, round(pic.width * s)), max(1, round(pic.height * s))),
                               Image.Resampling.BILINEAR)
            pic = small.resize(pic.size, Image.Resampling.BILINEAR)
    grey = int(rng.integers(215, 250))
    panel = Image.new("RGB", box, (grey, grey, grey))
    x = int(rng.integers(0, bw - nw + 1))
    y = int(rng.integers(0, bh - nh + 1))
    panel.paste(pic, (x, y))
    return panel


def compose(images: Sequence[Image.Image], rng: StableRng,
            size: int = SIZE) -> Image.Image:
    """One picture (full canvas) or a collage of k pictures in k vertical strips, left to
    right in the given order."""
    k = len(images)
    if k == 0:
        raise ValueError("no pictures to compose")
    canvas = Image.new("RGB", (size, size), (240, 240, 240))
    edges = [round(i * size / k) for i in range(k + 1)]
    for i, img in enumerate(images):
        w = edges[i + 1] - edges[i]
        canvas.paste(augment_panel(img, (w, size), rng), (edges[i], 0))
    return canvas


def encode(img: Image.Image, rng: StableRng) -> bytes:
    """JPEG bytes at a random quality in [60, 95]."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(rng.integers(60, 96)))
    return buf.getvalue()
