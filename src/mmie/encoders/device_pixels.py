"""New pictures to pixel values on the model's device: JPEGs decoded by libjpeg-turbo on the
host's thread pool (or by nvJPEG on the GPU) through ``torchvision.io.decode_jpeg``, then
resized / cropped / normalised as tensors on the device, so the host does no per-pixel
Python work.

The opt-in fast path of prediction (``mmie.load(..., image_decode="device" | "nvjpeg")``);
the default path decodes and transforms with Pillow on the host (:mod:`mmie.data.images`).
What stays the same: every check before decoding (missing, empty, too many bytes or pixels,
unidentifiable, corrupt or truncated -- :class:`~mmie.errors.ImageError` naming the picture,
the first bad one in order), EXIF orientation, RGB. What differs: the resize runs on tensors
(torchvision's antialiased bicubic, not Pillow's): with libjpeg decoding the pixels are within
2 grey levels of the host path (tested; mean 0.0025 levels on real photos,
``results/speed/device_decode_cpu.json``); nvJPEG (``nvjpeg``)
is experimental: on an H200 its pixels were off by a mean 1.1 levels (p99 15, features cosine
min 0.92) on 160 px photos, more than chroma upsampling explains, measured before the stream
wait below was added (``results/speed/call4/device_decode_h200.json``); not re-measured since.
Pictures that are not RGB / grey JPEG (PNG, CMYK JPEG, ...), PIL images, and a JPEG
``decode_jpeg`` refuses go through Pillow; every such picture is counted
(:attr:`DevicePixels.counts`), none is dropped or blanked.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mmie.data.images import (DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, decode_image_bytes,
                              load_image, map_images, open_image_header, read_image_bytes)
from mmie.errors import ConfigError

__all__ = ["EncodedPicture", "read_picture", "orient", "DevicePixels"]

_EXIF_ORIENTATION = 0x0112
_JPEG_MODES = ("RGB", "L")


@dataclass
class EncodedPicture:
    """A picture read and checked (limits, header) but not decoded: a JPEG for the device."""

    data: bytes
    path: Path | None
    size: tuple[int, int]      # (width, height) before orientation
    orientation: int = 1       # EXIF orientation tag, 1 = as stored


def read_picture(source: Any, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> "EncodedPicture | Any":
    """A picture (path, bytes, PIL image or an :class:`EncodedPicture`) ready for
    :class:`DevicePixels`: an :class:`EncodedPicture` for a complete RGB / grey JPEG, else the
    host-decoded RGB PIL image (:func:`~mmie.data.images.load_image`). Raises
    :class:`~mmie.errors.ImageError` as the host path does; ``None`` stays ``None``."""
    if source is None or isinstance(source, EncodedPicture):
        return source
    if not isinstance(source, (str, Path, bytes, bytearray, memoryview)):
        # a PIL image, or the host path's clear error for anything else
        return load_image(source, max_bytes=max_bytes, max_pixels=max_pixels)
    data, path = read_image_bytes(source, max_bytes=max_bytes)
    with open_image_header(data, path, max_pixels=max_pixels) as im:
        fmt, mode, size = im.format, im.mode, im.size
        orientation = 1
        if fmt == "JPEG":
            try:
                orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1))
            except Exception:  # noqa: BLE001 - a broken EXIF block: the host path says so
                orientation = 0
    # the device decoder gets only what it decodes like libjpeg: a complete (EOI-terminated)
    # RGB or grey JPEG with a valid orientation; everything else decodes on the host, where a
    # truncated file is an error (nvJPEG may fill the missing rows instead)
    if (fmt != "JPEG" or mode not in _JPEG_MODES or not 1 <= orientation <= 8
            or not data.rstrip(b"\0").endswith(b"\xff\xd9")):
        return decode_image_bytes(data, path, max_pixels=max_pixels)
    return EncodedPicture(data, path, size, orientation)


def orient(x: torch.Tensor, orientation: int) -> torch.Tensor:
    """``[C, H, W]`` pixels turned upright by an EXIF orientation (1-8), as Pillow's
    ``ImageOps.exif_transpose`` turns a picture."""
    if orientation == 2:
        return x.flip(-1)
    if orientation == 3:
        return x.flip(-2, -1)
    if orientation == 4:
        return x.flip(-2)
    if orientation == 5:
        return x.transpose(-2, -1)
    if orientation == 6:
        return torch.rot90(x, -1, dims=(-2, -1))
    if orientation == 7:
        return x.transpose(-2, -1).flip(-2, -1)
    if orientation == 8:
        return torch.rot90(x, 1, dims=(-2, -1))
    return x


@dataclass(frozen=True)
class _Recipe:
    resize: int               # shorter side
    interpolation: Any        # torchvision InterpolationMode
    crop: tuple[int, int]     # (height, width)
    mean: torch.Tensor
    std: torch.Tensor


def _recipe(vision) -> _Recipe:
    """The eval transform ``Resize(int) -> CenterCrop -> ToTensor -> Normalize`` of a timm
    encoder, as numbers; :class:`ConfigError` for any other transform."""
    from torchvision import transforms as T

    # the encoder's own split of its transform into picture steps and tensor steps
    split = getattr(vision, "_split_transform", lambda: None)()
    steps, after = split if split is not None else ([], [])
    ok = (len(steps) == 2 and isinstance(steps[0], T.Resize)
          and isinstance(steps[1], T.CenterCrop) and len(after) == 1)
    size = steps[0].size if ok else None
    if isinstance(size, (list, tuple)) and len(size) == 1:
        size = size[0]
    if not ok or not isinstance(size, int) or steps[0].max_size is not None:
        names = [type(t).__name__ for t in
                 getattr(getattr(vision, "_transform", None), "transforms", [])]
        raise ConfigError(f"image_decode='device' needs the vision encoder's eval transform to "
                          f"be Resize(int), CenterCrop, ToTensor, Normalize; "
                          f"{getattr(vision, 'name', vision)!r} has {names or 'none'}: "
                          "use image_decode='host'")
    crop = steps[1].size
    crop = (crop, crop) if isinstance(crop, int) else tuple(crop)
    norm = after[0]
    return _Recipe(size, steps[0].interpolation, (int(crop[0]), int(crop[1])),
                   torch.as_tensor(norm.mean, dtype=torch.float32).clone().view(3, 1, 1),
                   torch.as_tensor(norm.std, dtype=torch.float32).clone().view(3, 1, 1))


DECODERS = ("libjpeg", "nvjpeg")


class DevicePixels:
    """Pictures -> ``pixel_values`` ``[N, 3, H, W]`` float32 on a device, by a timm encoder's
    eval transform done on tensors there. ``decoder``: ``libjpeg`` (``decode_jpeg`` on the
    host's thread pool, libjpeg-turbo as in Pillow: the same pixels; then moved to the device)
    or ``nvjpeg`` (``decode_jpeg`` on the CUDA device itself; on the CPU the same as libjpeg).
    ``counts``: ``device`` (JPEGs decoded by ``decode_jpeg``), ``host`` (non-JPEG or PIL
    pictures, decoded by Pillow), ``fallback`` (JPEGs ``decode_jpeg`` refused, Pillow decoded)."""

    def __init__(self, vision, decoder: str = "libjpeg"):
        if decoder not in DECODERS:
            raise ConfigError(f"decoder={decoder!r} is not one of {', '.join(DECODERS)}")
        self.recipe = _recipe(vision)
        self.decoder = decoder
        self.counts = {"device": 0, "host": 0, "fallback": 0}

    def decode(self, pictures: Sequence[Any], device: torch.device | str) -> list[torch.Tensor]:
        """Upright RGB ``uint8`` ``[3, H, W]`` tensors on ``device``, in order (``pictures``
        from :func:`read_picture`: :class:`EncodedPicture` or RGB PIL images)."""
        from torchvision.io import ImageReadMode, decode_jpeg

        device = torch.device(device)
        out: list[torch.Tensor | None] = [None] * len(pictures)
        jpegs = [k for k, p in enumerate(pictures) if isinstance(p, EncodedPicture)]
        for k, p in enumerate(pictures):
            if not isinstance(p, EncodedPicture):
                out[k] = _from_pil(p, device)
                self.counts["host"] += 1
        if jpegs:
            raw = [torch.frombuffer(bytearray(pictures[k].data), dtype=torch.uint8) for k in jpegs]
            with warnings.catch_warnings():
                # torchvision >= 0.23 points to torchcodec; decode_jpeg is still its decoder
                warnings.simplefilter("ignore", DeprecationWarning)
                on = device if self.decoder == "nvjpeg" else torch.device("cpu")
                try:
                    decoded = _decode_many(decode_jpeg, raw, ImageReadMode.RGB, on)
                except RuntimeError:  # one bad picture fails the batch: find it, in order
                    decoded = []
                    for r in raw:
                        try:
                            decoded.append(_decode_many(decode_jpeg, [r], ImageReadMode.RGB,
                                                        on)[0])
                        except RuntimeError:
                            decoded.append(None)
                if on != device:
                    decoded = _to_device(decoded, device)
            for k, x in zip(jpegs, decoded):
                p = pictures[k]
                if x is None or tuple(x.shape) != (3, p.size[1], p.size[0]):
                    # the host decoder decides: a real error names the picture, else its pixels
                    out[k] = _from_pil(decode_image_bytes(p.data, p.path), device)
                    self.counts["fallback"] += 1
                else:
                    out[k] = orient(x, p.orientation)
                    self.counts["device"] += 1
        return out  # type: ignore[return-value]

    def transform(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Resize (shorter side), centre crop, scale to [0, 1] and normalise ``uint8``
        ``[3, H, W]`` tensors; one ``[N, 3, h, w]`` float32 batch on their device. Pictures
        of one size are resized together (one kernel for the group, the same values as one
        by one)."""
        import torchvision.transforms.v2.functional as F

        rc = self.recipe
        groups: dict[tuple[int, int], list[int]] = {}
        for k, x in enumerate(images):
            groups.setdefault(tuple(x.shape[-2:]), []).append(k)
        out = torch.empty(len(images), 3, *rc.crop, dtype=torch.uint8, device=images[0].device)
        for ks in groups.values():
            batch = torch.stack([images[k] for k in ks])
            batch = F.center_crop(F.resize(batch, [rc.resize], interpolation=rc.interpolation,
                                           antialias=True), list(rc.crop))
            out[torch.tensor(ks, device=out.device)] = batch
        x = out.to(torch.float32).div_(255)
        return (x - rc.mean.to(x.device)) / rc.std.to(x.device)

    def __call__(self, pictures: Sequence[Any], device: torch.device | str) -> torch.Tensor:
        if len(pictures) == 0:
            return torch.zeros(0, 3, *self.recipe.crop, device=device)
        return self.transform(self.decode(pictures, device))


def _decode_many(decode_jpeg, raw, mode, device: torch.device) -> list[torch.Tensor]:
    if device.type == "cuda":
        # nvJPEG's hardware engine (A100 / H100 / H200) writes its outputs without waiting for
        # the caller's stream, so it can overwrite memory that queued kernels still read
        # (pytorch/vision#9606; torchcodec waits for the stream first, meta-pytorch/torchcodec
        # #1634): nothing may be in flight when it starts
        torch.cuda.current_stream(device).synchronize()
        return list(decode_jpeg(raw, mode=mode, device=device))
    return map_images(lambda r: decode_jpeg(r, mode=mode), raw)  # libjpeg-turbo, GIL released


def _to_device(xs: list, device: torch.device) -> list:
    """Host tensors (``None`` kept) to ``device`` in one copy (one buffer, then views)."""
    if device.type != "cuda":
        return [None if x is None else x.to(device) for x in xs]
    live = [x for x in xs if x is not None]
    if not live:
        return list(xs)
    flat = torch.cat([x.reshape(-1) for x in live]).to(device)
    out, at = [], 0
    for x in xs:
        if x is None:
            out.append(None)
            continue
        out.append(flat[at:at + x.numel()].view(x.shape))
        at += x.numel()
    return out


def _from_pil(im: Any, device: torch.device) -> torch.Tensor:
    from mmie.encoders.vision import _to_rgb

    a = np.asarray(_to_rgb(im), dtype=np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1).to(device)
