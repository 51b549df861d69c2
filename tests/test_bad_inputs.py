"""Bad inputs everywhere: readers, image loader, CLI, Python API and the HTTP service.

Each case asserts the error type (or HTTP status) *and* that the message names the problem
(file / line / field / limit). Failed commands must leave no half-written output file.
"""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

import mmie
import mmie.cli
from mmie.data import readers
from mmie.data.images import ImageLoader, load_image
from mmie.errors import DataError, ImageError
from test_training_e2e import COMBOS, get_run

# --------------------------------------------------------------------------- readers
CONLL_OK = "IMGID:1\nRT\tO\nJordan\tB-PER\n\n"

READER_CASES = [
    # (id, reader, file bytes, expected line, regex the message must contain)
    ("conll-one-column", readers.read_conll, b"IMGID:1\nRT\nJordan\tB-PER\n\n", 2,
     r"expected .*token.*tag"),
    ("conll-three-columns", readers.read_conll, b"IMGID:1\nRT\tO\tX\n\n", 2, r"columns"),
    ("conll-invalid-utf8", readers.read_conll, b"IMGID:1\nJos\xe9\tB-PER\n\n", 2,
     r"invalid UTF-8"),
    ("conll-utf16-file", readers.read_conll, CONLL_OK.encode("utf-16"), 1, r"invalid UTF-8"),
    ("conll-unknown-tag", readers.read_conll, b"IMGID:1\nRT\tO\nJordan\tX-PER\n\n", 3,
     r"X-PER"),
    ("conll-imgid-in-post", readers.read_conll, b"IMGID:1\nRT\tO\nIMGID:2\nA\tO\n\n", 3,
     r"IMGID"),
    ("conll-imgid-no-tokens-at-end", readers.read_conll, b"IMGID:1\nRT\tO\n\nIMGID:2\n", 4,
     r"no tokens"),
    ("conll-bad-imgid", readers.read_conll, b"IMGID:\nRT\tO\n\n", 1, r"IMGID"),
    ("mnre-not-a-literal", readers.read_mnre, b"{'token': ['a', 'b'], 'h': \n", 1,
     r"not a Python literal or JSON"),
    ("mnre-missing-relation", readers.read_mnre,
     b"{'token': ['a', 'b'], 'h': {'name': 'a', 'pos': [0, 1]}, 't': {'name': 'b', 'pos': "
     b"[1, 2]}, 'img_id': 'x.jpg'}\n", 1, r"relation"),
    ("mnre-span-out-of-range", readers.read_mnre,
     b"{'token': ['a', 'b'], 'h': {'name': 'a', 'pos': [0, 1]}, 't': {'name': 'b', 'pos': "
     b"[1, 5]}, 'img_id': 'x.jpg', 'relation': 'None'}\n", 1, r"out of range"),
    ("mnre-empty-span", readers.read_mnre,
     b"{'token': ['a', 'b'], 'h': {'name': 'a', 'pos': [1, 1]}, 't': {'name': 'b', 'pos': "
     b"[1, 2]}, 'img_id': 'x.jpg', 'relation': 'None'}\n", 1, r"empty"),
    ("mnre-list-not-dict", readers.read_mnre, b"[1, 2, 3]\n", 1, r"dict"),
    ("mnre-empty-tokens", readers.read_mnre,
     b"{'token': [], 'h': {'name': 'a', 'pos': [0, 1]}, 't': {'name': 'b', 'pos': [1, 2]}, "
     b"'img_id': 'x.jpg', 'relation': 'None'}\n", 1, r"empty"),
    ("mnre-second-line-bad", readers.read_mnre,
     b"{'token': ['a', 'b'], 'h': {'name': 'a', 'pos': [0, 1]}, 't': {'name': 'b', 'pos': "
     b"[1, 2]}, 'img_id': 'x.jpg', 'relation': 'None'}\n{'token': 5}\n", 2, r"token"),
    ("mfiger-invalid-json", readers.read_mfiger, b'{"mention": \n', 1, r"invalid JSON"),
    ("wikidiverse-span-out-of-range", readers.read_wikidiverse,
     json.dumps([["Obama in Paris", "http://x/y.jpg", "news",
                  [["Obama", "PER", 0, 99, "http://w/Obama"]]]]).encode(), None,
     r"out of range"),
    ("wikidiverse-not-a-list", readers.read_wikidiverse, b"{\"a\": 1}", None, r"list|\["),
    ("mmie-jsonl-missing-tokens", readers.read_mmie_jsonl, b'{"id": "1"}\n', 1,
     r"missing required field 'tokens'"),
    ("mmie-jsonl-span-out-of-range", readers.read_mmie_jsonl,
     b'{"id": "1", "tokens": ["a"], "entities": [{"start": 0, "end": 3, "label": "PER"}]}\n',
     1, r"out of range"),
    ("mmie-jsonl-bad-relation-index", readers.read_mmie_jsonl,
     b'{"id": "1", "tokens": ["a", "b"], "entities": [{"start": 0, "end": 1, "label": "PER"}],'
     b' "relations": [{"head": 0, "tail": 4, "label": "x"}]}\n', 1, r"relation"),
    ("mmie-jsonl-tokens-not-list", readers.read_mmie_jsonl, b'{"id": "1", "tokens": "ab"}\n',
     1, r"tokens"),
]


@pytest.mark.parametrize("case", READER_CASES, ids=[c[0] for c in READER_CASES])
def test_reader_errors_name_file_line_and_problem(case, tmp_path):
    name, reader, data, line, pattern = case
    p = tmp_path / f"{name}.txt"
    p.write_bytes(data)
    with pytest.raises(DataError, match=pattern) as ei:
        reader(p)
    err = ei.value
    assert err.path == str(p) and str(p) in str(err)
    if line is not None:
        assert err.line == line, str(err)
        assert f"line {line}" in str(err)


def test_empty_file_cannot_be_sniffed(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_bytes(b"")
    with pytest.raises(DataError, match="file is empty") as ei:
        readers.read_any(p)
    assert str(p) in str(ei.value)


def test_unknown_format_and_unsniffable(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("hello world\n", encoding="utf-8")
    with pytest.raises(DataError, match="unknown format 'xml'"):
        readers.read_any(p, format="xml")
    p.write_text('{"weird": 1}\n', encoding="utf-8")
    with pytest.raises(DataError, match="none of the known field sets"):
        readers.read_any(p)
    p.write_text("hello world\n", encoding="utf-8")  # read as CoNLL: names the bad tag
    with pytest.raises(DataError, match=r"line 1, field 'tag': tag 'world' is not a BIO tag"):
        readers.read_any(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="file not found") as ei:
        readers.read_conll(tmp_path / "nope.txt")
    assert "nope.txt" in str(ei.value)
    with pytest.raises(DataError, match="directory"):
        readers.read_conll(tmp_path)


# --------------------------------------------------------------------------- images
def _png(size=(16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(size=(64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(buf, format="JPEG")
    return buf.getvalue()


def test_image_missing(tmp_path):
    with pytest.raises(ImageError, match="not found") as ei:
        load_image(tmp_path / "none.jpg")
    assert "none.jpg" in str(ei.value)


def test_image_zero_byte(tmp_path):
    p = tmp_path / "zero.jpg"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty image file \(0 bytes\)"):
        load_image(p)
    with pytest.raises(ImageError, match=r"0 bytes"):
        load_image(b"")


def test_image_truncated(tmp_path):
    p = tmp_path / "cut.jpg"
    p.write_bytes(_jpeg()[:200])
    with pytest.raises(ImageError, match=r"corrupt or truncated|truncated") as ei:
        load_image(p)
    assert "cut.jpg" in str(ei.value)


def test_image_not_an_image(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is text, not a picture\n" * 10)
    with pytest.raises(ImageError, match="not an image file"):
        load_image(p)


def test_image_too_many_bytes(tmp_path):
    data = _png()
    with pytest.raises(ImageError, match=rf"{len(data)} bytes exceeds the limit"):
        load_image(data, max_bytes=len(data) - 1)
    p = tmp_path / "big.png"
    p.write_bytes(data)
    with pytest.raises(ImageError, match="exceeds the limit"):
        load_image(p, max_bytes=10)


def test_image_decompression_bomb_lowered_limit(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png((300, 300)))
    with pytest.raises(ImageError, match=r"90000 pixels exceeds the limit of 1000") as ei:
        load_image(p, max_pixels=1000)
    assert "bomb.png" in str(ei.value)
    with pytest.raises(ImageError, match="exceeds the limit"):
        load_image(Image.new("RGB", (300, 300)), max_pixels=1000)


def test_image_wrong_source_type():
    with pytest.raises(ImageError, match="expected a path, bytes or a PIL image, got int"):
        load_image(42)


def test_image_loader_path_traversal_and_policy(tmp_path):
    loader = ImageLoader(tmp_path, policy="error")
    with pytest.raises(ImageError, match="outside the image directory"):
        loader.load("../../etc/passwd", example_id="e1")
    with pytest.raises(ImageError, match="unknown image policy 'ignore'"):
        ImageLoader(tmp_path, policy="ignore")
    with pytest.raises(ImageError, match="skip") as ei:  # says how to go on
        loader.load("missing.jpg", example_id="post-7")
    assert "post-7" in str(ei.value)
    skip = ImageLoader(tmp_path, policy="skip")
    assert skip.load("missing.jpg", example_id="post-7") is None


# --------------------------------------------------------------------------- Python API
def _ner_pred():
    out, _, _ = get_run("mmib_ner", *COMBOS["mmib_ner"])
    return out, mmie.load(out / "model")


def _re_pred():
    out, _, _ = get_run("fusion_re", *COMBOS["fusion_re"])
    return out, mmie.load(out / "model")


@pytest.mark.parametrize("text", ["", "   \t\n  "], ids=["empty", "whitespace"])
def test_api_empty_post(text):
    _, pred = _ner_pred()
    with pytest.raises(DataError, match="text is empty") as ei:
        pred.predict(text=text)
    assert ei.value.field == "text"


def test_api_too_long_post_names_the_limit():
    _, pred = _ner_pred()
    with pytest.raises(DataError, match=r"10000 words; the limit is 512"):
        pred.predict(text=" ".join(["word"] * 10000))


def test_api_text_wrong_type():
    _, pred = _ner_pred()
    with pytest.raises(DataError, match="text must be a string, got int"):
        pred.predict(text=123)


def test_api_unknown_field():
    _, pred = _ner_pred()
    with pytest.raises(DataError, match=r"unknown field\(s\) \['txt'\] in item 1"):
        pred.predict_batch([{"text": "ok post"}, {"txt": "typo"}])


def test_api_candidate_labels_on_fixed_label_model():
    _, pred = _ner_pred()
    with pytest.raises(DataError, match="only accepted by zero-shot models") as ei:
        pred.predict(text="Obama in Paris", candidate_labels=["city"])
    assert ei.value.field == "candidate_labels"


def test_api_head_offsets_outside_text():
    _, pred = _re_pred()
    with pytest.raises(DataError, match=r"head offsets \[0, 99\) are outside the text "
                                        r"\(length 14\)"):
        pred.predict(text="Obama in Paris", head=(0, 99), tail=(9, 14))
    with pytest.raises(DataError, match=r"tail.*covers no word"):
        pred.predict(text="Obama  in Paris", head=(0, 5), tail=(5, 7))
    with pytest.raises(DataError, match=r"head must be \[start, end\]"):
        pred.predict(text="Obama in Paris", head="abc", tail=(9, 14))


def test_api_re_without_tail():
    _, pred = _re_pred()
    with pytest.raises(DataError, match="needs head and tail"):
        pred.predict(text="Obama in Paris", head=(0, 5))


def test_api_corrupt_image_bytes():
    _, pred = _ner_pred()
    with pytest.raises(ImageError, match="not an image"):
        pred.predict(text="Obama in Paris", image=b"GIF89a-not-really")


# --------------------------------------------------------------------------- CLI
def test_cli_predict_missing_input_file(tmp_path, capsys):
    out, _ = _ner_pred()
    dst = tmp_path / "o.jsonl"
    rc = mmie.cli.main(["predict", str(out / "model"), "--input", str(tmp_path / "no.jsonl"),
                        "--output", str(dst)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "no.jsonl" in err and "file not found" in err
    assert not dst.exists()


def test_cli_bad_jsonl_line_names_line_and_writes_nothing(tmp_path, capsys):
    out, _ = _ner_pred()
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"text": "Obama in Paris"}\n\n{"text": "oops"\n', encoding="utf-8")
    dst = tmp_path / "o.jsonl"
    rc = mmie.cli.main(["predict", str(out / "model"), "--input", str(inp), "--output",
                        str(dst)])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"{inp}, line 3" in err and "invalid JSON" in err
    assert not dst.exists() and not (tmp_path / "o.jsonl.tmp").exists()


def test_cli_bad_item_names_line_and_writes_nothing(tmp_path, capsys):
    out, _ = _ner_pred()
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"text": "Obama in Paris"}\n["a list"]\n', encoding="utf-8")
    dst = tmp_path / "o.jsonl"
    assert mmie.cli.main(["predict", str(out / "model"), "--input", str(inp), "--output",
                          str(dst)]) == 1
    err = capsys.readouterr().err
    assert f"{inp}, line 2" in err and "JSON object" in err
    assert not dst.exists()
    inp.write_text('{"text": "Obama in Paris"}\n{"text": "Obama"}\n{"text": "   "}\n',
                   encoding="utf-8")
    assert mmie.cli.main(["predict", str(out / "model"), "--input", str(inp), "--output",
                          str(dst)]) == 1
    err = capsys.readouterr().err
    assert f"{inp}, line 3" in err and "text is empty" in err
    assert not dst.exists() and not (tmp_path / "o.jsonl.tmp").exists()


def test_cli_bad_head(capsys):
    out, _ = _re_pred()
    rc = mmie.cli.main(["predict", str(out / "model"), "--text", "Obama in Paris", "--head",
                        "a,b", "--tail", "9,14"])
    assert rc == 1
    assert "--head must be START,END character offsets, got 'a,b'" in capsys.readouterr().err


def test_cli_missing_model_dir(tmp_path, capsys):
    rc = mmie.cli.main(["predict", str(tmp_path / "nomodel"), "--text", "hi"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "nomodel" in err


def test_cli_failed_train_leaves_no_run_dir(tmp_path, capsys):
    run = tmp_path / "run"
    assert mmie.cli.main(["train", "--output-dir", str(run), "--set",
                          "trainer.max_epoch=1"]) == 1
    assert "max_epochs" in capsys.readouterr().err
    assert not run.exists()


# --------------------------------------------------------------------------- HTTP service
@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    from mmie.serve.app import create_app

    _, pred = _ner_pred()
    app = create_app(pred, max_body_bytes=4096, max_text_chars=500)
    with TestClient(app) as c:
        yield c


def test_http_ok_baseline(client):
    r = client.post("/predict", json={"text": "Obama in Paris"})
    assert r.status_code == 200, r.text
    assert r.json()["task"] == "ner"


def test_http_oversized_body(client):
    r = client.post("/predict", content=json.dumps({"text": "x " * 5000}),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert "limit of 4096 bytes" in r.json()["detail"]


def test_http_text_over_limit(client):
    r = client.post("/predict", json={"text": "y" * 600})
    assert r.status_code == 413 and "'text'" in r.json()["detail"]


@pytest.mark.parametrize("body,field", [({"text": 5}, "text"),
                                        ({"text": "ok", "head": "zero"}, "head"),
                                        ({"text": ["a", "b"]}, "text")])
def test_http_wrong_json_types(client, body, field):
    r = client.post("/predict", json=body)
    assert r.status_code == 422
    assert field in json.dumps(r.json()["detail"])


def test_http_unknown_field(client):
    r = client.post("/predict", json={"text": "Obama", "colour": "red"})
    assert r.status_code == 422
    assert "colour" in json.dumps(r.json()["detail"])


def test_http_corrupt_image(client):
    bad = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40).decode()
    r = client.post("/predict", json={"text": "Obama in Paris", "image": bad})
    assert r.status_code == 415
    assert "'image'" in r.json()["detail"]


def test_http_invalid_base64_and_empty_text(client):
    r = client.post("/predict", json={"text": "Obama", "image": "@@not base64@@"})
    assert r.status_code == 422 and "not valid base64" in r.json()["detail"]
    r = client.post("/predict", json={"text": "   "})
    assert r.status_code == 422 and "'text'" in r.json()["detail"]


def test_http_malformed_json_and_content_type(client):
    r = client.post("/predict", content=b'{"text": ', headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.post("/predict", content=b"text=hi", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "text/plain" in r.json()["detail"]


def test_http_candidate_labels_on_ner_model(client):
    r = client.post("/predict", json={"text": "Obama", "candidate_labels": ["x"]})
    assert r.status_code == 422 and "candidate_labels" in r.json()["detail"]
    # the service keeps serving after errors
    assert client.post("/predict", json={"text": "Obama in Paris"}).status_code == 200


# --------------------------------------------------------------------------- checkpoints, run dirs
class _Evil:
    """A pickle that runs a shell command when loaded (what a crafted checkpoint does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def _write_last_ckpt(run, obj) -> None:
    import torch

    (run / "checkpoints").mkdir(parents=True)
    torch.save(obj, run / "checkpoints" / "last.ckpt")


def test_resume_refuses_a_checkpoint_that_would_run_code(tmp_path, capsys):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    _write_last_ckpt(run, {"state_dict": {}, "global_step": 5, "x": _Evil(marker)})
    rc = mmie.cli.main(["train", "--output-dir", str(run), "--resume"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert not marker.exists()
    assert "last.ckpt" in err and "refused to load this checkpoint" in err
    assert "Traceback" not in err


def test_resume_with_a_garbage_checkpoint_is_a_clear_error(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"this is not a checkpoint at all")
    rc = mmie.cli.main(["train", "--output-dir", str(run), "--resume"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert f"{run / 'checkpoints' / 'last.ckpt'}: not a readable checkpoint" in err
    assert "delete it to train from scratch" in err


def test_train_output_dir_under_a_file(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    rc = mmie.cli.main(["train", "--output-dir", str(f / "run")])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert f"{f} is a file, not a directory" in err


def test_train_output_dir_unwritable(tmp_path, capsys):
    rc = mmie.cli.main(["train", "--output-dir", "/proc/mmie-no-such-run"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "output_dir /proc/mmie-no-such-run: cannot write there" in err


# --------------------------------------------------------------------------- broken model folders
def _model_copy(tmp_path):
    import shutil

    out, _ = _ner_pred()
    dst = tmp_path / "model"
    shutil.copytree(out / "model", dst)
    return dst


@pytest.mark.parametrize("damage,expect", [
    ("no-weights", r"model.safetensors is missing"),
    ("truncated-header", r"model.safetensors: unreadable weights file .*truncated"),
    ("truncated-half", r"model.safetensors: unreadable weights file .*truncated"),
    ("corrupt-config", r"config.json: corrupt config.json"),
    ("config-not-mmie", r"config.json: not an mmie model config"),
])
def test_damaged_model_folder_is_a_clear_error(tmp_path, capsys, damage, expect):
    import re

    d = _model_copy(tmp_path)
    w = d / "model.safetensors"
    if damage == "no-weights":
        w.unlink()
    elif damage.startswith("truncated"):
        data = w.read_bytes()
        w.write_bytes(data[:1000] if damage == "truncated-header" else data[:len(data) // 2])
    elif damage == "corrupt-config":
        (d / "config.json").write_text("{bad json", encoding="utf-8")
    else:
        (d / "config.json").write_text('{"hello": 1}', encoding="utf-8")
    with pytest.raises(mmie.errors.MMIEError, match=expect):
        mmie.load(d)
    rc = mmie.cli.main(["predict", str(d), "--text", "Obama in Paris"])
    err = capsys.readouterr().err
    assert rc == 1 and re.search(expect, err), err
    assert "copy the model folder again, or re-create it with `mmie train`" in err


# --------------------------------------------------------------------------- silently ignored / late
@pytest.mark.parametrize("args,field", [(["--head", "0,5"], "head"),
                                        (["--tail", "9,14"], "tail"),
                                        (["--head", "0,5", "--tail", "9,14"], "head")])
def test_head_tail_on_an_ner_model_are_refused(capsys, args, field):
    out, pred = _ner_pred()
    rc = mmie.cli.main(["predict", str(out / "model"), "--text", "Obama in Paris", *args])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"field '{field}'" in err and "not used by an NER model" in err
    with pytest.raises(DataError, match="not used by an NER model") as ei:
        pred.predict(text="Obama in Paris", **{field: (0, 5)})
    assert ei.value.field == field


def test_predict_text_with_output_writes_the_file(tmp_path, capsys):
    out, pred = _ner_pred()
    dst = tmp_path / "one.jsonl"
    assert mmie.cli.main(["predict", str(out / "model"), "--text", "Obama in Paris",
                          "--output", str(dst)]) == 0
    rows = [json.loads(l) for l in dst.read_text(encoding="utf-8").splitlines()]
    assert rows == [pred.predict(text="Obama in Paris")]
    assert capsys.readouterr().out == ""  # written to the file, not printed


@pytest.mark.parametrize("cmd", ["predict-input", "predict-text", "evaluate"])
def test_unwritable_output_fails_before_the_work(tmp_path, capsys, monkeypatch, cmd):
    out, _ = _ner_pred()
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"text": "Obama in Paris"}\n', encoding="utf-8")
    dst = tmp_path / "nodir" / "x.jsonl"
    import mmie.inference.predictor as predictor

    def no_work(*a, **k):  # the model must not even be loaded
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr(predictor, "load", no_work)
    args = {"predict-input": ["predict", str(out / "model"), "--input", str(inp)],
            "predict-text": ["predict", str(out / "model"), "--text", "Obama"],
            "evaluate": ["evaluate", str(out / "model")]}[cmd]
    rc = mmie.cli.main([*args, "--output", str(dst)])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert f"--output {dst}: the folder {dst.parent} does not exist" in err


def test_set_with_invalid_yaml_value(tmp_path, capsys):
    rc = mmie.cli.main(["train", "--output-dir", str(tmp_path / "r"), "--set", "trainer.lr=[1,"])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "override --set trainer.lr=[1,: the value '[1,' is not valid YAML" in err
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- data stats / validate
def _mnre_line(name="Obama", relation="/per/loc/place_of_residence") -> str:
    return repr({"token": ["Obama", "in", "Paris"], "h": {"name": name, "pos": [0, 1]},
                 "t": {"name": "Paris", "pos": [2, 3]}, "img_id": "x.jpg",
                 "relation": relation}) + "\n"


def _mnre_folder(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "train.txt").write_text(_mnre_line() + "\n" + _mnre_line("Obama Barack") +
                                 _mnre_line(), encoding="utf-8")
    (d / "valid.txt").write_text(_mnre_line(), encoding="utf-8")
    (d / "test.txt").write_text(_mnre_line(relation="None"), encoding="utf-8")
    return d


def test_data_stats_names_the_file_and_line_of_a_name_mismatch(tmp_path, capsys):
    d = _mnre_folder(tmp_path)
    assert mmie.cli.main(["data", "stats", str(d)]) == 0  # a counted warning, not an error
    out = capsys.readouterr().out
    assert (f"train: name mismatch 1 (warning: an entity name differs from its token span; "
            f"the span is used) at {d / 'train.txt'} line 3") in out
    assert mmie.cli.main(["data", "stats", str(d), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)["splits"]
    assert st["train"]["name_mismatch"] == 1 and st["train"]["name_mismatch_lines"] == [3]
    assert "name_mismatch" not in st["valid"]


def test_data_validate_a_folder_of_split_files(tmp_path, capsys):
    d = _mnre_folder(tmp_path)
    assert mmie.cli.main(["data", "validate", str(d)]) == 0
    out = capsys.readouterr().out
    assert "unknown data set" not in out
    assert f"[ok] {d / 'train.txt'}: readable as mnre (posts 3, instances 3, relations 3)" in out
    assert f"name mismatch 1" in out and "line 3" in out
    (d / "test.txt").write_text(_mnre_line() + "{'token': ['a'], 'h': 5, 't': 1}\n",
                                encoding="utf-8")
    assert mmie.cli.main(["data", "validate", str(d), "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    bad = [r for r in rep["files"] if not r["ok"]]
    assert len(bad) == 1 and f"{d / 'test.txt'}, line 2, field 'h'" in bad[0]["checks"][0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert mmie.cli.main(["data", "validate", str(empty)]) == 1
    assert "no train/valid/test files found" in capsys.readouterr().out
