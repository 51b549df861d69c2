"""Catalog (data dir, layouts, checksums, validation, download) and data set statistics."""

from __future__ import annotations

import io
import json
import shutil
import urllib.error
from pathlib import Path

import pytest

from mmie.data import catalog
from mmie.data.catalog import DATASETS, UnknownSplitError, load_split
from mmie.data.stats import dataset_stats, format_stats
from mmie.errors import DataError

from helpers import data_root

FIX = Path(__file__).parent / "fixtures"


# --------------------------------------------------------------------------------------------
def test_data_dir_resolution_order(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MMIE_DATA", raising=False)
    work = tmp_path / "proj" / "repo"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    assert catalog.data_dir() == home / ".cache" / "mmie" / "data"
    shared = tmp_path / "proj" / "shared" / "data"
    shared.mkdir(parents=True)
    assert catalog.data_dir() == shared
    monkeypatch.setenv("MMIE_DATA", str(tmp_path / "env"))
    assert catalog.data_dir() == tmp_path / "env"
    assert catalog.data_dir(tmp_path / "cli") == tmp_path / "cli"
    assert catalog.data_dir(str(tmp_path / "cli")) == tmp_path / "cli"


def test_catalog_entries_are_complete():
    assert set(DATASETS) == {"twitter2015", "twitter2017", "mnre", "mfiger", "synthetic",
                             "photos_ner", "photos_re", "photos_typing"}
    for name in ("twitter2015", "twitter2017", "mnre"):
        info = DATASETS[name]
        assert set(info.sha256) == set(info.files.values()) == set(info.urls)
        assert set(info.expected) == set(info.files)
        assert info.urls and all(u.startswith("https://raw.githubusercontent.com/")
                                 for u in info.urls.values())
        assert info.image_source.startswith("https://github.com/") and info.citation
    assert DATASETS["mnre"].urls["mnre_val.txt"].endswith("/mnre_txt/mnre_val%20.txt")
    assert DATASETS["twitter2015"].task == "ner" and DATASETS["mnre"].task == "re"
    assert DATASETS["mfiger"].task == "typing"


@pytest.mark.data
def test_hard_coded_checksums_match_shared_sha256sums():
    sums = {}
    for line in (data_root() / "SHA256SUMS").read_text("utf-8").splitlines():
        digest, rel = line.split(maxsplit=1)
        sums[rel] = digest
    ours = {f"{info.root}/{rel}": d for info in DATASETS.values() for rel, d in info.sha256.items()}
    assert ours == sums


@pytest.mark.data
@pytest.mark.parametrize("name", ["twitter2015", "twitter2017", "mnre", "mfiger"])
def test_validate_real_data(name):
    rep = catalog.validate(name, data_root())
    assert rep.ok, str(rep)
    text = str(rep)
    assert "PROBLEMS" not in text and "sha256 ok" in text
    if name == "twitter2015":
        assert "entities 6352, entities_b_only 6166, i_opened_spans 186" in text
        assert "images train, valid, test: not present" in text
    d = rep.to_dict()
    json.dumps(d)
    assert d["ok"] and len(d["files"]) == (1 if name == "mfiger" else 3)


def test_validate_reports_checksum_count_and_missing_problems(tmp_path):
    root = tmp_path / "data"
    (root / "twitter2017").mkdir(parents=True)
    # a tiny file in place of train.txt, nothing for valid/test
    shutil.copy(FIX / "twitter_sample.txt", root / "twitter2017" / "train.txt")
    rep = catalog.validate("twitter2017", root)
    assert not rep.ok
    rows = {r["split"]: r for r in rep.rows}
    assert rows["valid"]["checks"] == ["missing"] and rows["test"]["checks"] == ["missing"]
    assert not rows["train"]["ok"]
    checks = " ".join(rows["train"]["checks"])
    assert "sha256" in checks and "!= expected 801e149e8635" in checks
    assert "posts 4 != 3373" in checks and "i_opened_spans 2 != 0" in checks
    assert "PROBLEMS FOUND" in str(rep)


# --------------------------------------------------------------------------------------------
@pytest.mark.data
def test_load_split_aliases_and_unknown_split():
    root = data_root()
    assert len(load_split("twitter2017", "dev", root).examples) == 723
    assert len(load_split("mnre", "valid", root).examples) == 1624
    assert load_split("twitter2017", "valid", root).stats["split"] == "valid"
    with pytest.raises(UnknownSplitError, match="has no split 'extra'; its splits are train, "
                                                "valid, test"):
        load_split("twitter2017", "extra", root)
    with pytest.raises(KeyError):  # the same error is a KeyError, for lookups by alias
        load_split("twitter2017", "extra", root)


def test_load_split_errors(tmp_path):
    with pytest.raises(DataError, match=r"unknown data set 'twitter2019'; known: twitter2015"):
        load_split("twitter2019", "train", tmp_path)
    with pytest.raises(DataError, match=r"twitter2015/train\.txt: file not found; run `mmie "
                                        r"data download twitter2015`") as ei:
        load_split("twitter2015", "train", tmp_path)
    msg = str(ei.value)
    assert str(tmp_path / "twitter2015" / "test.txt") in msg
    assert "twitter2015_images/  (images)" in msg
    with pytest.raises(UnknownSplitError, match="no split files in the catalog"):
        load_split("mfiger", "train", tmp_path)


def test_load_split_from_folder_file_and_synthetic_layout(tmp_path):
    syn = tmp_path / "syn"
    (syn / "ner").mkdir(parents=True)
    (syn / "re").mkdir()
    (syn / "images").mkdir()
    for s in ("train", "valid", "test"):
        shutil.copy(FIX / "twitter_sample.txt", syn / "ner" / f"{s}.txt")
    for s in ("train", "val", "test"):
        shutil.copy(FIX / "mnre_sample.txt", syn / "re" / f"mnre_{s}.txt")
    ner = load_split("synthetic", "dev", syn)
    assert ner.format == "conll" and len(ner.examples) == 4
    re_ = load_split("synthetic", "dev", syn, task="re")
    assert re_.format == "mnre" and re_.path == syn / "re" / "mnre_val.txt"
    (syn / "typing").mkdir()
    shutil.copy(FIX / "mfiger_sample.jsonl", syn / "typing" / "valid.jsonl")
    typ = load_split("synthetic", "dev", syn, task="typing")
    assert typ.format == "mfiger" and len(typ.examples) == 4
    # Twitter typing (leave-one-type-out) reads the NER files themselves
    assert DATASETS["twitter2015"].for_task("typing") is DATASETS["twitter2015"]
    assert catalog.image_dir("synthetic", "train", syn) == syn / "images"
    # a plain folder of split files, with the task sub-folder found too
    assert load_split(syn / "ner", "valid").path == syn / "ner" / "valid.txt"
    assert load_split(syn, "val", task="re").path == syn / "re" / "mnre_val.txt"
    with pytest.raises(UnknownSplitError, match=r"no file for split 'extra'"):
        load_split(syn / "ner", "extra")
    # a single file, whatever the split
    assert load_split(FIX / "mfiger_sample.jsonl", "test").format == "mfiger"


def test_image_dir_layouts(tmp_path):
    assert catalog.image_dir("mnre", "dev", tmp_path) == tmp_path / "mnre" / "img_org" / "val"
    assert catalog.image_dir("twitter2015", "test", tmp_path) == \
        tmp_path / "twitter2015" / "twitter2015_images"
    alt = tmp_path / "twitter2015_images"  # where the UMT archive unpacks
    alt.mkdir()
    assert catalog.image_dir("twitter2015", "test", tmp_path) == alt
    assert catalog.image_dir("mfiger", "train", tmp_path) is None


# --------------------------------------------------------------------------------------------
def test_download_offline_message(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    monkeypatch.setattr(catalog.urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as ei:
        catalog.download("mnre", tmp_path)
    msg = str(ei.value)
    assert msg.startswith("could not download https://raw.githubusercontent.com/thecharm/MNRE/")
    assert f"place the files in {tmp_path / 'mnre'} with this layout" in msg
    for rel in ("mnre_train.txt", "mnre_val.txt", "mnre_test.txt", "img_org/<split>/"):
        assert rel in msg
    assert not list((tmp_path / "mnre").glob("*.part"))


@pytest.mark.data
def test_download_verifies_checksums(tmp_path, monkeypatch):
    src = data_root() / "twitter2017"
    served = []

    class Resp(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    def fake(url, timeout=None):
        served.append(url)
        return Resp((src / url.rsplit("/", 1)[1]).read_bytes())
    monkeypatch.setattr(catalog.urllib.request, "urlopen", fake)
    paths = catalog.download("twitter2017", tmp_path)
    assert [p.name for p in paths] == ["train.txt", "valid.txt", "test.txt"]
    assert len(served) == 3 and catalog.validate("twitter2017", tmp_path).ok
    catalog.download("twitter2017", tmp_path)  # present with the right checksum: kept
    assert len(served) == 3

    def corrupt(url, timeout=None):
        return Resp(b"IMGID:1\nx\tO\n")
    monkeypatch.setattr(catalog.urllib.request, "urlopen", corrupt)
    with pytest.raises(DataError, match=r"SHA-256 .* differs from the expected"):
        catalog.download("twitter2017", tmp_path / "other")
    assert not list((tmp_path / "other" / "twitter2017").iterdir())


def test_download_not_downloadable(tmp_path):
    with pytest.raises(DataError, match="'synthetic' is not downloadable: generated by"):
        catalog.download("synthetic", tmp_path)


# --------------------------------------------------------------------------------------------
@pytest.mark.data
def test_dataset_stats_twitter2015_both_counts():
    d = dataset_stats("twitter2015", data_root())
    json.dumps(d)
    tr = d["splits"]["train"]
    assert (tr["posts"], tr["entities"], tr["entities_b_only"], tr["i_opened_spans"]) == \
        (4000, 6352, 6166, 186)
    assert tr["entities_by_label"]["PER"] == {"conll": 2285, "b_only": 2217, "i_opened": 68}
    raw = (data_root() / "twitter2015" / "train.txt").read_text("utf-8").splitlines()
    for lab, c in tr["entities_by_label"].items():
        assert c["b_only"] == sum(1 for ln in raw if ln.endswith("\tB-" + lab))
    assert sum(c["i_opened"] for c in tr["entities_by_label"].values()) == 186
    assert [d["splits"][s]["i_opened_spans"] for s in ("train", "valid", "test")] == \
        [186, 53, 135]
    assert tr["images"].startswith("not present")
    text = format_stats(d)
    assert "6352" in text and "6166" in text and "186" in text
    assert "2285 (2217 B + 68 I)" in text


@pytest.mark.data
def test_dataset_stats_mnre_relations():
    d = dataset_stats("mnre", data_root())
    assert [d["splits"][s]["instances"] for s in ("train", "val", "test")] == [12247, 1624, 1614]
    assert [d["splits"][s]["relation_labels"] for s in ("train", "val", "test")] == [23, 23, 21]
    assert d["splits"]["train"]["relations_by_label"]["None"] == 7744
    assert "relations per label" in format_stats(d)


def test_dataset_stats_images_and_folders(tmp_path):
    from PIL import Image

    folder = tmp_path / "mine"
    (folder / "images").mkdir(parents=True)
    shutil.copy(FIX / "twitter_sample.txt", folder / "train.txt")
    shutil.copy(FIX / "twitter_sample.txt", folder / "test.txt")
    Image.new("RGB", (2, 2)).save(folder / "images" / "1001.jpg")
    d = dataset_stats(folder)
    assert set(d["splits"]) == {"train", "test"}
    img = d["splits"]["train"]["images"]
    # posts: 1001 (found), 1002 (missing), no IMGID, 1001 again (found)
    assert img == {"dir": str(folder / "images"), "referenced": 3, "found": 2, "missing": 1,
                   "no_image_reference": 1}
    assert "2/3 found, 1 missing" in format_stats(d)
    one = dataset_stats(FIX / "mnre_sample.txt", image_dir=tmp_path / "nothing")
    assert one["splits"]["mnre_sample"]["images"].startswith("not present (expected in")
    assert one["splits"]["mnre_sample"]["name_mismatch"] == 1
    mf = dataset_stats("mfiger", FIX.parent / "no-such-dir")
    assert mf["types"].startswith("missing")
