"""`wct serve` API: uploads, preview caches, renders with SSE, limits, traversal, session end."""

import asyncio
import builtins
import io
import json
import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from fastapi import HTTPException
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx2
    from fastapi.testclient import TestClient

import wct  # noqa: E402
from wct import serve  # noqa: E402
from wct.demo import landscape, painting  # noqa: E402

BASE = "http://127.0.0.1"


def png_bytes(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


CONTENT = landscape(80, 60)
STYLE_A = painting(48, 48, seed=1)
STYLE_B = painting(48, 48, seed=7).transpose(Image.Transpose.ROTATE_90)


@pytest.fixture(scope="module")
def app(stylizer):
    app = serve.create_app(stylizer)
    yield app
    app.state.engine.prefetch = False
    app.state.worker.close()
    app.state.worker.thread.join(60)


@pytest.fixture
def client(app):
    return TestClient(app, base_url=BASE)


@pytest.fixture
def session(client):
    """A session with a content and two styles uploaded: (client, sid, content id, [style ids])."""
    sid = client.post("/api/sessions").json()["id"]
    ids = []
    for name, im in (("photo.png", CONTENT), ("a.png", STYLE_A), ("b.jpg", STYLE_B)):
        r = client.post(f"/api/sessions/{sid}/images?name={name}", content=png_bytes(im))
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    yield client, sid, ids[0], ids[1:]
    client.delete(f"/api/sessions/{sid}")


def test_page_and_assets_come_from_memory_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="alpha"' in page.text and "/app.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert client.get("/app.js").headers["content-type"].startswith("text/javascript")
    assert "EventSource" in client.get("/app.js").text
    assert client.get("/style.css").status_code == 200
    assert client.get("/index.html").status_code == 404  # only the three fixed routes exist


def test_only_loopback_host_names_are_served(app):
    evil = TestClient(app, base_url="http://attacker.example")
    assert evil.get("/").status_code == 400  # DNS rebinding: a foreign Host header is refused
    for base in ("http://localhost:7860", "http://[::1]:7860", "http://127.0.0.1"):
        assert TestClient(app, base_url=base).get("/").status_code == 200, base


def test_preview_matches_the_library_and_reuses_cached_statistics(session, stylizer, monkeypatch):
    client, sid, content, (style, _) = session
    calls = []
    real = stylizer.style
    monkeypatch.setattr(stylizer, "style", lambda *a, **k: calls.append(1) or real(*a, **k))
    outs = {}
    for alpha in (0.3, 1.0, 0.3):
        r = client.post(
            f"/api/sessions/{sid}/preview",
            json={"content": content, "styles": [style], "alpha": alpha, "size": 80},
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png" and int(r.headers["x-compute-ms"]) >= 0
        outs.setdefault(alpha, []).append(decode(r.content))
    assert len(calls) == 1  # the style was encoded once for three previews
    a, b = outs[0.3]
    assert np.array_equal(a, b)
    assert np.abs(outs[1.0][0].astype(int) - a).mean() > 2  # the preview follows alpha
    for alpha in (0.3, 1.0):  # 1.0 ran on the cached first-level encoding: still bit for bit
        expected = wct.stylize(CONTENT, STYLE_A, alpha=alpha, size=80, device="cpu")
        assert np.array_equal(outs[alpha][0], np.asarray(expected))


def test_idle_worker_prefetches_every_slider_position(session):
    client, sid, content, styles = session
    p = {"content": content, "styles": styles[:1], "levels": [3, 2, 1], "size": 48, "alpha": 0.5}
    first = client.post(f"/api/sessions/{sid}/preview", json=p)
    assert first.headers["x-prefetched"] == "0"
    frames = client.app.state.sessions.items[sid].frames
    deadline = time.monotonic() + 30
    while len(frames) < 21 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(frames) == [round(i / 20, 2) for i in range(21)]
    hit = client.post(f"/api/sessions/{sid}/preview", json=p | {"alpha": 0.85})
    assert hit.headers["x-prefetched"] == "1" and hit.headers["x-compute-ms"] == "0"
    expected = wct.stylize(CONTENT, STYLE_A, 0.85, (3, 2, 1), 48, device="cpu")
    assert np.array_equal(decode(hit.content), np.asarray(expected))  # prefetched frames are exact
    other = client.post(f"/api/sessions/{sid}/preview", json=p | {"levels": [2, 1]})
    assert other.headers["x-prefetched"] == "0"  # new parameters: the old frames are dropped
    assert not np.array_equal(decode(other.content), decode(first.content))


def test_preview_is_capped_at_256_px(session):
    client, sid, content, styles = session
    big = client.post(f"/api/sessions/{sid}/images", content=png_bytes(landscape(320, 240))).json()["id"]
    r = client.post(
        f"/api/sessions/{sid}/preview", json={"content": big, "styles": styles[:1], "levels": [2, 1]}
    )
    assert decode(r.content).shape == (192, 256, 3)


def test_render_streams_progress_and_downloads_the_same_image_as_the_cli_path(session):
    client, sid, content, styles = session
    p = {"content": content, "styles": styles, "weights": [0.7, 0.3], "alpha": 0.8, "size": 64}
    p |= {"levels": [4, 3, 2, 1], "preserve_color": True}
    r = client.post(f"/api/sessions/{sid}/render", json=p)
    assert r.status_code == 202
    job = r.json()["job"]
    with client.stream("GET", f"/api/sessions/{sid}/jobs/{job}/events") as events:
        assert events.headers["content-type"].startswith("text/event-stream")
        states = [json.loads(line[6:]) for line in events.iter_lines() if line.startswith("data: ")]
    progress = [s["progress"] for s in states]
    assert progress == sorted(progress) and states[-1]["status"] == "done" and progress[-1] == 1.0
    result = states[-1]["result"]
    assert (result["width"], result["height"]) == (64, 48)
    download = client.get(result["url"])
    assert download.headers["content-disposition"].startswith("attachment")
    expected = wct.stylize(
        CONTENT,
        [STYLE_A, STYLE_B],
        0.8,
        (4, 3, 2, 1),
        64,
        weights=[0.7, 0.3],
        preserve_color=True,
        device="cpu",
    )
    assert np.array_equal(decode(download.content), np.asarray(expected))
    assert client.get(f"/api/sessions/{sid}/results").json() == [result]
    assert client.get(f"/api/sessions/{sid}/jobs/{job}").json()["status"] == "done"


def test_a_transparent_photo_keeps_its_alpha_as_in_the_library(session):
    client, sid, _, styles = session
    photo = CONTENT.convert("RGBA")
    photo.putalpha(Image.linear_gradient("L").resize(photo.size))
    r = client.post(f"/api/sessions/{sid}/images?name=cut.png", content=png_bytes(photo))
    p = {"content": r.json()["id"], "styles": styles[:1], "alpha": 0.7, "size": 64, "levels": [2, 1]}
    job = client.post(f"/api/sessions/{sid}/render", json=p).json()["job"]
    with client.stream("GET", f"/api/sessions/{sid}/jobs/{job}/events") as events:
        last = [json.loads(line[6:]) for line in events.iter_lines() if line.startswith("data: ")][-1]
    with Image.open(io.BytesIO(client.get(last["result"]["url"]).content)) as im:
        got = np.asarray(im)
    expected = np.asarray(wct.stylize(photo, STYLE_A, 0.7, (2, 1), 64, device="cpu"))
    assert got.shape == (48, 64, 4) and np.array_equal(got, expected)
    assert got[0, :, 3].mean() < 20 and got[-1, :, 3].mean() > 235  # the gradient's alpha


def test_mask_gives_each_region_its_style(session):
    client, sid, content, styles = session
    mask = Image.new("L", (80, 60), 0)
    mask.paste(255, (40, 0, 80, 60))
    mid = client.post(f"/api/sessions/{sid}/images", content=png_bytes(mask)).json()["id"]
    p = {"content": content, "styles": styles, "mask": mid, "alpha": 1.0, "levels": [3, 2, 1], "size": 80}
    got = decode(client.post(f"/api/sessions/{sid}/preview", json=p).content)
    expected = wct.stylize(CONTENT, [STYLE_A, STYLE_B], 1.0, (3, 2, 1), 80, mask=mask, device="cpu")
    assert np.array_equal(got, np.asarray(expected))
    both = client.post(f"/api/sessions/{sid}/preview", json=p | {"weights": [1, 1]})
    assert both.status_code == 400 and "do not combine" in both.json()["detail"]
    three = p | {"styles": styles[:1]}  # a two-region mask with one style
    assert "regions" in client.post(f"/api/sessions/{sid}/preview", json=three).json()["detail"]


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"", "empty"),
        (b"#!/bin/sh\necho not an image\n", "not an image"),
        (png_bytes(CONTENT)[:200], "corrupt or truncated"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not an image"),
        (png_bytes(CONTENT, "PDF"), "not an image"),  # a format Pillow writes but we do not accept
    ],
)
def test_bad_files_get_one_line_messages(session, data, fragment):
    client, sid, _, _ = session
    r = client.post(f"/api/sessions/{sid}/images?name=evil.png", content=data)
    assert r.status_code == 415
    detail = r.json()["detail"]
    assert detail.startswith("evil.png: ") and fragment in detail and "\n" not in detail


def test_upload_and_pixel_limits(stylizer):
    client = TestClient(serve.create_app(stylizer, max_upload=4096, max_pixels=10_000), base_url=BASE)
    sid = client.post("/api/sessions").json()["id"]
    big = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    r = client.post(f"/api/sessions/{sid}/images", content=png_bytes(Image.fromarray(big)))
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    r = client.post(f"/api/sessions/{sid}/images?name=big%20 photo.png", content=r.request.content)
    assert r.status_code == 413 and r.json()["detail"].startswith("big photo.png: the file is larger than")
    r = client.post(f"/api/sessions/{sid}/preview", content=b"{" + b" " * 5000 + b"}")  # not an upload
    assert r.status_code == 413 and r.json()["detail"].startswith("the request is larger than")
    r = client.post(f"/api/sessions/{sid}/images", content=png_bytes(Image.new("RGB", (200, 100))))
    assert r.status_code == 415 and "more than the limit of 10000" in r.json()["detail"]

    def chunked():
        yield b"x" * 10

    assert client.post(f"/api/sessions/{sid}/images", content=chunked()).status_code == 411


def test_all_sessions_together_hold_a_bounded_number_of_pixels(stylizer):
    # 16 sessions x 16 uploads of 40 Mpx each could take ~30 GB: the studio as a whole has a budget
    client = TestClient(serve.create_app(stylizer, max_held=25_000), base_url=BASE)
    a, b = (client.post("/api/sessions").json()["id"] for _ in range(2))
    photo = png_bytes(Image.new("RGB", (150, 100)))  # 15,000 px
    first = client.post(f"/api/sessions/{a}/images", content=photo).json()["id"]
    r = client.post(f"/api/sessions/{b}/images?name=second.png", content=photo)
    assert r.status_code == 507 and r.json()["detail"].startswith(
        "second.png: the studio holds 15,000 of its 25,000 pixels"
    )
    assert client.delete(f"/api/sessions/{a}/images/{first}").status_code == 204
    assert client.post(f"/api/sessions/{b}/images", content=photo).status_code == 201


TRAVERSALS = [
    "/../pyproject.toml",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/static/../wct/serve.py",
    "/app.js/../../README.md",
    "/api/sessions/../../etc/passwd",
    "/api/sessions/..%2f..%2fetc%2fpasswd/results/x",
    "/api/sessions/{sid}/results/..%2f..%2f..%2fpyproject.toml",
    "/api/sessions/{sid}/results/%2e%2e%5cwct%5cserve.py",
    "/api/sessions/{sid}/results/....//....//etc/passwd",
    "/api/sessions/{sid}/jobs/..%2f..%2fetc%2fpasswd/events",
    "//etc/passwd",
    "/wct/static/index.html",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_attempts_never_reach_files(session, path):
    client, sid, _, _ = session
    r = client.get(path.format(sid=sid))
    assert r.status_code in (404, 405)
    assert b"root:" not in r.content and b"[project]" not in r.content and b"import" not in r.content


def test_ids_in_parameters_are_only_dict_keys(session):
    client, sid, content, _ = session
    for bad in ("../../etc/passwd", "/etc/passwd", str(serve.__file__), ".", ""):
        r = client.post(f"/api/sessions/{sid}/preview", json={"content": content, "styles": [bad]})
        assert r.status_code == 400 and r.json()["detail"] == "unknown image id: upload it again"


def test_no_request_touches_the_file_system(session, monkeypatch):
    """The whole flow (upload, preview, render, download, end) with every way to open a file blocked."""
    client, sid, content, styles = session
    client.post(
        f"/api/sessions/{sid}/preview", json={"content": content, "styles": styles[:1], "levels": [1]}
    )

    def refuse(*args, **kwargs):
        raise AssertionError(f"a request opened a file: {args[:1]}")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(io, "open", refuse)
    monkeypatch.setattr(os, "open", refuse)
    png = png_bytes(painting(40, 40, seed=3))
    style = client.post(f"/api/sessions/{sid}/images?name=../../x.png", content=png).json()["id"]
    p = {"content": content, "styles": [style], "levels": [2, 1], "size": 48}
    assert client.post(f"/api/sessions/{sid}/preview", json=p).status_code == 200
    job = client.post(f"/api/sessions/{sid}/render", json=p).json()["job"]
    for _ in range(600):
        state = client.get(f"/api/sessions/{sid}/jobs/{job}").json()
        if state["status"] in ("done", "error"):
            break
        time.sleep(0.05)
    assert state["status"] == "done", state
    assert client.get(state["result"]["url"]).status_code == 200
    assert client.delete(f"/api/sessions/{sid}").status_code == 204


def test_ending_a_session_deletes_its_images_and_results(app, session):
    client, sid, content, styles = session
    p = {"content": content, "styles": styles[:1], "levels": [1], "size": 32}
    job = client.post(f"/api/sessions/{sid}/render", json=p).json()["job"]
    while (state := client.get(f"/api/sessions/{sid}/jobs/{job}").json())["status"] != "done":
        time.sleep(0.05)
    kept = app.state.sessions.items[sid]
    assert kept.images and kept.results and kept.styles
    assert client.delete(f"/api/sessions/{sid}").status_code == 204
    assert sid not in app.state.sessions.items
    assert not kept.images and not kept.results and not kept.styles and not kept.previews
    assert client.get(state["result"]["url"]).status_code == 404
    assert client.post(f"/api/sessions/{sid}/preview", json=p).status_code == 404


def test_idle_sessions_expire(stylizer):
    app = serve.create_app(stylizer, ttl=0.2)
    client = TestClient(app, base_url=BASE)
    sid = client.post("/api/sessions").json()["id"]
    assert client.post(f"/api/sessions/{sid}/images", content=png_bytes(CONTENT)).status_code == 201
    kept = app.state.sessions.items[sid]
    time.sleep(0.3)
    assert client.get(f"/api/sessions/{sid}/results").status_code == 404
    assert not kept.images and not app.state.sessions.items


def test_a_full_queue_answers_429_busy(stylizer, monkeypatch):
    app = serve.create_app(stylizer, queue_size=1)
    client = TestClient(app, base_url=BASE)
    sid = client.post("/api/sessions").json()["id"]
    cid = client.post(f"/api/sessions/{sid}/images", content=png_bytes(CONTENT)).json()["id"]
    gate = threading.Event()
    app.state.worker.submit(gate.wait)  # runs, holding the worker
    deadline = time.monotonic() + 5
    while not app.state.worker.queue.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
    app.state.worker.submit(lambda: None)  # waits: the queue of renders is full
    try:
        r = client.post(f"/api/sessions/{sid}/render", json={"content": cid, "styles": [cid]})
        assert r.status_code == 429 and r.json()["detail"].startswith("busy")
        app.state.worker.submit(lambda: None, first=True)  # a waiting render does not refuse it
        r = client.post(f"/api/sessions/{sid}/preview", json={"content": cid, "styles": [cid]})
        assert r.status_code == 429  # previews have a queue of their own, now full
    finally:
        gate.set()


def test_a_cancelled_render_gives_its_place_in_the_queue_up_at_once(stylizer):
    app = serve.create_app(stylizer, queue_size=1, prefetch=False)
    client = TestClient(app, base_url=BASE)
    sid = client.post("/api/sessions").json()["id"]
    cid = client.post(f"/api/sessions/{sid}/images", content=png_bytes(CONTENT)).json()["id"]
    p = {"content": cid, "styles": [cid], "levels": [1], "size": 32}
    gate = threading.Event()
    app.state.worker.submit(gate.wait)  # runs, holding the worker
    deadline = time.monotonic() + 5
    while not app.state.worker.queue.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        queued = client.post(f"/api/sessions/{sid}/render", json=p).json()["job"]
        assert client.post(f"/api/sessions/{sid}/render", json=p).status_code == 429
        assert client.delete(f"/api/sessions/{sid}/jobs/{queued}").json()["status"] == "cancelled"
        r = client.post(f"/api/sessions/{sid}/render", json=p)  # nothing waits now
        assert r.status_code == 202, r.text
    finally:
        gate.set()
    job = app.state.sessions.items[sid].jobs[r.json()["job"]]
    wait_for(job, "done", "error")
    assert job.status == "done" and app.state.sessions.items[sid].jobs[queued].status == "cancelled"
    assert len(client.get(f"/api/sessions/{sid}/results").json()) == 1  # the cancelled one never ran
    app.state.worker.close()


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"alpha": 1.5}, "alpha"),
        ({"levels": [7]}, "level 7"),
        ({"levels": []}, "at least one level is needed"),  # not pydantic's "list should have at least 1 item"
        ({"size": 99999}, "size"),
        ({"styles": []}, "styles"),
        ({"styles": ["x"] * 9}, "at most 8 styles, got 9"),  # not "list should have at most 8 items"
        ({"levels": [1] * 6}, "at most 5 levels, got 6"),
    ],
)
def test_bad_parameters_get_one_line_messages(session, change, fragment):
    client, sid, content, styles = session
    r = client.post(f"/api/sessions/{sid}/preview", json={"content": content, "styles": styles[:1]} | change)
    assert r.status_code in (400, 422)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and fragment in detail.lower()


def test_unknown_sessions_and_results_are_404(client):
    assert client.get("/api/sessions/nope/results").status_code == 404
    sid = client.post("/api/sessions").json()["id"]
    assert client.get(f"/api/sessions/{sid}/results/{serve.token()}").status_code == 404
    assert client.get(f"/api/sessions/{sid}/jobs/{serve.token()}/events").status_code == 404
    assert len(sid) == 22 and sid != client.post("/api/sessions").json()["id"]


def test_a_render_queued_when_its_session_ends_is_dropped(stylizer):
    app = serve.create_app(stylizer)
    client = TestClient(app, base_url=BASE)
    sid = client.post("/api/sessions").json()["id"]
    cid = client.post(f"/api/sessions/{sid}/images", content=png_bytes(CONTENT)).json()["id"]
    gate = threading.Event()
    app.state.worker.submit(gate.wait)
    job = client.post(f"/api/sessions/{sid}/render", json={"content": cid, "styles": [cid]}).json()["job"]
    held = app.state.sessions.items[sid].jobs[job]
    assert client.delete(f"/api/sessions/{sid}").status_code == 204
    assert held.status == "cancelled"  # and its place in the queue is free now:
    assert sum(f.cancelled() for f in app.state.worker.waiting) == 1
    gate.set()
    app.state.worker.close()


def wait_for(job: serve.Job, *statuses: str) -> None:
    deadline = time.monotonic() + 30
    while job.status not in statuses and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.status in statuses, job.status


def test_renders_can_be_cancelled_queued_or_running(stylizer, monkeypatch):
    app = serve.create_app(stylizer, prefetch=False)
    client = TestClient(app, base_url=BASE)
    sid = client.post("/api/sessions").json()["id"]
    cid = client.post(f"/api/sessions/{sid}/images", content=png_bytes(CONTENT)).json()["id"]
    p = {"content": cid, "styles": [cid], "levels": [3, 2, 1], "size": 64}
    jobs = app.state.sessions.items[sid].jobs
    levels_done, started, go = [], threading.Event(), threading.Event()
    cascade = stylizer.cascade

    def held_cascade(*args, **kwargs):  # the real cascade, held after its first level until `go`
        *rest, progress = args

        def step(f: float) -> None:
            levels_done.append(f)
            if len(levels_done) == 1:
                started.set()
                go.wait(30)
            progress(f)

        return cascade(*rest, step, **kwargs)

    monkeypatch.setattr(stylizer, "cascade", held_cascade)
    try:
        running = client.post(f"/api/sessions/{sid}/render", json=p).json()["job"]
        queued = client.post(f"/api/sessions/{sid}/render", json=p).json()["job"]
        assert started.wait(30) and jobs[queued].status == "queued"
        assert client.delete(f"/api/sessions/{sid}/jobs/{queued}").json()["status"] == "cancelled"
        assert client.delete(f"/api/sessions/{sid}/jobs/{running}").json()["status"] == "running"
        go.set()
        wait_for(jobs[running], "cancelled", "done", "error")
    finally:
        go.set()
    assert jobs[running].status == "cancelled" and jobs[running].error is None
    assert levels_done == [1 / 3]  # cancelled during level 1: levels 2 and 3 never ran, nor the queued job
    assert client.get(f"/api/sessions/{sid}/results").json() == []
    with client.stream("GET", f"/api/sessions/{sid}/jobs/{queued}/events") as events:
        states = [json.loads(line[6:]) for line in events.iter_lines() if line.startswith("data: ")]
    assert [state["status"] for state in states] == ["cancelled"]

    monkeypatch.setattr(stylizer, "cascade", cascade)
    done = client.post(f"/api/sessions/{sid}/render", json=p).json()["job"]
    wait_for(jobs[done], "done", "error")
    assert client.delete(f"/api/sessions/{sid}/jobs/{done}").json()["status"] == "done"  # kept
    assert len(client.get(f"/api/sessions/{sid}/results").json()) == 1
    assert client.delete(f"/api/sessions/{sid}/jobs/{serve.token()}").status_code == 404
    app.state.worker.close()


def test_the_studio_loads_its_networks_at_the_precision_asked(monkeypatch):
    import torch

    import wct.encoder

    monkeypatch.setattr(wct.encoder, "cpu_has_fast_bf16", lambda: True)
    engine = serve.create_app(device="cpu", precision="bf16").state.engine
    assert engine.s.amp == torch.bfloat16 and engine.s.decoder(3).amp == torch.bfloat16


def test_other_sites_pages_cannot_use_the_studio(client):
    evil = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
    r = client.post("/api/sessions", headers=evil)
    assert r.status_code == 403 and "other sites" in r.json()["detail"]
    assert client.post("/api/sessions", headers={"Origin": BASE}).status_code == 201  # the page itself
    assert client.get("/", headers=evil).status_code == 200  # reading the page is harmless
    assert client.head("/").status_code == 200


def test_a_form_upload_is_told_to_send_the_bytes(session):
    client, sid, _, _ = session
    r = client.post(f"/api/sessions/{sid}/images", files={"file": ("x.png", png_bytes(CONTENT))})
    assert r.status_code == 415 and "request body, not a form" in r.json()["detail"]


def test_a_page_closed_mid_upload_raises_nothing_in_the_server(session):
    """A tab closed or reloaded while its file uploads: the upload is dropped, and nothing is
    raised to uvicorn (which would log a ClientDisconnect traceback)."""
    client, sid, _, _ = session
    messages = [{"type": "http.request", "body": b"\x89PNG", "more_body": True}]

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        pass

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/api/sessions/{sid}/images",
        "raw_path": f"/api/sessions/{sid}/images".encode(),
        "root_path": "",
        "query_string": b"name=big.png",
        "headers": [(b"host", b"127.0.0.1"), (b"content-length", b"1000000")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(client.app(scope, receive, send))
    assert len(client.app.state.sessions.items[sid].images) == 3  # the fixture's, no more


def test_sixteen_bit_grey_with_a_transparent_value_keeps_its_grey_levels(session):
    client, sid, _, styles = session
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (32, 1))
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, "PNG", transparency=0)  # the first column is transparent
    r = client.post(f"/api/sessions/{sid}/images?name=g.png", content=buf.getvalue())
    p = {"content": r.json()["id"], "styles": styles[:1], "alpha": 0.0, "size": 64, "levels": [1]}
    job = client.post(f"/api/sessions/{sid}/render", json=p).json()["job"]
    with client.stream("GET", f"/api/sessions/{sid}/jobs/{job}/events") as events:
        last = [json.loads(line[6:]) for line in events.iter_lines() if line.startswith("data: ")][-1]
    with Image.open(io.BytesIO(client.get(last["result"]["url"]).content)) as im:
        got = np.asarray(im).astype(int)
    path = io.BytesIO(buf.getvalue())
    expected = np.asarray(wct.stylize(Image.open(path), STYLE_A, 0.0, (1,), 64, device="cpu")).astype(int)
    assert got.shape == (32, 64, 4) and got[:, 0, 3].max() == 0 and got[:, 1:, 3].min() == 255
    assert np.abs(got - expected).max() <= 1 and got[:, 32, 0].mean() > 100  # grey, not clipped to white
    assert got[:, 5, 0].mean() < 60


def test_render_refuses_at_once_what_would_fail_and_removal_drops_cached_frames(session):
    client, sid, content, styles = session
    p = {"content": content, "styles": styles[:1], "levels": [2, 1], "size": 300, "alpha": 0.5}
    for bad in ({"content": "nope"}, {"levels": [7]}, {"styles": ["nope"]}):
        r = client.post(f"/api/sessions/{sid}/render", json=p | bad)
        assert r.status_code in (400, 422), r.text
    assert client.post(f"/api/sessions/{sid}/preview", json=p).status_code == 200
    bigger = client.post(f"/api/sessions/{sid}/preview", json=p | {"size": 1024})  # both 256-px previews
    assert bigger.headers["x-prefetched"] == "1"
    client.delete(f"/api/sessions/{sid}/images/{content}")
    r = client.post(f"/api/sessions/{sid}/preview", json=p)  # was cached: must not outlive the photo
    assert r.status_code == 400 and "unknown image" in r.json()["detail"]


def test_an_uploads_thumbnail_is_a_small_png_for_its_own_session_only(session):
    """The page shows an upload the browser cannot (TIFF) as the server's PNG of it, at most 128 px;
    16-bit grey scaled to 8 bits, not clipped white."""
    client, sid, _, _ = session
    tiff = png_bytes(landscape(300, 200), "TIFF")
    grey = png_bytes(Image.fromarray(np.full((20, 30), 32896, np.uint16)))  # 128 in 8 bits
    ids = [client.post(f"/api/sessions/{sid}/images", content=data).json()["id"] for data in (tiff, grey)]
    urls = [f"/api/sessions/{sid}/images/{iid}/thumbnail" for iid in ids]
    r = client.get(urls[0])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (128, 85)
    assert client.head(urls[0]).headers["content-length"] == str(len(r.content))
    assert np.asarray(Image.open(io.BytesIO(client.get(urls[1]).content))).max() == 128
    other = client.post("/api/sessions").json()["id"]
    assert client.get(f"/api/sessions/{other}/images/{ids[0]}/thumbnail").status_code == 404
    client.delete(f"/api/sessions/{sid}/images/{ids[0]}")
    assert client.get(urls[0]).json()["detail"] == "unknown image"
    client.delete(f"/api/sessions/{other}")


def test_an_oversized_image_is_named_as_such(stylizer):
    client = TestClient(serve.create_app(stylizer), base_url=BASE)
    sid = client.post("/api/sessions").json()["id"]
    huge = png_bytes(Image.new("L", (10000, 10000)))  # 100 Mpx, over Pillow's own limit too
    r = client.post(f"/api/sessions/{sid}/images", content=huge)
    detail = r.json()["detail"]
    assert r.status_code == 415 and "too large to open safely" in detail and "100000000 pixels" in detail


def test_the_page_is_told_what_was_stretched_or_resized(session):
    client, sid, content, styles = session
    tiny = png_bytes(painting(10, 8, seed=3))
    for where in ("this session", "a new session"):  # a warning already given once is given again
        if where == "a new session":
            sid = client.post("/api/sessions").json()["id"]
            content = client.post(f"/api/sessions/{sid}/images", content=png_bytes(CONTENT)).json()["id"]
        style = client.post(f"/api/sessions/{sid}/images?name=tiny.png", content=tiny).json()["id"]
        p = {"content": content, "styles": [style], "alpha": 0.5, "levels": [2, 1], "size": 64}
        for alpha in (0.5, 0.7):  # the second preview reuses the cached style; its note stays
            r = client.post(f"/api/sessions/{sid}/preview", json=p | {"alpha": alpha})
            assert r.status_code == 200, r.text
            assert json.loads(r.headers["x-notes"]) == [
                "tiny.png: the style is only 10x8 px: stretched to at least 16 px a side"
            ], where
    job = client.post(f"/api/sessions/{sid}/render", json=p).json()["job"]
    with client.stream("GET", f"/api/sessions/{sid}/jobs/{job}/events") as events:
        last = [json.loads(line[6:]) for line in events.iter_lines() if line.startswith("data: ")][-1]
    assert last["status"] == "done" and len(last["notes"]) == 1 and "10x8" in last["notes"][0]
    _, first, content, (a, b) = session
    plain = client.post(f"/api/sessions/{first}/preview", json=p | {"content": content, "styles": [a]})
    assert plain.status_code == 200 and plain.headers["x-notes"] == "[]"
    square = Image.new("L", (30, 30), 0)
    square.paste(255, (15, 0, 30, 30))
    mask = client.post(f"/api/sessions/{first}/images", content=png_bytes(square)).json()["id"]
    p = {"content": content, "styles": [a, b], "mask": mask, "levels": [2, 1], "size": 64}
    note = ["the mask is 30x30 (64x64 scaled like the content) but the content is 64x48: resizing it"]
    assert json.loads(client.post(f"/api/sessions/{first}/preview", json=p).headers["x-notes"]) == note
    for _ in range(2):  # the same warning from the same line, again: still noted
        job = client.post(f"/api/sessions/{first}/render", json=p).json()["job"]
        with client.stream("GET", f"/api/sessions/{first}/jobs/{job}/events") as events:
            last = [json.loads(line[6:]) for line in events.iter_lines() if line.startswith("data: ")][-1]
        assert last["notes"] == note
    client.delete(f"/api/sessions/{sid}")


def test_each_styles_note_names_its_style(session):
    """Two tiny styles at once: each note says which style it is about, and alike notes of two
    styles both stay (they used to read the same, unnamed, and the second was dropped)."""
    client, sid, content, _ = session
    ids = []
    for k, name in enumerate(("dots.png", "lines.png")):
        tiny = png_bytes(painting(10, 8, seed=k))
        ids.append(client.post(f"/api/sessions/{sid}/images?name={name}", content=tiny).json()["id"])
    p = {"content": content, "styles": ids, "levels": [2, 1], "size": 64}
    r = client.post(f"/api/sessions/{sid}/preview", json=p)
    assert r.status_code == 200, r.text
    assert json.loads(r.headers["x-notes"]) == [
        f"{name}: the style is only 10x8 px: stretched to at least 16 px a side"
        for name in ("dots.png", "lines.png")
    ]


def test_notes_collect_only_their_own_threads_warnings(recwarn):
    def elsewhere() -> None:
        warnings.warn("from another thread", stacklevel=1)

    with serve.noted() as outer:
        warnings.warn("outer", stacklevel=1)
        with serve.noted() as inner:
            thread = threading.Thread(target=elsewhere)
            thread.start()
            thread.join()
            warnings.warn("inner", stacklevel=1)
    assert (outer, inner) == (["outer"], ["inner"])
    assert [str(w.message) for w in recwarn] == ["from another thread"]


def test_an_animated_upload_is_noted_with_its_name(session):
    client, sid, content, _ = session
    frames = [painting(48, 48, seed=k) for k in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100)
    up = client.post(f"/api/sessions/{sid}/images?name=loop.gif", content=buf.getvalue()).json()
    note = "loop.gif: the file is animated (3 frames): using its first frame"
    assert up["notes"] == [note]
    p = {"content": content, "styles": [up["id"]], "levels": [2, 1], "size": 48}
    assert json.loads(client.post(f"/api/sessions/{sid}/preview", json=p).headers["x-notes"]) == [note]
    client.delete(f"/api/sessions/{sid}/images/{up['id']}")
    still = client.post(
        f"/api/sessions/{sid}/images?name=one.gif", content=png_bytes(frames[0], "GIF")
    ).json()
    assert still["notes"] == []


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA"])
def test_an_uploads_colour_profile_survives_its_conversion_to_rgb(tmp_path, mode):
    import torch

    from tests.test_images import SWAPPED, grey_profile, saved
    from wct.images import load_image

    im = Image.new("RGB", (8, 8), (0, 200, 40)).convert("L" if mode == "LA" else "RGB").convert(mode)
    if mode != "P":
        im.putalpha(Image.linear_gradient("L").resize(im.size))
    path = saved(tmp_path, im, "tagged.png", grey_profile(2.0) if mode == "LA" else SWAPPED)
    upload = serve.decode_upload(Path(path).read_bytes())
    assert torch.equal(load_image(upload), load_image(path))


def test_an_unusable_colour_profile_is_noted_once_with_the_uploads_name(session):
    client, sid, content, (a, _) = session
    broken = b"not an ICC profile" * 8
    ids, notes = {}, {}
    for name, im, fmt in (
        ("broken.jpg", CONTENT, "JPEG"),
        ("bad style.png", STYLE_B, "PNG"),
        ("print.jpg", Image.new("CMYK", (32, 32), (0, 128, 0, 0)), "JPEG"),
    ):
        buf = io.BytesIO()
        im.save(buf, fmt, icc_profile=broken)
        up = client.post(f"/api/sessions/{sid}/images?name={name}", content=buf.getvalue()).json()
        ids[name], notes[name] = up["id"], up["notes"]
        assert len(up["notes"]) == 1, name
        assert up["notes"][0].startswith(f"{name}: the file has a colour profile that cannot be used ("), name
        assert up["notes"][0].endswith("): its colours are read as sRGB"), name
    plain = client.post(f"/api/sessions/{sid}/images", content=png_bytes(STYLE_B)).json()["id"]
    p = {"content": ids["broken.jpg"], "styles": [a], "alpha": 0.5, "levels": [2, 1], "size": 64}
    for change in ({}, {"alpha": 0.7}, {"size": 48}, {"styles": [ids["bad style.png"]]}):
        r = client.post(f"/api/sessions/{sid}/preview", json=p | change)
        assert r.status_code == 200, r.text
        expected = notes["broken.jpg"] + (notes["bad style.png"] if change.get("styles") else [])
        assert json.loads(r.headers["x-notes"]) == expected, change  # the upload's note, named, once
    as_srgb = client.post(f"/api/sessions/{sid}/preview", json=p | {"styles": [plain]})
    read = client.post(f"/api/sessions/{sid}/preview", json=p | {"styles": [ids["bad style.png"]]})
    assert np.array_equal(decode(read.content), decode(as_srgb.content))  # read as sRGB
    job = client.post(f"/api/sessions/{sid}/render", json=p).json()["job"]
    with client.stream("GET", f"/api/sessions/{sid}/jobs/{job}/events") as events:
        last = [json.loads(line[6:]) for line in events.iter_lines() if line.startswith("data: ")][-1]
    assert last["status"] == "done" and last["notes"] == notes["broken.jpg"]


def test_a_full_house_makes_room_by_ending_the_longest_idle_session():
    sessions = serve.Sessions(limit=2, evict_idle=0.1)
    a, b = sessions.create(), sessions.create()
    with pytest.raises(HTTPException, match="busy"):
        sessions.create()  # both were seen just now
    time.sleep(0.15)
    sessions.get(b.id)  # b's page is still in use
    b.jobs["j"] = serve.Job("j", status="running")
    a.jobs["j"] = serve.Job("j", status="done")
    c = sessions.create()
    assert set(sessions.items) == {b.id, c.id} and a.closed  # a's browser quit without ending it
    c.jobs["j"] = serve.Job("j", status="queued")
    time.sleep(0.15)
    with pytest.raises(HTTPException, match="busy"):
        sessions.create()  # both idle, but each has a render to come back for


def test_a_sixteen_bit_label_mask_keeps_its_regions_and_grey_its_levels(session):
    """Labels 0 and 1 saved as 16-bit grey are two regions, as `wct stylize --mask` reads them."""
    client, sid, content, styles = session
    labels = np.zeros((60, 80), np.uint16)
    labels[:, 40:] = 1
    mask = png_bytes(Image.fromarray(labels))
    mid = client.post(f"/api/sessions/{sid}/images", content=mask).json()["id"]
    p = {"content": content, "styles": styles, "mask": mid, "alpha": 1.0, "levels": [2, 1], "size": 64}
    got = decode(client.post(f"/api/sessions/{sid}/preview", json=p).content)
    with Image.open(io.BytesIO(mask)) as m:
        expected = wct.stylize(CONTENT, [STYLE_A, STYLE_B], 1.0, (2, 1), 64, mask=m, device="cpu")
    assert np.array_equal(got, np.asarray(expected))
    ramp = png_bytes(Image.fromarray(np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (48, 1))))
    grey = client.post(f"/api/sessions/{sid}/images", content=ramp).json()
    assert (grey["width"], grey["height"]) == (64, 48)
    p = {"content": grey["id"], "styles": styles[:1], "alpha": 0.5, "levels": [2, 1], "size": 64}
    got = decode(client.post(f"/api/sessions/{sid}/preview", json=p).content)
    with Image.open(io.BytesIO(ramp)) as im:
        expected = wct.stylize(im, STYLE_A, 0.5, (2, 1), 64, device="cpu")
    assert np.array_equal(got, np.asarray(expected))


def test_uploads_at_the_same_time_cannot_overfill_a_session(session, monkeypatch):
    client, sid, _, _ = session  # three images held
    monkeypatch.setattr(serve, "MAX_IMAGES", 5)
    real = serve.decode_noted
    monkeypatch.setattr(serve, "decode_noted", lambda *a: time.sleep(0.3) or real(*a))
    codes = []

    def upload() -> None:
        codes.append(client.post(f"/api/sessions/{sid}/images", content=png_bytes(STYLE_A)).status_code)

    threads = [threading.Thread(target=upload) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(codes) == [201, 201, 400, 400, 400, 400]
    assert len(client.app.state.sessions.items[sid].images) == 5


def test_malformed_requests_get_clear_one_line_messages(session):
    client, sid, content, styles = session
    url = f"/api/sessions/{sid}/preview"
    r = client.post(url, content=b'{"content":', headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"].startswith("the request is not valid JSON")
    p = {"content": content, "styles": styles[:1], "levels": [1], "size": 32}
    for headers in ({"Content-Type": "text/plain"}, {}):  # curl -d, or a fetch without the header
        r = client.post(url, content=json.dumps(p), headers=headers)
        assert r.status_code == 422 and "Content-Type: application/json" in r.json()["detail"]
    for value in (b"NaN", b"Infinity"):
        body = json.dumps(p | {"alpha": 0.5}).encode().replace(b"0.5", value)
        r = client.post(url, content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"] == "alpha: Input should be a finite number"
    render = f"/api/sessions/{sid}/render"  # refused at once, not accepted to fail in the job
    for weights, fragment in (([1], "2 styles but 1 weights"), ([-1, 2], "non-negative"), ([0, 0], "zero")):
        r = client.post(render, json=p | {"styles": styles, "weights": weights})
        assert r.status_code == 400 and fragment in r.json()["detail"], r.text
    assert not client.app.state.sessions.items[sid].jobs


def test_ctrl_c_ends_streams_and_renders_then_waits_for_the_worker(stylizer, monkeypatch):
    """Ctrl-C while a page watches a long render: its event stream closes and the render stops at
    its next level, so `wct serve` stops in seconds rather than when the render is done, and only
    once the worker is out of the model (a process that exits mid-model aborts with "terminate
    called without an active exception")."""
    import signal
    import socket
    import urllib.request

    pytest.importorskip("uvicorn")
    levels = []

    def slow(self, session, p, preview, progress=None):  # a render of 100 levels of a second
        for k in range(100):
            levels.append(k)
            time.sleep(1)
            progress(k / 100)

    monkeypatch.setattr(serve.Engine, "run", slow)
    app = serve.create_app(stylizer, prefetch=False)
    monkeypatch.setattr(serve, "create_app", lambda **kwargs: app)
    servers, real = [], serve.studio_server
    monkeypatch.setattr(
        serve, "studio_server", lambda app, **kw: servers.append(real(app, **kw)) or servers[0]
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    thread = threading.Thread(target=serve.run_server, kwargs={"port": port}, daemon=True)
    thread.start()
    client = TestClient(app, base_url=BASE)  # the same app: uploads and the render, in-process
    sid = client.post("/api/sessions").json()["id"]
    cid = client.post(f"/api/sessions/{sid}/images", content=png_bytes(CONTENT)).json()["id"]
    job = client.post(f"/api/sessions/{sid}/render", json={"content": cid, "styles": [cid]}).json()["job"]
    deadline = time.monotonic() + 20
    while not (servers and servers[0].started and levels) and time.monotonic() < deadline:
        time.sleep(0.05)
    events = urllib.request.urlopen(f"http://127.0.0.1:{port}/api/sessions/{sid}/jobs/{job}/events")
    assert b'"running"' in events.readline()
    servers[0].handle_exit(signal.SIGINT, None)
    thread.join(10)
    assert not thread.is_alive(), "the server waited for the render"
    assert not app.state.worker.thread.is_alive(), "the server stopped with the worker in the model"
    assert len(levels) < 100 and b'"done"' not in events.read()  # the stream ended with the server
    state = client.get(f"/api/sessions/{sid}/jobs/{job}").json()
    assert state["status"] == "error" and state["error"] == "the server stopped before the render finished"


def rendered(client: TestClient, sid: str, p: dict) -> dict:
    """Render `p` in session `sid` and wait for it: the result's gallery entry."""
    job = client.post(f"/api/sessions/{sid}/render", json=p).json()["job"]
    deadline = time.monotonic() + 30
    while (state := client.get(f"/api/sessions/{sid}/jobs/{job}").json())["status"] not in serve.FINISHED:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert state["status"] == "done", state
    return state["result"]


def studio_session(client: TestClient) -> tuple[str, dict]:
    """A new session with CONTENT and STYLE_A uploaded: (its id, the parameters of a tiny render)."""
    sid = client.post("/api/sessions").json()["id"]
    cid, style = (
        client.post(f"/api/sessions/{sid}/images", content=png_bytes(im)).json()["id"]
        for im in (CONTENT, STYLE_A)
    )
    return sid, {"content": cid, "styles": [style], "levels": [1], "size": 32}


def test_results_are_bounded_in_bytes_for_all_sessions_together_oldest_first(stylizer, monkeypatch):
    app = serve.create_app(stylizer, prefetch=False)
    client = TestClient(app, base_url=BASE)
    (a, pa), (b, pb) = studio_session(client), studio_session(client)
    a1 = rendered(client, a, pa)
    size = len(client.get(a1["url"]).content)  # every render here is the same PNG
    app.state.sessions.max_result_bytes = 2 * size + size // 2
    b1, a2 = rendered(client, b, pb), rendered(client, a, pa)  # three: the oldest, a1, goes
    assert client.get(a1["url"]).status_code == 404
    assert client.get(f"/api/sessions/{a}/results").json() == [a2]
    b2 = rendered(client, b, pb)  # then b1, of the other session
    assert [client.get(f"/api/sessions/{v}/results").json() for v in (a, b)] == [[a2], [b2]]
    assert client.get(b1["url"]).status_code == 404 and client.get(b2["url"]).status_code == 200
    assert client.delete(b2["url"]).status_code == 204  # deleted: no longer counted
    b3 = rendered(client, b, pb)
    assert [client.get(f"/api/sessions/{v}/results").json() for v in (a, b)] == [[a2], [b3]]
    app.state.sessions.max_result_bytes = size // 2  # smaller than one: the one just made stays
    a3 = rendered(client, a, pa)
    assert [client.get(f"/api/sessions/{v}/results").json() for v in (a, b)] == [[a3], []]
    app.state.sessions.max_result_bytes = serve.MAX_RESULT_BYTES
    monkeypatch.setattr(serve, "MAX_RESULTS", 2)  # and the count per session still holds
    a4, a5 = rendered(client, a, pa), rendered(client, a, pa)
    assert client.get(f"/api/sessions/{a}/results").json() == [a4, a5]
    app.state.worker.close()


def test_previews_go_ahead_of_waiting_renders(stylizer, monkeypatch):
    worker, ran, gate = serve.Worker(maxsize=8), [], threading.Event()
    worker.submit(gate.wait)  # runs, holding the worker
    deadline = time.monotonic() + 5
    while not worker.queue.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert worker.queue.empty()
    jobs = ["render 1", "render 2", "preview 1", "render 3", "preview 2"]
    futures = [worker.submit(lambda j=j: ran.append(j), j.startswith("preview")) for j in jobs]
    gate.set()
    for f in futures:
        f.result(10)
    assert ran == ["preview 1", "preview 2", "render 1", "render 2", "render 3"]
    worker.close()
    worker.thread.join(10)
    assert not worker.thread.is_alive()

    app = serve.create_app(stylizer, prefetch=False)  # and the studio's previews do so
    client = TestClient(app, base_url=BASE)
    sid, p = studio_session(client)
    engine, order = app.state.engine, []
    real = engine.run

    def run(session: serve.Session, q: serve.Params, preview: bool, **kwargs):
        order.append("preview" if preview else "render")
        return real(session, q, preview, **kwargs)

    monkeypatch.setattr(engine, "run", run)
    gate.clear()
    app.state.worker.submit(gate.wait)
    deadline = time.monotonic() + 10
    while not app.state.worker.queue.empty() and time.monotonic() < deadline:
        time.sleep(0.01)  # the gate has started: only the render and the preview wait below
    assert app.state.worker.queue.empty()
    waiting = lambda: sum(not (f.running() or f.done()) for f in app.state.worker.waiting)  # noqa: E731
    job = client.post(f"/api/sessions/{sid}/render", json=p).json()["job"]
    shown = threading.Thread(target=lambda: ran.append(client.post(f"/api/sessions/{sid}/preview", json=p)))
    shown.start()
    deadline = time.monotonic() + 10
    while waiting() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert waiting() == 2
    gate.set()
    shown.join(30)
    wait_for(app.state.sessions.items[sid].jobs[job], "done", "error")
    assert order == ["preview", "render"] and ran[-1].status_code == 200
    app.state.worker.close()


def test_one_result_can_be_deleted_by_its_own_session_only(client):
    (a, pa), (b, _) = studio_session(client), studio_session(client)
    kept, gone = rendered(client, a, pa), rendered(client, a, pa)
    rid = gone["id"]
    assert client.delete(f"/api/sessions/{b}/results/{rid}").status_code == 404  # another session's
    assert client.delete(f"/api/sessions/{serve.token()}/results/{rid}").status_code == 404
    assert client.get(gone["url"]).status_code == 200
    assert client.delete(gone["url"]).status_code == 204
    assert client.get(gone["url"]).status_code == 404
    assert client.get(f"/api/sessions/{a}/results").json() == [kept]
    assert client.delete(gone["url"]).json()["detail"] == "unknown result"
    assert client.get(kept["url"]).status_code == 200
    for sid in (a, b):
        client.delete(f"/api/sessions/{sid}")


def test_a_script_can_ask_for_a_results_headers_with_head(client):
    """HEAD (`curl -I`, `requests.head`) answers every read as GET does, without the body: a
    result's size and file name, the gallery, a job's state; it was 405 but for the page's files."""
    sid, p = studio_session(client)
    job = client.post(f"/api/sessions/{sid}/render", json=p).json()["job"]
    wait_for(client.app.state.sessions.items[sid].jobs[job], "done")
    done = client.get(f"/api/sessions/{sid}/jobs/{job}").json()["result"]
    for url in (done["url"], f"/api/sessions/{sid}/results", f"/api/sessions/{sid}/jobs/{job}"):
        got, head = client.get(url), client.head(url)
        assert head.status_code == 200 and head.content == b"", (url, head.status_code)
        assert head.headers["content-length"] == str(len(got.content))
        assert head.headers["content-type"] == got.headers["content-type"]
    assert client.head(done["url"]).headers["content-disposition"].startswith("attachment; filename=")
    assert client.head(f"/api/sessions/{sid}/results/{serve.token()}").status_code == 404
    client.delete(f"/api/sessions/{sid}")


BUSY_SERVER = """
import sys, torch
from wct import serve
from wct.cli import main

def busy(self):  # the weights load forever: the worker stays in the model, in torch's threads
    while True:
        torch.nn.functional.conv2d(torch.randn(1, 16, 64, 64), torch.randn(16, 16, 3, 3))

serve.Engine.s = property(busy)
main(["serve", "--port", sys.argv[1]])
"""


def serving(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(os.name != "posix", reason="signals as a terminal sends them")
@pytest.mark.parametrize("soon", [False, True])
def test_ctrl_c_again_quits_at_once_without_aborting(tmp_path, soon):
    """The second Ctrl-C, while `wct serve` waits for the model to end its level, quits at once
    with 130, as the first would have; a normal exit with the worker in the model aborted in
    torch's C++ runtime ("terminate called without an active exception", SIGABRT)."""
    import signal
    import socket
    import subprocess
    import sys

    pytest.importorskip("uvicorn")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (script := tmp_path / "busy_server.py").write_text(BUSY_SERVER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as in a terminal
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()

    def wait_for_line(text: str) -> None:
        deadline = time.monotonic() + 120
        while not any(text in line for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, lines
            time.sleep(0.05)

    try:
        deadline = time.monotonic() + 120
        while not serving(port):  # then uvicorn's signal handlers are in place
            assert proc.poll() is None and time.monotonic() < deadline, lines
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        if soon:  # a quick double press: during the shutdown's first second, which aborted too
            time.sleep(0.2)
        else:
            wait_for_line("Ctrl-C again: now")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130, lines
    finally:
        proc.kill()
    time.sleep(0.2)  # the reader's last lines
    assert "terminate called" not in "".join(lines) and "Traceback" not in "".join(lines), lines
