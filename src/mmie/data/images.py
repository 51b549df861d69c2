"""Finding and loading post images, with an explicit policy for missing or broken ones.

Every image is opened with Pillow, checked against a byte and a pixel limit *before* it is
decoded (decompression-bomb guard), fully decoded (so a truncated file is caught here, not in
a worker later), rotated by its EXIF orientation and converted to RGB.

A problem (missing, zero-byte, corrupt, not an image, too large) is handled by the policy:

* ``"error"`` (default): raise :class:`~mmie.errors.ImageError` naming the path and the problem;
* ``"skip"``: return ``None`` (the caller drops the example) and count it;
* ``"blank"``: return a neutral grey image and count it.

Nothing is replaced silently: :attr:`ImageLoader.counts` and :meth:`ImageLoader.report` say
how many images were loaded, missing, corrupt, too large, blanked and skipped.
"""

from __future__ import annotations

import io
import os
import re
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from mmie.errors import ImageError

__all__ = ["POLICIES", "IMAGE_SUFFIXES", "resolve_image", "ImageLoader", "load_image",
           "read_image_bytes", "decode_image_bytes", "open_image_header", "load_images",
           "map_images", "image_workers", "blank_image", "probe_size"]

POLICIES = ("error", "skip", "blank")
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg")
DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
BLANK_RGB = (128, 128, 128)


def _err(message: str, path: str | Path | None = None, kind: str = "corrupt") -> ImageError:
    """An ImageError whose ``kind`` attribute says which count it belongs to
    (missing, corrupt or too_large)."""
    e = ImageError(message, path=path)
    e.kind = kind  # type: ignore[attr-defined]
    return e


def blank_image(size: tuple[int, int] = (224, 224)) -> Image.Image:
    """A neutral grey RGB image (what the ``blank`` policy returns)."""
    return Image.new("RGB", tuple(size), BLANK_RGB)


def _candidates(image_id: str) -> list[str]:
    """File names to try for an image id: the id itself (for a URL, the last part of its
    path); then, when it has no suffix, the id with each known suffix; when it has a known
    image suffix, the same stem with the other known suffixes (``1015799.jpg`` is found as
    ``1015799.png``)."""
    name = unquote(Path(urlparse(image_id).path).name) if "://" in image_id else image_id
    out = [name]
    suffix = Path(name).suffix
    if not suffix:
        out.extend(name + s for s in IMAGE_SUFFIXES)
    elif suffix.lower() in IMAGE_SUFFIXES:
        stem = name[: -len(suffix)]
        out.extend(stem + s for s in IMAGE_SUFFIXES if s != suffix.lower())
    return out


def resolve_image(image_dir: str | Path | None, image_id: str | None) -> Path | None:
    """The path of image ``image_id`` in ``image_dir``, or ``None`` when no file is there.

    Tries the id as given, then ``.jpg``, ``.png`` and ``.jpeg`` when the id has no suffix (or
    in place of its own image suffix: readers name Twitter images ``<IMGID>.jpg``, and a set
    stored as PNG is still found); a URL id (WikiDiverse) is looked up by its file name. An id that would leave ``image_dir``
    (absolute, or with ``..``) raises :class:`ImageError`.
    """
    if image_dir is None or image_id is None or image_id == "":
        return None
    root = Path(image_dir)
    for name in _candidates(str(image_id)):
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise ImageError(f"image id {image_id!r} points outside the image directory",
                             path=root, field="image")
        p = root / rel
        if p.is_file():
            return p
    return None


def _describe_limit(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n} bytes"


def _too_many_pixels(pixels: int | str, max_pixels: int, where) -> ImageError:
    return _err(f"image of {pixels} pixels exceeds the limit of {max_pixels} pixels "
                "(decompression-bomb guard)", path=where, kind="too_large")


def _bomb_error(e: Exception, max_pixels: int, where) -> ImageError:
    """Pillow's own refusal of a huge image, reworded against mmie's limit (Pillow's message
    quotes its own ``MAX_IMAGE_PIXELS``, which is not the limit in force here)."""
    m = re.search(r"\((\d+) pixels\)", str(e))
    return _too_many_pixels(m.group(1) if m else "too many", max_pixels, where)


def _open(src: io.BytesIO, where, max_pixels: int) -> Image.Image:
    """``Image.open`` with mmie's pixel limit in place of Pillow's (the header only)."""
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own MAX_IMAGE_PIXELS; mmie's max_pixels decides below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(src)
    except Image.DecompressionBombError as e:
        raise _bomb_error(e, max_pixels, where) from None
    except UnidentifiedImageError:
        raise _err("not an image file (Pillow cannot identify its format)", path=where,
                   kind="corrupt") from None
    w, h = im.size
    if w * h > max_pixels:
        raise _err(f"image of {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels} "
                   "pixels (decompression-bomb guard)", path=where, kind="too_large")
    return im


def probe_size(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(width, height)`` from an image's header, before any pixel is decoded; raises
    :class:`ImageError` (``kind`` 'too_large' or 'corrupt') like :func:`load_image`."""
    with open_image_header(data, max_pixels=max_pixels) as im:
        return im.size


def _decode(data: bytes, path: Path | None, *, max_pixels: int) -> Image.Image:
    """Open, guard, fully decode and normalise one image; raise ImageError (``kind``
    'corrupt' or 'too_large') on any problem."""
    src = io.BytesIO(data)
    where = path if path is not None else "<bytes>"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = _open(src, where, max_pixels)
            if ImageFile.LOAD_TRUNCATED_IMAGES:
                # someone enabled Pillow's global leniency; this loader never accepts
                # truncated files, so decode with it off for this call
                ImageFile.LOAD_TRUNCATED_IMAGES = False
                try:
                    im.load()
                finally:
                    ImageFile.LOAD_TRUNCATED_IMAGES = True
            else:
                im.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb_error(e, max_pixels, where) from None
    except UnidentifiedImageError:
        raise _err("not an image file (Pillow cannot identify its format)", path=where,
                   kind="corrupt") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise _err(f"corrupt or truncated image ({e})", path=where, kind="corrupt") from None
    try:
        im = ImageOps.exif_transpose(im)
    except Exception as e:  # a broken EXIF block: keep the pixels, say so
        warnings.warn(f"{where}: EXIF orientation ignored ({e})", stacklevel=3)
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", rgba.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return im.convert("RGB") if im.mode != "RGB" else im


def load_image(source: str | Path | bytes | Image.Image, *,
               max_bytes: int = DEFAULT_MAX_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Load one user-supplied image (a path, raw bytes, or a PIL image) as RGB.

    Used by the Python API and the service; any problem raises :class:`ImageError` naming the
    source and the problem (missing, empty, too many bytes or pixels, not an image, corrupt).
    """
    if isinstance(source, Image.Image):
        w, h = source.size
        if w * h > max_pixels:
            raise _err(f"image of {w}x{h} pixels exceeds the limit of {max_pixels} pixels",
                       kind="too_large")
        try:
            source.load()
            im = ImageOps.exif_transpose(source)
        except Exception as e:
            raise _err(f"corrupt image ({e})", kind="corrupt") from None
        return im.convert("RGB") if im.mode != "RGB" else im
    data, path = read_image_bytes(source, max_bytes=max_bytes)
    return _decode(data, path, max_pixels=max_pixels)


def read_image_bytes(source: str | Path | bytes, *, max_bytes: int = DEFAULT_MAX_BYTES
                     ) -> tuple[bytes, Path | None]:
    """The encoded bytes of a picture given as a path or as bytes, with the checks
    :func:`load_image` makes before decoding (missing, a folder, empty, over ``max_bytes``,
    unreadable): ``(data, path)``, ``path`` ``None`` for bytes. Raises :class:`ImageError`."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise _err("empty image data (0 bytes)", kind="corrupt")
        if len(data) > max_bytes:
            raise _err(f"image data of {len(data)} bytes exceeds the limit of "
                       f"{_describe_limit(max_bytes)}", kind="too_large")
        return data, None
    if isinstance(source, (str, Path)):
        p = Path(source)
        if p.is_dir():
            raise _err("is a directory, not an image file; give the path of a picture",
                       path=p, kind="missing")
        if not p.is_file():
            raise _err("image file not found", path=p, kind="missing")
        size = p.stat().st_size
        if size == 0:
            raise _err("empty image file (0 bytes)", path=p, kind="corrupt")
        if size > max_bytes:
            raise _err(f"image file of {size} bytes exceeds the limit of "
                       f"{_describe_limit(max_bytes)}", path=p, kind="too_large")
        try:
            return p.read_bytes(), p
        except OSError as e:
            raise _err(f"cannot read image file ({e.strerror or e})", path=p,
                       kind="corrupt") from None
    raise ImageError(f"expected a path, bytes or a PIL image, got {type(source).__name__}")


def decode_image_bytes(data: bytes, path: str | Path | None = None, *,
                       max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Encoded picture bytes (from :func:`read_image_bytes`) decoded as :func:`load_image`
    does: guarded, fully decoded, EXIF-rotated, RGB; errors name ``path``."""
    return _decode(data, Path(path) if path is not None else None, max_pixels=max_pixels)


def open_image_header(data: bytes, path: str | Path | None = None, *,
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """The picture's header only (format, size, mode, EXIF), nothing decoded; the pixel limit
    and an unidentifiable format raise :class:`ImageError` as in :func:`load_image`."""
    where = path if path is not None else "<bytes>"
    try:
        return _open(io.BytesIO(data), where, max_pixels)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise _err(f"corrupt image ({e})", path=where, kind="corrupt") from None


# ---- a batch of pictures at once ----------------------------------------------------------
_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _forget_pool_in_child() -> None:
    """A forked process (a DataLoader worker) inherits the pool object but not its threads:
    it starts its own on first use instead of waiting on threads that do not exist."""
    global _POOL, _POOL_SIZE, _POOL_LOCK
    _POOL, _POOL_SIZE, _POOL_LOCK = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def image_workers() -> int:
    """Threads that decode and transform a batch's pictures: ``MMIE_IMAGE_WORKERS``, else
    the machine's cores up to 8 (Pillow's decoders and resamplers release the GIL), and 1 on
    a machine of fewer than 4 cores, where the vision encoder needs them (2 cores: a 128 px
    picture loads and transforms in 2.2 ms on one thread, 1.7 ms on two, beside ~35 ms a
    post in all; ``benchmarks/preprocess_speed.py``)."""
    env = os.environ.get("MMIE_IMAGE_WORKERS", "").strip()
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ImageError(f"MMIE_IMAGE_WORKERS={env!r} is not a whole number",
                             field="MMIE_IMAGE_WORKERS") from None
        if n < 1:
            raise ImageError(f"MMIE_IMAGE_WORKERS={n} must be at least 1",
                             field="MMIE_IMAGE_WORKERS")
        return n
    cores = os.cpu_count() or 1
    return min(8, cores) if cores >= 4 else 1


def map_images(fn, items, workers: int | None = None) -> list:
    """``[fn(x) for x in items]``, in order, on a shared thread pool when there are several
    items and workers. The first item that fails (in item order, as the plain loop would)
    raises its own exception; nothing is dropped or replaced."""
    global _POOL, _POOL_SIZE
    items = list(items)
    n = image_workers() if workers is None else int(workers)
    if n <= 1 or len(items) < 2:
        return [fn(x) for x in items]
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE != n:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL, _POOL_SIZE = ThreadPoolExecutor(n, thread_name_prefix="mmie-image"), n
        pool = _POOL
    futures = [pool.submit(fn, x) for x in items]
    return [f.result() for f in futures]  # result() re-raises in order


def load_images(sources, workers: int | None = None, **limits) -> list[Image.Image | None]:
    """:func:`load_image` over ``sources`` (``None`` stays ``None``), decoded in parallel
    (:func:`map_images`); the first bad source, in order, raises its :class:`ImageError`."""
    return map_images(lambda s: None if s is None else load_image(s, **limits), sources,
                      workers)


class ImageLoader:
    """Load the images of a data set from ``image_dir`` under a missing/broken-image policy.

    ``image_dir`` may be ``None`` or absent: then every image counts as missing. ``load``
    returns an RGB :class:`PIL.Image.Image`, or ``None`` under ``skip``; the problem kinds are
    counted in :attr:`counts` (``loaded``, ``missing``, ``corrupt``, ``too_large``; ``blank``
    and ``skipped`` count what the policy did) and the first few are kept for :meth:`report`.
    """

    MAX_LISTED = 10

    def __init__(self, image_dir: str | Path | None, policy: str = "error", *,
                 max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
                 blank_size: tuple[int, int] = (224, 224)):
        if policy not in POLICIES:
            raise ImageError(f"unknown image policy {policy!r}; expected one of "
                             f"{', '.join(POLICIES)}", field="image_policy")
        self.image_dir = Path(image_dir) if image_dir is not None else None
        self.policy = policy
        self.max_bytes = int(max_bytes)
        self.max_pixels = int(max_pixels)
        self.blank_size = tuple(blank_size)
        self.counts: dict[str, int] = {k: 0 for k in ("loaded", "missing", "corrupt",
                                                      "too_large", "blank", "skipped")}
        self.problems: list[str] = []

    def path_of(self, image_id: str | None) -> Path | None:
        """The file of ``image_id``, or ``None`` when it is not there."""
        return resolve_image(self.image_dir, image_id)

    def _fail(self, kind: str, err: ImageError, example_id: str | None) -> Image.Image | None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        msg = str(err) + (f" (example {example_id!r})" if example_id is not None else "")
        if len(self.problems) < self.MAX_LISTED:
            self.problems.append(f"{kind}: {msg}")
        if self.policy == "error":
            ex = f" (example {example_id!r})" if example_id is not None else ""
            raise _err(f"{err.reason}{ex}; set the image policy to 'skip' or 'blank' to go on "
                       "without it", path=err.path, kind=kind)
        if self.policy == "skip":
            self.counts["skipped"] += 1
            return None
        self.counts["blank"] += 1
        return blank_image(self.blank_size)

    def load(self, image_id: str | None, *, example_id: str | None = None) -> Image.Image | None:
        """Load image ``image_id`` (a file name relative to ``image_dir``)."""
        try:
            path = self.path_of(image_id)
        except ImageError as e:
            return self._fail("corrupt", e, example_id)
        if path is None:
            if image_id is None:
                err = _err("the example has no image reference", kind="missing")
            elif self.image_dir is None:
                err = _err(f"image {image_id!r}: no image directory was given", kind="missing")
            else:
                expected = self.image_dir / _candidates(str(image_id))[0]
                note = "" if self.image_dir.is_dir() else " (the image directory does not exist)"
                err = _err(f"image file not found{note}", path=expected, kind="missing")
            return self._fail("missing", err, example_id)
        try:
            img = load_image(path, max_bytes=self.max_bytes, max_pixels=self.max_pixels)
        except ImageError as e:
            kind = getattr(e, "kind", "corrupt")
            return self._fail(kind, e, example_id)
        self.counts["loaded"] += 1
        return img

    def report(self) -> str:
        """A short text account: counts, the policy applied, and the first problems."""
        c = self.counts
        total = c["loaded"] + c["missing"] + c["corrupt"] + c["too_large"]
        parts = [f"images: {total} requested, {c['loaded']} loaded, {c['missing']} missing, "
                 f"{c['corrupt']} corrupt, {c['too_large']} too large"]
        bad = c["missing"] + c["corrupt"] + c["too_large"]
        if bad:
            parts.append(f"policy '{self.policy}': {c['blank']} replaced by a grey image, "
                         f"{c['skipped']} examples skipped")
        if self.image_dir is not None and not self.image_dir.is_dir():
            parts.append(f"image directory {self.image_dir} does not exist")
        parts.extend("  " + p for p in self.problems)
        if bad > len(self.problems):
            parts.append(f"  ... and {bad - len(self.problems)} more")
        return "\n".join(parts)
