"""The HTTP service (mmie.serve.app) against fake predictors: endpoints, JSON and multipart
input, every request limit and its status code, model errors, and micro-batching."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from mmie.errors import DataError
from mmie.serve.app import MicroBatcher, create_app

TYPES = {"Jordan": "PER", "Chicago": "LOC", "Bulls": "ORG"}


class FakeNER:
    """Capitalised words are entities; score 0.9 with a picture, 0.5 without. 'BOOM' in the
    text raises a model error, 'BADDATA' a DataError."""

    task = "ner"
    zero_shot = False

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.batch_calls: list[int] = []
        self.images: list = []
        self.lock = threading.Lock()

    def info(self) -> dict:
        return {"task": self.task, "labels": ["PER", "LOC", "ORG", "MISC"],
                "encoders": {"text": "fake-text", "vision": "fake-vision"},
                "version": "0.1.0", "zero_shot": self.zero_shot, "max_words": 128}

    def predict(self, text, image=None, *, head=None, tail=None, candidate_labels=None):
        if "BOOM" in text:
            raise RuntimeError("the fake model exploded")
        if "BADDATA" in text:
            raise DataError("fake bad input", field="text")
        self.images.append(None if image is None else image.size)
        out, pos = [], 0
        for word in text.split(" "):
            if word[:1].isupper():
                out.append({"text": word, "type": TYPES.get(word, "MISC"), "start": pos,
                            "end": pos + len(word), "score": 0.9 if image is not None else 0.5})
            pos += len(word) + 1
        return out

    def predict_batch(self, items):
        with self.lock:
            self.batch_calls.append(len(items))
        if self.delay:
            time.sleep(self.delay)
        return [self.predict(**it) for it in items]


class FakeRE(FakeNER):
    task = "re"

    def predict(self, text, image=None, *, head=None, tail=None, candidate_labels=None):
        assert head is not None and tail is not None
        label = f"{text[head[0]:head[1]]}->{text[tail[0]:tail[1]]}"
        return {"relation": label, "score": 0.75, "head": list(head), "tail": list(tail)}


class FakeTyping(FakeNER):
    task = "typing"
    zero_shot = True

    def predict(self, text, image=None, *, head=None, tail=None, candidate_labels=None):
        labels = candidate_labels or ["athlete", "city", "team"]
        mention = text[head[0]:head[1]]
        scores = {lab: (0.8 if lab[0].lower() == mention[0].lower() else 0.2 / len(labels))
                  for lab in labels}
        best = max(scores, key=scores.get)
        return {"type": best, "score": scores[best], "scores": scores}


class FakePipeline:
    zero_shot = False

    def extract(self, text, image=None, candidate_labels=None):
        ents = FakeNER().predict(text, image)
        rels = [{"head": 0, "tail": 1, "label": "/per/loc/place_of_residence", "score": 0.7}] \
            if len(ents) >= 2 else []
        return {"entities": ents, "relations": rels}


def png_bytes(w: int = 32, h: int = 24, noisy: bool = False) -> bytes:
    if noisy:
        import numpy as np
        arr = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
        im = Image.fromarray(arr)
    else:
        im = Image.new("RGB", (w, h), (200, 30, 30))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def ner():
    return FakeNER()


@pytest.fixture
def client(ner):
    with TestClient(create_app(ner, pipeline=FakePipeline())) as c:
        yield c


TEXT = "Jordan scores 30 in Chicago"


# --------------------------------------------------------------------------- basics
def test_health_model_docs(client, ner):
    h = client.get("/health")
    assert h.status_code == 200
    assert h.json()["status"] == "ok" and h.json()["task"] == "ner"
    assert h.json()["extract"] is True
    assert h.json()["limits"]["max_text_chars"] == 5000
    assert client.get("/model").json() == ner.info()
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert body["application/json"]["schema"]["additionalProperties"] is False
    assert "/extract" in spec["paths"]
    # the docs page works offline: rendered on the server, nothing loaded from a CDN
    docs = client.get("/docs")
    assert docs.status_code == 200 and "POST /predict" in docs.text and "candidate_labels" in docs.text
    assert "<script" not in docs.text and "cdn" not in docs.text.lower()
    page = client.get("/")
    assert page.status_code == 200 and "<textarea" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_predict_json_ner(client, ner):
    r = client.post("/predict", json={"text": TEXT})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task"] == "ner"
    assert body["result"] == [
        {"text": "Jordan", "type": "PER", "start": 0, "end": 6, "score": 0.5},
        {"text": "Chicago", "type": "LOC", "start": 20, "end": 27, "score": 0.5}]
    for e in body["result"]:
        assert TEXT[e["start"]:e["end"]] == e["text"]


def test_predict_json_base64_image_and_data_url(client, ner):
    b64 = base64.b64encode(png_bytes(40, 30)).decode()
    r = client.post("/predict", json={"text": TEXT, "image": b64})
    assert r.status_code == 200, r.text
    assert r.json()["result"][0]["score"] == 0.9
    r = client.post("/predict", json={"text": TEXT, "image": "data:image/png;base64," + b64})
    assert r.status_code == 200, r.text
    assert ner.images[-2:] == [(40, 30), (40, 30)]


def test_predict_multipart(client, ner):
    r = client.post("/predict", data={"text": TEXT},
                    files={"image": ("post.png", png_bytes(17, 11), "image/png")})
    assert r.status_code == 200, r.text
    assert [e["type"] for e in r.json()["result"]] == ["PER", "LOC"]
    assert r.json()["result"][0]["score"] == 0.9
    assert ner.images[-1] == (17, 11)
    # without a picture
    r = client.post("/predict", data={"text": TEXT}, files={"x": ("", b"", "text/plain")})
    assert r.status_code == 422  # unknown field 'x'
    r = client.post("/predict", data={"text": TEXT})
    assert r.status_code == 200 and r.json()["result"][0]["score"] == 0.5


# --------------------------------------------------------------------------- validation
def test_unknown_field_and_wrong_types(client):
    r = client.post("/predict", json={"text": TEXT, "picture": "x"})
    assert r.status_code == 422
    assert any(d["loc"] == ["body", "picture"] and d["type"] == "extra_forbidden"
               for d in r.json()["detail"])
    r = client.post("/predict", json={"text": 12})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "text"]
    r = client.post("/predict", json={"image": None})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "text"]
    assert r.json()["detail"][0]["type"] == "missing"
    r = client.post("/predict", json=[TEXT])
    assert r.status_code == 422
    r = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"
    r = client.post("/predict", data={"text": TEXT, "colour": "red"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "colour"]
    r = client.post("/predict", content=TEXT.encode(), headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "Content-Type" in r.json()["detail"]


def test_text_empty_and_too_long():
    with TestClient(create_app(FakeNER(), max_text_chars=30)) as c:
        r = c.post("/predict", json={"text": "   "})
        assert r.status_code == 422 and "'text'" in r.json()["detail"]
        r = c.post("/predict", json={"text": "a" * 31})
        assert r.status_code == 413
        assert "31 characters" in r.json()["detail"] and "30" in r.json()["detail"]
        assert c.post("/predict", json={"text": "a" * 30}).status_code == 200


def test_candidate_labels_on_non_zero_shot(client):
    r = client.post("/predict", json={"text": TEXT, "candidate_labels": ["PER"]})
    assert r.status_code == 422
    assert "candidate_labels" in r.json()["detail"] and "zero-shot" in r.json()["detail"]


def test_head_tail_rules():
    with TestClient(create_app(FakeRE())) as c:
        r = c.post("/predict", json={"text": TEXT, "head": [0, 6]})
        assert r.status_code == 422 and "'tail'" in r.json()["detail"]
        r = c.post("/predict", json={"text": TEXT})
        assert r.status_code == 422 and "'head' and 'tail'" in r.json()["detail"]
        r = c.post("/predict", json={"text": TEXT, "head": [0, 6], "tail": [20, 99]})
        assert r.status_code == 422 and "'tail'" in r.json()["detail"]
        r = c.post("/predict", json={"text": TEXT, "head": [0, 6], "tail": [20, 27]})
        assert r.status_code == 200, r.text
        assert r.json() == {"task": "re", "result": {"relation": "Jordan->Chicago", "score": 0.75,
                                                     "head": [0, 6], "tail": [20, 27]}}
        r = c.post("/predict", data={"text": TEXT, "head": "0,6", "tail": "[20, 27]"})
        assert r.status_code == 200 and r.json()["result"]["relation"] == "Jordan->Chicago"
        r = c.post("/predict", json={"text": TEXT, "head": [0, 6, 7], "tail": [20, 27]})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", "head"]
    with TestClient(create_app(FakeNER())) as c:
        r = c.post("/predict", json={"text": TEXT, "head": [0, 6]})
        assert r.status_code == 422 and "'head'" in r.json()["detail"]


def test_zero_shot_typing_labels():
    with TestClient(create_app(FakeTyping())) as c:
        r = c.post("/predict", json={"text": TEXT, "head": [20, 27],
                                     "candidate_labels": ["athlete", "city"]})
        assert r.status_code == 200, r.text
        res = r.json()["result"]
        assert res["type"] == "city" and set(res["scores"]) == {"athlete", "city"}
        r = c.post("/predict", data={"text": TEXT, "head": "0,6",
                                     "candidate_labels": "athlete, city, team"})
        assert r.status_code == 200 and r.json()["result"]["type"] == "athlete"
        assert set(r.json()["result"]["scores"]) == {"athlete", "city", "team"}
        r = c.post("/predict", json={"text": TEXT, "head": [0, 6], "candidate_labels": []})
        assert r.status_code == 422 and "candidate_labels" in r.json()["detail"]
        r = c.post("/predict", json={"text": TEXT})
        assert r.status_code == 422 and "'head'" in r.json()["detail"]


# --------------------------------------------------------------------------- size limits
def test_body_too_large_content_length():
    with TestClient(create_app(FakeNER(), max_body_bytes=1000)) as c:
        r = c.post("/predict", json={"text": "x" * 2000})
        assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]
        assert c.post("/predict", json={"text": TEXT}).status_code == 200


def test_body_too_large_streamed_without_content_length():
    """A chunked body (no Content-Length) is counted while it streams."""
    app = create_app(FakeNER(), max_body_bytes=1000)

    async def call(chunks):
        sent = []
        msgs = [{"type": "http.request", "body": ch, "more_body": i < len(chunks) - 1}
                for i, ch in enumerate(chunks)]

        async def receive():
            return msgs.pop(0) if msgs else {"type": "http.disconnect"}

        async def send(m):
            sent.append(m)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "POST", "scheme": "http", "path": "/predict", "raw_path": b"/predict",
                 "query_string": b"", "root_path": "", "client": ("t", 1), "server": ("t", 80),
                 "headers": [(b"content-type", b"application/json"),
                             (b"transfer-encoding", b"chunked")]}
        await app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return start["status"], json.loads(body)

    big = json.dumps({"text": "y" * 3000}).encode()
    status, body = asyncio.run(call([big[i:i + 400] for i in range(0, len(big), 400)]))
    assert status == 413 and "1000 bytes" in body["detail"]
    small = json.dumps({"text": TEXT}).encode()
    status, body = asyncio.run(call([small[:10], small[10:]]))
    assert status == 200 and body["result"][0]["text"] == "Jordan"


def test_image_limits_and_corrupt_images():
    noisy = png_bytes(64, 64, noisy=True)
    assert len(noisy) > 5000
    with TestClient(create_app(FakeNER(), max_image_bytes=5000, max_image_pixels=2000)) as c:
        r = c.post("/predict", data={"text": TEXT}, files={"image": ("a.png", noisy, "image/png")})
        assert r.status_code == 413 and "max_image_bytes" in r.json()["detail"]
        r = c.post("/predict", json={"text": TEXT, "image": base64.b64encode(noisy).decode()})
        assert r.status_code == 413 and "max_image_bytes" in r.json()["detail"]
        r = c.post("/predict", data={"text": TEXT},
                   files={"image": ("b.png", png_bytes(50, 50), "image/png")})  # 2500 px
        assert r.status_code == 413 and "50x50" in r.json()["detail"]
        assert "max_image_pixels" in r.json()["detail"]
        r = c.post("/predict", data={"text": TEXT},
                   files={"image": ("c.png", b"this is not a picture", "image/png")})
        assert r.status_code == 415 and "'image'" in r.json()["detail"]
        truncated = png_bytes(40, 40, noisy=True)[:300]
        r = c.post("/predict", data={"text": TEXT},
                   files={"image": ("d.png", truncated, "image/png")})
        assert r.status_code == 415, r.text
        r = c.post("/predict", json={"text": TEXT, "image": "%%% not base64 %%%"})
        assert r.status_code == 422 and "base64" in r.json()["detail"]
        r = c.post("/predict", data={"text": TEXT},
                   files={"image": ("e.png", png_bytes(40, 40), "image/png")})  # 1600 px
        assert r.status_code == 200


# --------------------------------------------------------------------------- errors
def test_model_error_is_500_and_service_keeps_serving(client):
    r = client.post("/predict", json={"text": "BOOM goes the model"})
    assert r.status_code == 500
    assert r.json()["detail"].startswith("model error:") and "exploded" in r.json()["detail"]
    r = client.post("/predict", json={"text": "BADDATA here"})
    assert r.status_code == 422 and "fake bad input" in r.json()["detail"]
    r = client.post("/predict", json={"text": TEXT})
    assert r.status_code == 200 and len(r.json()["result"]) == 2


def test_extract_endpoint(client):
    r = client.post("/extract", data={"text": TEXT},
                    files={"image": ("p.png", png_bytes(), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [e["text"] for e in body["entities"]] == ["Jordan", "Chicago"]
    assert body["relations"] == [{"head": 0, "tail": 1, "label": "/per/loc/place_of_residence",
                                  "score": 0.7}]
    r = client.post("/extract", json={"text": TEXT, "head": [0, 6]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "head"]
    with TestClient(create_app(FakeNER())) as c:
        assert c.post("/extract", json={"text": TEXT}).status_code == 404


# --------------------------------------------------------------------------- batching
def test_concurrent_requests_are_batched():
    ner = FakeNER(delay=0.05)
    app = create_app(ner, batch_window_ms=30, max_batch=16)
    words = ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel"]

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            rs = await asyncio.gather(*[c.post("/predict", json={"text": f"see {w} now"})
                                        for w in words])
        return rs

    rs = asyncio.run(main())
    assert [r.status_code for r in rs] == [200] * 8
    assert [r.json()["result"][0]["text"] for r in rs] == words
    assert sum(ner.batch_calls) == 8
    assert len(ner.batch_calls) < 8, ner.batch_calls
    assert max(ner.batch_calls) > 1


def test_batch_failure_isolates_the_bad_request():
    ner = FakeNER()
    app = create_app(ner, batch_window_ms=50)
    texts = ["ok Alpha", "BOOM Bravo", "ok Charlie", "BADDATA Delta"]

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await asyncio.gather(*[c.post("/predict", json={"text": t}) for t in texts])

    rs = asyncio.run(main())
    assert [r.status_code for r in rs] == [200, 500, 200, 422]
    assert rs[0].json()["result"][0]["text"] == "Alpha"
    assert rs[2].json()["result"][0]["text"] == "Charlie"


def test_micro_batcher_respects_max_batch():
    calls = []

    def batch_fn(items):
        calls.append(len(items))
        return [it["x"] * 2 for it in items]

    b = MicroBatcher(batch_fn, lambda **kw: kw["x"] * 2, window_ms=50, max_batch=3)

    async def main():
        out = await asyncio.gather(*[b.submit({"x": i}) for i in range(7)])
        await b.aclose()
        return out

    assert asyncio.run(main()) == [0, 2, 4, 6, 8, 10, 12]
    assert calls == [3, 3, 1]


def test_predictor_with_a_task_object():
    """The lead's Predictor keeps a task object in ``.task``; the app reads its name."""

    class TaskObj:
        name = "re"

    class ObjRE(FakeRE):
        task = TaskObj()

        def info(self):
            return {**super().info(), "task": "re"}

    with TestClient(create_app(ObjRE())) as c:
        assert c.get("/health").json()["task"] == "re"
        r = c.post("/predict", json={"text": TEXT})
        assert r.status_code == 422 and "'head' and 'tail'" in r.json()["detail"]
        r = c.post("/predict", json={"text": TEXT, "head": [0, 6], "tail": [20, 27]})
        assert r.status_code == 200 and r.json()["task"] == "re"


def test_serve_loads_the_model_and_runs_uvicorn(monkeypatch, tmp_path):
    import uvicorn

    import mmie
    from mmie.serve import app as app_module

    seen = {}
    monkeypatch.setattr(mmie, "load", lambda path: seen.setdefault("loaded", str(path)) and FakeNER())
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    app_module.serve(tmp_path / "model", host="0.0.0.0", port=8123, max_text_chars=99)
    assert seen["loaded"] == str(tmp_path / "model")
    assert (seen["host"], seen["port"]) == ("0.0.0.0", 8123)
    with TestClient(seen["app"]) as c:
        assert c.get("/health").json()["limits"]["max_text_chars"] == 99
        assert c.post("/extract", json={"text": TEXT}).status_code == 404


# --------------------------------------------------------------------------- exposure, slow clients
def test_bearer_token_guards_everything_but_the_page_and_health():
    with TestClient(create_app(FakeNER(), token="s3cret")) as c:
        assert c.get("/health").json()["auth"] is True
        assert c.get("/").status_code == 200 and c.get("/static/app.js").status_code == 200
        for method, path in (("get", "/model"), ("post", "/predict"), ("get", "/docs"),
                             ("get", "/openapi.json")):
            r = getattr(c, method)(path, **({"json": {"text": TEXT}} if method == "post" else {}))
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"] == "Bearer"
            assert "Authorization: Bearer <token>" in r.json()["detail"]
        r = c.post("/predict", json={"text": TEXT}, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        r = c.post("/predict", json={"text": TEXT}, headers=ok)
        assert r.status_code == 200 and [e["text"] for e in r.json()["result"]] == ["Jordan",
                                                                                    "Chicago"]
        assert c.get("/model", headers=ok).status_code == 200
    with TestClient(create_app(FakeNER())) as c:  # no token: open, as before
        assert c.get("/health").json()["auth"] is False
        assert c.post("/predict", json={"text": TEXT}).status_code == 200


def test_model_info_has_no_absolute_path():
    class WithPath(FakeNER):
        def info(self):
            return {**super().info(), "path": "/srv/secret/runs/ner/model"}

        def predict(self, text, image=None, **kw):
            if "OPEN" in text:
                raise FileNotFoundError("/srv/secret/runs/ner/model/extra.bin missing")
            return super().predict(text, image, **kw)

    with TestClient(create_app(WithPath())) as c:
        info = c.get("/model").json()
        assert info["path"] == "model"
        r = c.post("/predict", json={"text": "OPEN it"})
        assert r.status_code == 500
        assert "/srv" not in r.json()["detail"] and ".../extra.bin" in r.json()["detail"]


def _scope(path="/predict"):
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": [(b"content-type", b"application/json"),
                                         (b"host", b"t")],
            "client": ("127.0.0.1", 1), "server": ("t", 80)}


def test_client_disconnecting_mid_body_logs_one_line_not_a_traceback(caplog):
    app = create_app(FakeNER())
    sent: list[dict] = []

    async def main():
        messages = [{"type": "http.request", "body": b'{"text": "Jor', "more_body": True},
                    {"type": "http.disconnect"}]

        async def receive():
            return messages.pop(0)

        async def send(message):
            sent.append(message)

        await app(_scope(), receive, send)  # returns: nothing raised into the server

    with caplog.at_level("INFO", logger="mmie.serve"):
        asyncio.run(main())
    assert sent == []  # nobody to answer
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    lines = [r.getMessage() for r in caplog.records if r.name == "mmie.serve"]
    assert lines == ["POST /predict: the client disconnected before sending the whole body"]


def test_a_body_that_does_not_arrive_in_time_is_408():
    app = create_app(FakeNER(), body_timeout_s=0.2)
    sent: list[dict] = []

    async def main():
        first = [{"type": "http.request", "body": b'{"text": "Jor', "more_body": True}]

        async def receive():
            if first:
                return first.pop(0)
            await asyncio.sleep(30)  # a slow client that never finishes

        async def send(message):
            sent.append(message)

        t0 = time.perf_counter()
        await asyncio.wait_for(app(_scope(), receive, send), 5)
        return time.perf_counter() - t0

    took = asyncio.run(main())
    assert took < 3
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["detail"] == ("the request body did not arrive within "
                                                     "0.2 s (body_timeout_s)")
    with TestClient(create_app(FakeNER())) as c:
        assert c.get("/health").json()["limits"]["body_timeout_s"] == 30.0


@pytest.mark.parametrize("port,why", [(70000, "between 0 and 65535"), (-1, "between 0 and 65535")])
def test_serve_refuses_a_bad_port_before_loading_the_model(monkeypatch, capsys, port, why):
    import mmie
    import mmie.cli

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the port was checked")

    monkeypatch.setattr(mmie, "load", no_load)
    assert mmie.cli.main(["serve", "some/model", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"--port {port}: a TCP port is {why}" in err


def test_serve_refuses_a_port_in_use_before_loading_the_model(monkeypatch, capsys):
    import socket

    import mmie
    import mmie.cli

    monkeypatch.setattr(mmie, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert mmie.cli.main(["serve", "some/model", "--port", str(port)]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_serve_token_from_flag_or_environment(monkeypatch):
    import uvicorn

    import mmie
    import mmie.cli

    seen = {}
    monkeypatch.setattr(mmie, "load", lambda path: FakeNER())
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app))
    for args, env in ((["--token", "abc"], None), ([], "abc")):
        if env:
            monkeypatch.setenv("MMIE_TOKEN", env)
        assert mmie.cli.main(["serve", "m", "--port", "0", *args]) == 0
        with TestClient(seen["app"]) as c:
            assert c.post("/predict", json={"text": TEXT}).status_code == 401
            assert c.post("/predict", json={"text": TEXT},
                          headers={"Authorization": "Bearer abc"}).status_code == 200
