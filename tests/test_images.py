"""Image loading: EXIF orientation, limits, broken files, and the missing/broken policies."""

from __future__ import annotations

import io
import re
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from mmie.data.images import ImageLoader, blank_image, load_image, resolve_image
from mmie.errors import DataError, ImageError


def _jpeg(path: Path, size=(40, 20), orientation: int | None = None) -> Path:
    """A white image with a red 10x10 block in its stored top-left corner."""
    im = Image.new("RGB", size, (255, 255, 255))
    im.paste((255, 0, 0), (0, 0, 10, 10))
    kw = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    im.save(path, "JPEG", quality=95, **kw)
    return path


def _png_header(path: Path, w: int, h: int) -> Path:
    """A PNG whose header claims w x h pixels, with no pixel data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def imgdir(tmp_path: Path) -> Path:
    d = tmp_path / "images"
    d.mkdir()
    _jpeg(d / "ok.jpg")
    Image.new("RGB", (8, 6), (0, 0, 255)).save(d / "blue.png")
    data = (d / "ok.jpg").read_bytes()
    (d / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.jpg").write_text("this is not an image\n", "utf-8")
    _png_header(d / "bomb.png", 100_000, 100_000)
    _png_header(d / "big.png", 10_000, 5_000)  # 50 M pixels: above mmie's 40 M default
    return d


def test_resolve_image(imgdir):
    assert resolve_image(imgdir, "ok.jpg") == imgdir / "ok.jpg"
    assert resolve_image(imgdir, "ok") == imgdir / "ok.jpg"
    assert resolve_image(imgdir, "blue") == imgdir / "blue.png"
    assert resolve_image(imgdir, "blue.jpg") == imgdir / "blue.png"  # other image suffix
    assert resolve_image(imgdir, "blue.gif") is None
    assert resolve_image(imgdir, "absent.jpg") is None
    assert resolve_image(imgdir, "absent") is None
    assert resolve_image(None, "ok.jpg") is None
    assert resolve_image(imgdir, None) is None
    assert resolve_image(imgdir, "https://upload.wikimedia.org/a/b/ok.jpg") == imgdir / "ok.jpg"
    with pytest.raises(ImageError, match="points outside the image directory"):
        resolve_image(imgdir, "../secret.jpg")
    with pytest.raises(ImageError, match="points outside the image directory"):
        resolve_image(imgdir, "/etc/passwd")


def test_exif_orientation_6_is_applied(tmp_path):
    p = _jpeg(tmp_path / "rot.jpg", size=(40, 20), orientation=6)
    with Image.open(p) as raw:
        assert raw.size == (40, 20)  # stored landscape
    im = load_image(p)
    assert im.mode == "RGB" and im.size == (20, 40)  # displayed portrait
    # orientation 6 = rotate 90 degrees clockwise: the stored top-left block goes top-right
    r, g, b = im.getpixel((15, 4))
    assert r > 200 and g < 60 and b < 60
    r, g, b = im.getpixel((4, 4))
    assert r > 200 and g > 200 and b > 200


@pytest.mark.parametrize("name,kind,pattern", [
    ("trunc.jpg", "corrupt", r"corrupt or truncated image"),
    ("empty.jpg", "corrupt", r"empty image file \(0 bytes\)"),
    ("text.jpg", "corrupt", r"not an image file"),
    ("bomb.png", "too_large", r"too large|exceeds the limit"),
    ("big.png", "too_large", r"10000x5000 = 50000000 pixels exceeds the limit of 40000000"),
    ("missing.jpg", "missing", r"image file not found"),
])
def test_problem_images_error_policy_names_path_and_problem(imgdir, name, kind, pattern):
    loader = ImageLoader(imgdir, policy="error")
    with pytest.raises(ImageError, match=rf"^{re.escape(str(imgdir / name))}.*{pattern}.*"
                                         r"example 'e1'.*'skip' or 'blank'") as ei:
        loader.load(name, example_id="e1")
    assert isinstance(ei.value, DataError) and ei.value.kind == kind
    assert loader.counts[kind] == 1 and loader.counts["loaded"] == 0


def test_load_image_problems_directly(imgdir):
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(imgdir / "trunc.jpg")
    with pytest.raises(ImageError, match=r"exceeds the limit of 100 bytes"):
        load_image(imgdir / "ok.jpg", max_bytes=100)
    with pytest.raises(ImageError, match=r"40x20 = 800 pixels exceeds the limit of 799"):
        load_image(imgdir / "ok.jpg", max_pixels=799)
    assert load_image(imgdir / "ok.jpg", max_pixels=800).size == (40, 20)
    with pytest.raises(ImageError, match=r"<bytes>: not an image"):
        load_image(b"GIF89a-but-not-really")
    with pytest.raises(ImageError, match="empty image data"):
        load_image(b"")
    with pytest.raises(ImageError, match="expected a path, bytes or a PIL image, got int"):
        load_image(42)  # type: ignore[arg-type]


def test_load_image_from_bytes_and_pil_and_modes(imgdir):
    a = load_image((imgdir / "ok.jpg").read_bytes())
    b = load_image(imgdir / "ok.jpg")
    assert a.size == b.size == (40, 20) and a.tobytes() == b.tobytes()
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    im = load_image(buf.getvalue())
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (255, 255, 255)  # transparent -> white
    gray = load_image(Image.new("L", (3, 2), 77))
    assert gray.mode == "RGB" and gray.getpixel((2, 1)) == (77, 77, 77)


def test_skip_and_blank_policies_count_everything(imgdir):
    names = ["ok.jpg", "blue", "trunc.jpg", "empty.jpg", "text.jpg", "bomb.png", "big.png",
             "missing.jpg", None]
    skip = ImageLoader(imgdir, policy="skip")
    out = [skip.load(n, example_id=f"e{i}") for i, n in enumerate(names)]
    assert [o is not None for o in out] == [True, True] + [False] * 7
    assert out[1].getpixel((0, 0)) == (0, 0, 255)
    assert skip.counts == {"loaded": 2, "missing": 2, "corrupt": 3, "too_large": 2, "blank": 0,
                           "skipped": 7}
    rep = skip.report()
    assert "9 requested, 2 loaded, 2 missing, 3 corrupt, 2 too large" in rep
    assert "policy 'skip': 0 replaced by a grey image, 7 examples skipped" in rep
    assert str(imgdir / "trunc.jpg") in rep and "example 'e2'" in rep

    blank = ImageLoader(imgdir, policy="blank", blank_size=(32, 16))
    out = [blank.load(n) for n in names]
    assert all(o is not None for o in out)
    assert out[2].size == (32, 16) and out[2].getcolors() == [(32 * 16, (128, 128, 128))]
    assert blank.counts["blank"] == 7 and blank.counts["skipped"] == 0
    assert blank.counts["loaded"] == 2


def test_absent_image_directory(tmp_path):
    loader = ImageLoader(tmp_path / "nowhere", policy="error")
    with pytest.raises(ImageError, match=r"nowhere/123\.jpg: image file not found \(the image "
                                         r"directory does not exist\)"):
        loader.load("123.jpg")
    none_dir = ImageLoader(None, policy="blank")
    assert none_dir.load("123.jpg").size == (224, 224)
    assert none_dir.counts["missing"] == 1 and none_dir.counts["blank"] == 1
    assert "does not exist" in ImageLoader(tmp_path / "nowhere", "skip").report()


def test_unknown_policy_and_blank_image():
    with pytest.raises(ImageError, match="unknown image policy 'ignore'"):
        ImageLoader(None, policy="ignore")
    im = blank_image((5, 3))
    assert im.size == (5, 3) and im.getpixel((4, 2)) == (128, 128, 128)
