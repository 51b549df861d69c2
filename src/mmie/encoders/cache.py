"""On-disk cache of image features from a frozen :class:`~mmie.encoders.vision.VisionEncoder`.

Layout: ``<cache_dir>/<encoder.identity>/<aa>/<content sha256>.safetensors``, one file per
distinct image, holding ``global`` ``[D]`` and ``regions`` ``[R, D]`` (float32, or float16
with ``half=True``) and metadata (identity, content hash, a sha256 of the tensor bytes).

* The key is the sha256 of the image file's bytes (or, for in-memory images, of mode, size
  and pixel bytes) joined with the encoder's identity, so an edited picture or a different
  encoder (name, weights or preprocessing) never reuses stale features.
* Writes are atomic (a temporary file in the same folder, then ``os.replace``), so concurrent
  runs (DDP ranks) and interrupted runs never leave half-written entries.
* A file that does not verify (unreadable, wrong shapes, checksum mismatch, NaN) is reported
  with a warning and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence, Union

import torch

from mmie.errors import ConfigError, ImageError

__all__ = ["FeatureCache", "ImageSource", "image_content_hash"]

#: what may stand for an image: a file path, a PIL image, or a callable returning a PIL image
ImageSource = Union[str, os.PathLike, Callable[[], Any], Any]
_FORMAT = "mmie-features-1"


def image_content_hash(source: ImageSource) -> tuple[str, Any]:
    """``(sha256 hex, PIL image or None)``: of the file's bytes for a path (the image is
    not decoded), of the decoded pixels for a PIL image or a callable (returned too)."""
    from PIL import Image

    if isinstance(source, (str, os.PathLike)):
        h = hashlib.sha256()
        with open(source, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest(), None
    img = source() if callable(source) and not isinstance(source, Image.Image) else source
    if not isinstance(img, Image.Image):
        raise TypeError(f"expected a path, a PIL image or a callable returning one, got "
                        f"{type(img).__name__}")
    h = hashlib.sha256(f"pil|{img.mode}|{img.size[0]}x{img.size[1]}|".encode())
    h.update(img.tobytes())
    return h.hexdigest(), img


class FeatureCache:
    """Compute-once storage of ``(global, regions)`` features per image.

    ``hits``/``misses`` count requested items served from disk / computed (over the life of
    the object); ``computed`` counts encoder forward passes per image (duplicates within a
    call are computed once); ``corrupt`` counts entries that failed verification.
    """

    def __init__(self, cache_dir: str | Path, encoder, *, half: bool = False,
                 batch_size: int | None = None, progress: bool | None = None,
                 regions: bool = True, compute_device: str | None = None):
        if not getattr(encoder, "frozen", False):
            raise ConfigError("the feature cache needs a frozen vision encoder (features of a "
                              "trainable one change while training)")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.encoder = encoder
        self.half = bool(half)
        #: pictures per encoder pass; ``None``: 256 on a GPU, 32 on the CPU
        self.batch_size = None if batch_size is None else int(batch_size)
        self.progress = progress
        #: False: store only the global vector (object crops; ``regions`` come back [N, 0, D])
        self.keep_regions = bool(regions)
        #: where missing features are computed: ``None`` = wherever the encoder is; a device
        #: (``"cuda:0"``) moves the encoder there for the computation and back afterwards (a
        #: training run builds its cache before Lightning moves the model: on an H200
        #: machine's CPU that ran at 15 pictures/s; see training.data.feature_device)
        self.compute_device = compute_device
        self.root = Path(cache_dir)
        self.hits = 0
        self.misses = 0
        self.computed = 0
        self.corrupt = 0

    # ---- paths ------------------------------------------------------------------------------
    @property
    def directory(self) -> Path:
        """The folder of the current encoder's entries."""
        return self.root / self.encoder.identity

    def path_for(self, content_hash: str) -> Path:
        return self.directory / content_hash[:2] / f"{content_hash}.safetensors"

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "computed": self.computed,
                "corrupt": self.corrupt}

    # ---- main entry -----------------------------------------------------------------------------
    def get_or_compute(self, items: Sequence[tuple[str, ImageSource]],
                       digests: Sequence[str] | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """``items``: ``(image_key, source)`` pairs; ``image_key`` names the image in errors
        (a file name, an example id), ``source`` is a path, a PIL image or a callable that
        returns one. Returns ``(global [N, D], regions [N, R, D])`` float32 in item order
        (float16-rounded values when ``half``).

        ``digests``: the items' cache keys when the caller knows them (object crops: the
        picture's hash and the pixel box); a callable source is then only called on a miss."""
        identity = self.encoder.identity
        directory = self.root / identity
        D = self.encoder.out_dim
        R = self.encoder.num_regions if self.keep_regions else 0
        if digests is not None and len(digests) != len(items):
            raise ValueError(f"{len(digests)} digests for {len(items)} items")
        N = len(items)
        glob = torch.empty(N, D, dtype=torch.float32)
        regions = torch.empty(N, R, D, dtype=torch.float32)
        todo: dict[str, list[int]] = {}   # content hash -> rows
        images: dict[str, Any] = {}       # content hash -> (key, source, PIL or None)
        for i, (key, source) in enumerate(items):
            try:
                if digests is not None:  # a PIL image is used as it is, a callable on a miss
                    digest, img = digests[i], (source if hasattr(source, "getpixel") else None)
                else:
                    digest, img = image_content_hash(source)
            except FileNotFoundError as e:
                raise ImageError(f"image {key!r}: file not found", path=str(source)) from e
            except OSError as e:
                raise ImageError(f"image {key!r}: cannot read it ({e})", path=str(source)) from e
            if digest in todo:
                todo[digest].append(i)
                self.misses += 1
                continue
            entry = self._read(directory / digest[:2] / f"{digest}.safetensors", identity,
                               digest, D, R, key)
            if entry is not None:
                glob[i], regions[i] = entry
                self.hits += 1
                continue
            todo[digest] = [i]
            images[digest] = (key, source, img)
            self.misses += 1
        if todo:
            self._compute(todo, images, directory, identity, glob, regions)
        return glob, regions

    # ---- internals ------------------------------------------------------------------------------
    def _read(self, path: Path, identity: str, digest: str, D: int, R: int,
              key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not path.exists():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                g = f.get_tensor("global")
                r = f.get_tensor("regions")
            problem = None
            if meta.get("format") != _FORMAT or meta.get("identity") != identity \
                    or meta.get("content_sha256") != digest:
                problem = "metadata does not match"
            elif tuple(g.shape) != (D,) or tuple(r.shape) != (R, D):
                problem = f"shapes {tuple(g.shape)}, {tuple(r.shape)} != ({D},), ({R}, {D})"
            elif meta.get("data_sha256") != _tensor_digest(g, r):
                problem = "checksum mismatch"
            elif not (torch.isfinite(g).all() and torch.isfinite(r).all()):
                problem = "non-finite values"
        except Exception as e:  # safetensors raises its own error types for damaged files
            problem = f"unreadable ({type(e).__name__}: {e})"
        if problem is not None:
            self.corrupt += 1
            warnings.warn(f"feature cache: the entry of image {key!r} is corrupt ({problem}); "
                          f"recomputing it ({path})", stacklevel=3)
            return None
        return g.float(), r.float()

    def _compute(self, todo, images, directory: Path, identity: str, glob, regions) -> None:
        digests = list(todo)
        show = self.progress if self.progress is not None else len(digests) >= 256
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(digests), desc="image features", unit="img")
        p = next(self.encoder.parameters(), None)
        home = p.device if p is not None else torch.device("cpu")
        device = home if self.compute_device is None else torch.device(self.compute_device)
        if device != home:
            self.encoder.to(device)
        step = self.batch_size or (32 if device.type == "cpu" else 256)
        dtype = torch.float16 if self.half else torch.float32
        try:
            for s in range(0, len(digests), step):
                chunk = digests[s:s + step]
                pils = []
                for d in chunk:
                    key, source, img = images[d]
                    if img is None:
                        img = source() if callable(source) else _open_image(key, source)
                    pils.append(img)
                pixels = self.encoder.preprocess(pils).to(device)
                self.encoder.eval()
                with torch.no_grad():
                    g, r = self.encoder(pixels)
                g = g.detach().to("cpu", dtype).contiguous()
                r = r.detach().to("cpu", dtype).contiguous()
                if not self.keep_regions:
                    r = r[:, :0]
                for j, d in enumerate(chunk):
                    gj, rj = g[j].clone(), r[j].clone()
                    self._write(directory / d[:2] / f"{d}.safetensors", gj, rj, identity, d,
                                images[d][0])
                    for i in todo[d]:
                        glob[i] = gj.float()
                        regions[i] = rj.float()
                self.computed += len(chunk)
                for d in chunk:
                    images[d] = None  # free decoded pictures early
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if device != home:
                self.encoder.to(home)
            if bar is not None:
                bar.close()
        self._write_info(directory, identity)

    def _write(self, path: Path, g: torch.Tensor, r: torch.Tensor, identity: str, digest: str,
               key: str) -> None:
        from safetensors.torch import save_file

        meta = {"format": _FORMAT, "identity": identity, "content_sha256": digest,
                "data_sha256": _tensor_digest(g, r), "image_key": str(key)[:500],
                "encoder": str(self.encoder.name)}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem[:16]}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            save_file({"global": g, "regions": r}, tmp, metadata=meta)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def _write_info(self, directory: Path, identity: str) -> None:
        info = directory / "encoder.json"
        if info.exists():
            return
        spec = {}
        try:
            spec = self.encoder.spec()
            spec.pop("config", None)
        except Exception:  # informational only
            pass
        data = {"identity": identity, "name": self.encoder.name, "out_dim": self.encoder.out_dim,
                "num_regions": self.encoder.num_regions, "half": self.half, "spec": spec}
        fd, tmp = tempfile.mkstemp(prefix=".encoder.", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, default=str)
        os.replace(tmp, info)


def _tensor_digest(g: torch.Tensor, r: torch.Tensor) -> str:
    h = hashlib.sha256(f"{g.dtype}|{tuple(g.shape)}|{tuple(r.shape)}|".encode())
    for t in (g, r):
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _open_image(key: str, source: Any):
    """Decode an image file (mode kept; the encoder's preprocess converts to RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as im:
            im.load()
            return im.copy()
    except FileNotFoundError as e:
        raise ImageError(f"image {key!r}: file not found", path=str(source)) from e
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise ImageError(f"image {key!r}: cannot decode it ({e})", path=str(source)) from e
