"""`wct serve`: a local web studio with a live alpha preview.

Safety model: the page and its two assets are held in memory; every image, result and job is
named by a random token made here and looked up in a dict, so no request path, upload name or id
ever reaches the file system. Uploads are decoded with Pillow (never trusted by name) and kept in
memory; a session's images, results and caches go when it is deleted or expires. Renders are
kept per session up to MAX_RESULTS, and all sessions' together up to MAX_RESULT_BYTES of PNG (the
oldest go first, the one just made never). One worker thread runs the model; at most `queue_size`
renders and as many previews wait, beyond that requests get HTTP 429; a preview goes ahead of the
waiting renders.

The preview reuses, per session: each style's statistics and colouring matrices (one encoder pass
and one eigendecomposition per level, ever), and the content's encoding and whitening at the first
level. A new alpha then reruns only what the coarse-to-fine cascade must: the transforms, the
decoders and the re-encodings of the finer levels. While the worker is idle it also renders the
other slider positions (steps of ALPHA_STEP, nearest first) of the latest preview, so once they
are in, moving the slider costs no model work at all; every frame is exact, none interpolated.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import re
import secrets
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from importlib import resources
from queue import PriorityQueue
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from PIL import Image
from pydantic import BaseModel, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect
from torch import Tensor

from .errors import ImageError, InputError, WCTError
from .images import (
    DECODE_ERRORS,
    FILTERS,
    INT_GREY,
    alpha_channel,
    decode,
    eight_bit,
    load_image,
    reason,
    to_rgb,
    to_srgb,
    with_alpha,
)
from .pipeline import Style, Stylizer, check_levels, finish, fit_mask, prepare_inputs, unpad
from .transform import check_weights

PREVIEW_SIZE = 256  # longer side of the live preview
THUMBNAIL_SIZE = 128  # longer side of an upload's thumbnail, for files the browser cannot show (TIFF)
ALPHA_STEP = 0.05  # the page's slider step: every position is a frame the worker may prefetch
STYLE_SIZE = 512  # styles larger than this are read at 512 px (like --style-size 512)
MAX_UPLOAD = 16 * 2**20  # bytes
MAX_PIXELS = 40_000_000  # per uploaded image
MAX_HELD_PIXELS = 400_000_000  # all sessions' uploads together (1.2 GB as 8-bit RGB)
MAX_SIZE = 2048  # largest render (longer side)
MAX_IMAGES = 16  # per session
MAX_RESULTS = 24  # per session; the oldest go first
MAX_RESULT_BYTES = 256 * 2**20  # all sessions' result PNGs together; the oldest go first, never the newest
MAX_SESSIONS = 16
QUEUE_SIZE = 4  # renders waiting behind the running job, and previews likewise
SESSION_TTL = 30 * 60.0  # seconds without a request
EVICT_IDLE = 120.0  # when all sessions are taken, the longest-unseen one idle this long makes room
SHUTDOWN_WAIT = 120.0  # seconds a stopping server waits for the worker to leave the model
FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
LOOPBACK = ("127.0.0.1", "localhost", "::1")  # addresses to bind
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")  # their Host headers (IPv6 in brackets)
ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def upload_label(name: str) -> str:
    """How errors name an upload: its name with runs of spaces as one, at most 80 characters."""
    return " ".join(name.split())[:80] or "image"


def token() -> str:
    """A random id (128 bits, URL-safe): the only names requests can use."""
    return secrets.token_urlsafe(16)


def one_line(e: BaseException) -> str:
    return str(e) if isinstance(e, WCTError) else reason(e)


# ---------------------------------------------------------------- notes: warnings shown on the page

_sink = threading.local()  # the list the current thread's warnings go to, if any
_replaced = warnings.showwarning  # what our hook replaced: other threads' warnings go there
_WCT = re.compile(r"wct(\.|$)")  # wct's own modules


def _show(message, category, filename, lineno, file=None, line=None) -> None:
    notes = getattr(_sink, "notes", None)
    if notes is None:
        _replaced(message, category, filename, lineno, file, line)
    elif str(message) not in notes:
        notes.append(str(message))


@contextmanager
def noted() -> Iterator[list[str]]:
    """Warnings raised on THIS thread inside the block go to the list it yields, each once, instead
    of the server's log: the studio shows them with the preview or render they belong to (a style
    stretched because it is tiny, a mask of another shape resized). Other threads are untouched;
    wct's own warnings are shown every time, not once per place (each render is someone's)."""
    global _replaced
    with FILTERS:  # warnings.catch_warnings elsewhere may have put the previous hook back
        if warnings.showwarning is not _show:
            _replaced = warnings.showwarning
            warnings.showwarning = _show
        if not warnings.filters or warnings.filters[0][:4] != ("always", None, UserWarning, _WCT):
            warnings.filterwarnings("always", category=UserWarning, module=_WCT.pattern)
    outer, _sink.notes = getattr(_sink, "notes", None), []
    try:
        yield _sink.notes
    finally:
        _sink.notes = outer


# ---------------------------------------------------------------- uploads


def decode_upload(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Uploaded bytes as an upright RGB image (RGBA if it has transparency), decoded by Pillow;
    anything else is an ImageError. An animated image gives its first frame, with a warning. Opaque
    16- and 32-bit grey stays as it is: as a mask its values are the labels (`read_mask`), and as a
    content or style `load_image` makes it RGB just as it does when the library reads the file. An
    embedded colour profile stays with the pixels, so `load_image` converts a content or style to
    sRGB while a mask keeps its labels; only CMYK, which RGB would lose, is converted here, and a
    profile that cannot be used is warned about and dropped here (`usable_profile`)."""
    if not data:
        raise ImageError("the file is empty")
    im = decode(io.BytesIO(data), max_pixels, FORMATS)
    try:
        alpha = alpha_channel(im, im.size)  # None when opaque
        if alpha is not None:
            return usable_profile(tagged(with_alpha(eight_bit(im).convert("RGB"), alpha), im))
        if im.mode == "CMYK":
            return to_srgb(im, "the file")
        return usable_profile(im if im.mode in INT_GREY else tagged(to_rgb(im), im))
    except DECODE_ERRORS as e:
        raise ImageError(f"the file cannot be converted to RGB ({reason(e)})") from None


def tagged(out: Image.Image, im: Image.Image) -> Image.Image:
    """`out` with `im`'s colour profile, which some conversions (a palette's, alpha compositing) drop."""
    if im.info.get("icc_profile"):
        out.info["icc_profile"] = im.info["icc_profile"]
    return out


def usable_profile(im: Image.Image) -> Image.Image:
    """`im`, its colour profile tried once as `load_image` will read it: one that cannot be used is
    warned about now, as the upload's, and dropped, so every preview and render reads the colours
    as sRGB (what `to_srgb` falls back to) without warning again."""
    if im.info.get("icc_profile"):
        with noted() as unusable:
            to_srgb(im, "the file")
        if unusable:
            im.info.pop("icc_profile")
            for note in unusable:
                warnings.warn(note, stacklevel=3)
    return im


def decode_noted(data: bytes, max_pixels: int) -> tuple[Image.Image, list[str]]:
    """`decode_upload` on this thread, with what it warned about (for the page)."""
    with noted() as notes:
        return decode_upload(data, max_pixels), notes


# ---------------------------------------------------------------- model side


@dataclass
class Prepared:
    """A content image at one size, padded, with its mask; `first` is `Stylizer.cascade`'s memo of
    the first level's features and statistics (they do not depend on alpha); `notes`, what
    preparing it warned about."""

    content: Tensor
    x: Tensor
    hw: tuple[int, int]
    labels: Tensor | None
    first: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def prepare(
    image: Image.Image,
    size: int,
    mask: Image.Image | None,
    styles: Sequence[Style],
    levels: Sequence[int],
) -> Prepared:
    """Scale the content and label the mask, then stretch and pad as `Stylizer.stylize` does."""
    with noted() as notes:
        content = load_image(image, size)
        labels = fit_mask(mask, len(styles), tuple(content.shape[-2:]), size)
        _, x, hw, labels = prepare_inputs(content, list(styles), levels, None, labels)  # type: ignore[arg-type]
    return Prepared(content, x, hw, labels, notes=notes)


# ---------------------------------------------------------------- sessions and jobs


class Params(BaseModel):
    """One stylisation as the page asks for it; images are ids of this session's uploads."""

    content: str
    styles: list[str] = Field(min_length=1, max_length=8)
    weights: list[float] | None = None
    mask: str | None = None
    alpha: float = Field(0.6, ge=0, le=1, allow_inf_nan=False)
    levels: list[int] = Field([5, 4, 3, 2, 1], max_length=5)  # none: check_levels says so in words
    size: int = Field(512, ge=16, le=MAX_SIZE)
    preserve_color: bool = False


FINISHED = ("done", "error", "cancelled")


@dataclass
class Job:
    id: str
    status: str = "queued"  # running, or one of FINISHED
    progress: float = 0.0
    result: dict | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # warnings for the page (see `noted`)
    cancel: bool = False  # asked to stop: a queued job never starts, a running one stops at its next level
    future: Future | None = None  # its place in the worker's queue until it ends (`Worker.submit`)

    def state(self) -> dict:
        return {
            "status": self.status,
            "progress": round(self.progress, 3),
            "result": self.result,
            "error": self.error,
            "notes": self.notes,
        }


@dataclass
class Session:
    id: str
    seen: float
    images: dict[str, Image.Image] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    image_notes: dict[str, list[str]] = field(default_factory=dict)  # what decoding each upload warned
    results: dict[str, bytes] = field(default_factory=dict)
    gallery: list[dict] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
    styles: dict[str, Style] = field(default_factory=dict)
    style_notes: dict[str, list[str]] = field(default_factory=dict)  # what encoding each style warned
    previews: dict[tuple, Prepared] = field(default_factory=dict)
    frames: dict[float, tuple[bytes, list[str]]] = field(default_factory=dict)  # (PNG, notes) by alpha
    frames_of: str = ""  # the preview parameters, alpha aside, that `frames` belong to
    closed: bool = False

    def clear(self) -> None:
        """Drop every image, result and cache (the session's end); its queued renders give their
        places in the worker's queue up at once, and a running one stops at its next level."""
        self.closed = True
        for job in list(self.jobs.values()):  # request threads may add jobs meanwhile
            job.cancel = True
            if (future := job.future) is not None:  # the worker may clear it meanwhile
                future.cancel()
        for d in (
            self.images,
            self.names,
            self.image_notes,
            self.results,
            self.jobs,
            self.styles,
            self.style_notes,
            self.previews,
            self.frames,
        ):
            d.clear()
        self.gallery.clear()

    def drop(self, rid: str) -> bool:
        """Delete one result and its gallery entry; False if the session has no such result."""
        self.gallery[:] = [info for info in self.gallery if info["id"] != rid]
        return self.results.pop(rid, None) is not None


class Sessions:
    """In-memory sessions; one unseen for `ttl` seconds is deleted with everything in it."""

    def __init__(
        self,
        ttl: float = SESSION_TTL,
        limit: int = MAX_SESSIONS,
        evict_idle: float = EVICT_IDLE,
        max_result_bytes: int = MAX_RESULT_BYTES,
    ):
        self.ttl, self.limit, self.evict_idle = ttl, limit, evict_idle
        self.max_result_bytes = max_result_bytes
        self.items: dict[str, Session] = {}
        self.kept: list[tuple[Session, str]] = []  # (session, result id), oldest first (`keep`)
        self.lock = threading.Lock()

    def sweep(self) -> None:
        now = time.monotonic()
        with self.lock:
            for sid in [k for k, v in self.items.items() if now - v.seen > self.ttl]:
                self.items.pop(sid).clear()

    def create(self) -> Session:
        self.sweep()
        with self.lock:
            if len(self.items) >= self.limit:  # a tab whose browser quit never said goodbye
                now = time.monotonic()
                idle = [
                    v
                    for v in self.items.values()
                    if now - v.seen > self.evict_idle
                    and all(j.status in FINISHED for j in list(v.jobs.values()))
                ]
                if not idle:
                    raise HTTPException(429, f"busy: {self.limit} sessions are open, end one or try later")
                self.items.pop(min(idle, key=lambda v: v.seen).id).clear()
            s = Session(token(), time.monotonic())
            self.items[s.id] = s
            return s

    def get(self, sid: str) -> Session:
        self.sweep()
        s = self.items.get(sid)
        if s is None:
            raise HTTPException(404, "unknown or expired session: reload the page")
        s.seen = time.monotonic()
        return s

    def keep(self, s: Session, info: dict, data: bytes) -> None:
        """Add a render's PNG to `s`'s gallery. Beyond MAX_RESULTS in the session its oldest
        result goes; beyond `max_result_bytes` in all sessions together, the oldest of any session
        go, never this one. InputError if the session has ended."""
        with self.lock:  # sessions end and results are deleted under it
            if self.items.get(s.id) is not s:
                raise InputError("the session ended before the render finished")
            s.results[info["id"]] = data
            s.gallery.append(info)
            while len(s.gallery) > MAX_RESULTS:
                s.drop(s.gallery[0]["id"])
            kept = [(v, r) for v, r in self.kept if self.items.get(v.id) is v and r in v.results]
            kept.append((s, info["id"]))
            held = sum(len(v.results[r]) for v, r in kept)
            while held > self.max_result_bytes and len(kept) > 1:
                v, r = kept.pop(0)
                held -= len(v.results[r])
                v.drop(r)
            self.kept = kept

    def held_pixels(self) -> int:
        """Pixels of every upload held, all sessions together."""
        return sum(im.width * im.height for v in list(self.items.values()) for im in list(v.images.values()))

    def sweep_forever(self) -> None:
        """Started on a daemon thread: expiry happens even when no request comes."""
        while True:
            time.sleep(min(self.ttl, 60.0))
            self.sweep()

    def delete(self, sid: str) -> None:
        with self.lock:
            s = self.items.pop(sid, None)
        if s is not None:
            s.clear()


class Interrupted(Exception):
    """Background work gives way to a request."""


class Cancelled(Exception):
    """The user cancelled a render."""


class Worker:
    """One thread runs every model job in turn, those submitted `first` (previews) ahead of the
    others, each kind in the order submitted; beyond `maxsize` waiting jobs of a kind, HTTP 429
    (so waiting renders never refuse a preview)."""

    def __init__(self, maxsize: int = QUEUE_SIZE, idle: Callable[[Callable[[], bool]], bool] | None = None):
        self.queue: PriorityQueue = PriorityQueue()  # (rank, order, (fn, future) or None to stop)
        self.order = itertools.count()
        self.maxsize, self.lock = maxsize, threading.Lock()
        self.waiting: list[Future] = []  # submitted, not yet started (cancelled ones drop out)
        self.firsts: set[Future] = set()  # those of `waiting` submitted `first`
        # idle(waiting): one unit of background work, run only when no job waits; it may stop
        # early when waiting() turns true; returns False when there is nothing left to do.
        self.idle = idle
        self.thread = threading.Thread(target=self._loop, name="wct-worker", daemon=True)
        self.thread.start()

    def submit(self, fn: Callable[[], Any], first: bool = False) -> Future:
        """Queue `fn`, if `first` ahead of every waiting job submitted without it; its Future,
        cancelled while it waits, gives its place up at once."""
        fut: Future = Future()
        with self.lock:
            self.waiting = [f for f in self.waiting if not (f.running() or f.done())]
            self.firsts.intersection_update(self.waiting)
            if sum((f in self.firsts) == first for f in self.waiting) >= self.maxsize:
                raise HTTPException(429, "busy: too many jobs waiting, try again in a moment")
            self.waiting.append(fut)
            if first:
                self.firsts.add(fut)
            self.queue.put_nowait((0 if first else 1, next(self.order), (fn, fut)))
        return fut

    def _next(self) -> Any:
        while self.queue.empty() and self.idle is not None:
            try:
                if not self.idle(lambda: not self.queue.empty()):
                    break
            except Exception:  # noqa: BLE001 - background work must never stop the worker
                break
        return self.queue.get()[2]

    def _loop(self) -> None:
        while (item := self._next()) is not None:
            fn, fut = item
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as e:  # noqa: BLE001 - handed to the waiting request
                    fut.set_exception(e)

    def close(self) -> None:
        self.queue.put((2, next(self.order), None))  # after the jobs already waiting


class Engine:
    """The model side, run only on the worker thread: loads the Stylizer on first use."""

    def __init__(
        self,
        stylizer: Stylizer | None = None,
        device: str | None = None,
        prefetch: bool = True,
        precision: str = "fp32",
        vgg_weights: str | os.PathLike | None = None,
    ):
        self._s, self.device, self.prefetch, self.precision = stylizer, device, prefetch, precision
        self.vgg_weights = vgg_weights
        self.latest: tuple[Session, Params] | None = None  # the preview the idle worker extends

    @property
    def s(self) -> Stylizer:
        if self._s is None:
            self._s = Stylizer(self.device, self.vgg_weights, precision=self.precision)
        return self._s

    def styles(self, session: Session, p: Params) -> list[Style]:
        for sid in p.styles:
            if sid not in session.styles:
                im = image(session, sid)
                with noted() as notes:
                    style = self.s.style(im, STYLE_SIZE if max(im.size) > STYLE_SIZE else None)
                name = session.names.get(sid, "style")  # several styles: say which one
                session.styles[sid], session.style_notes[sid] = style, [f"{name}: {n}" for n in notes]
        return [session.styles[sid] for sid in p.styles]

    def frame(self, session: Session, p: Params) -> tuple[bytes, list[str], float]:
        """The preview PNG of `p`, its notes and the seconds spent on it (0 when it was prefetched)."""
        key, alpha = frame_key(p)
        if session.frames_of != key:
            session.frames, session.frames_of = {}, key
        seconds = 0.0
        if alpha not in session.frames:
            t0 = time.perf_counter()
            im, notes = self.run(session, p, preview=True)
            session.frames[alpha] = png(im, fast=True), notes
            seconds = time.perf_counter() - t0
        self.latest = (session, p)
        return *session.frames[alpha], seconds

    def idle(self, waiting: Callable[[], bool] = lambda: False) -> bool:
        """Render the latest preview's nearest missing slider position; False when none is left.
        A request arriving meanwhile interrupts it at the next level (it is redone later)."""
        if not self.prefetch or self.latest is None:
            return False
        session, p = self.latest
        key, alpha = frame_key(p)
        steps = round(1 / ALPHA_STEP)
        todo = [round(i / steps, 2) for i in range(steps + 1)]
        todo = [a for a in todo if a not in session.frames]
        if session.closed or session.frames_of != key or not todo:
            self.latest = None
            return False
        a = min(todo, key=lambda v: (abs(v - alpha), v))

        def check(_: float) -> None:
            if waiting() or not self.prefetch:
                raise Interrupted

        try:
            im, notes = self.run(session, p.model_copy(update={"alpha": a}), preview=True, progress=check)
        except Interrupted:
            return True
        session.frames[a] = png(im, fast=True), notes
        return True

    def run(self, session: Session, p: Params, preview: bool, progress=None) -> tuple[Image.Image, list[str]]:
        """A preview (at most PREVIEW_SIZE, caches kept) or a full-size render of `p`, and the notes
        for the page: what its styles, its preparation and the cascade warned about."""
        levels = check_levels(p.levels)  # the core checks the rest (weights with a mask, their count)
        content = image(session, p.content)
        mask = image(session, p.mask) if p.mask is not None else None
        styles = self.styles(session, p)
        size = min(p.size, PREVIEW_SIZE) if preview else p.size
        key = (p.content, p.mask, len(p.styles), size)
        prep = session.previews.get(key) if preview else None
        if prep is None:
            prep = prepare(content, size, mask, styles, levels)
            if preview:
                session.previews = {key: prep}  # one content at a time
        first = prep.first if preview else None
        with noted() as notes:
            y = self.s.cascade(
                prep.x, styles, p.alpha, levels, p.weights, prep.labels, first, progress, hw=prep.hw
            )
        y = unpad(y, prep.hw, tuple(prep.content.shape[-2:]))
        out = finish(prep.content, y, p.preserve_color, content)
        ids = [p.content, *p.styles, *([p.mask] if p.mask else [])]
        notes = [
            *(n for iid in ids for n in session.image_notes.get(iid, [])),
            *(n for sid in p.styles for n in session.style_notes.get(sid, [])),
            *prep.notes,
            *notes,
        ]
        return out, list(dict.fromkeys(notes))


def frame_key(p: Params) -> tuple[str, float]:
    """(the preview parameters without alpha, at the preview's size, so a larger render size
    keeps the slider's frames; alpha rounded to 0.01, finer than the slider's ALPHA_STEP)."""
    shown = p.model_copy(update={"size": min(p.size, PREVIEW_SIZE)})
    return shown.model_dump_json(exclude={"alpha"}), round(p.alpha, 2)


def image(session: Session, iid: str) -> Image.Image:
    im = session.images.get(iid)
    if im is None:
        raise InputError("unknown image id: upload it again")
    return im


def room(session: Session) -> None:
    """Refuse an upload to a session that has ended or is full."""
    if session.closed:
        raise HTTPException(404, "unknown or expired session: reload the page")
    if len(session.images) >= MAX_IMAGES:
        raise HTTPException(400, f"a session holds at most {MAX_IMAGES} images: remove some first")


def png(im: Image.Image, fast: bool = False) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1 if fast else 6)
    return buf.getvalue()


# ---------------------------------------------------------------- HTTP


UPLOAD = re.compile(r"/api/sessions/[^/]+/images")  # the path an upload is POSTed to


class LimitBody:
    """ASGI guard: refuse bodies over `limit` bytes (413) and bodies of unknown length (411)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            length = headers.get(b"content-length")
            error = None
            if length is None and b"transfer-encoding" in headers:
                error = (411, "send the upload with a Content-Length")
            elif length is not None and (not length.isdigit() or int(length) > self.limit):
                what = "the request"
                if scope["method"] == "POST" and UPLOAD.fullmatch(scope["path"]):  # name the file
                    query = parse_qs(scope["query_string"].decode("latin-1"))
                    what = f"{upload_label(query.get('name', [''])[0])}: the file"
                error = (413, f"{what} is larger than the limit of {self.limit // 2**20} MiB")
            if error:
                await JSONResponse({"detail": error[1]}, error[0])(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    stylizer: Stylizer | None = None,
    device: str | None = None,
    hosts: Sequence[str] = LOOPBACK_HOSTS,
    ttl: float = SESSION_TTL,
    queue_size: int = QUEUE_SIZE,
    max_upload: int = MAX_UPLOAD,
    max_pixels: int = MAX_PIXELS,
    max_held: int = MAX_HELD_PIXELS,
    prefetch: bool = True,
    precision: str = "fp32",
    max_result_bytes: int = MAX_RESULT_BYTES,
    vgg_weights: str | os.PathLike | None = None,
) -> FastAPI:
    """The studio app. `hosts`: Host names accepted (loopback by default: defeats DNS rebinding).
    Renders are kept up to MAX_RESULTS per session and `max_result_bytes` of PNG in all sessions
    together, the oldest going first (`Sessions.keep`)."""
    assets = {
        route: ((resources.files("wct") / "static" / name).read_bytes(), kind)
        for route, (name, kind) in ASSETS.items()
    }
    sessions = Sessions(ttl, max_result_bytes=max_result_bytes)
    engine = Engine(stylizer, device, prefetch, precision, vgg_weights)
    worker = Worker(queue_size, engine.idle)
    threading.Thread(target=sessions.sweep_forever, name="wct-sessions", daemon=True).start()
    stopping = threading.Event()

    def stop() -> None:
        """The server is told to stop (see `studio_server`): event streams end now, background work
        and a running render at their next level."""
        stopping.set()
        engine.prefetch = False

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        stop()
        worker.close()

    app = FastAPI(title="wct studio", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.sessions, app.state.worker, app.state.engine = sessions, worker, engine
    app.state.stop = stop
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))
    app.add_middleware(LimitBody, limit=max_upload)

    @app.middleware("http")
    async def headers(request: Request, call_next):
        origin = request.headers.get("origin")  # browsers send it on every cross-site POST, no-cors too
        foreign = origin is not None and urlsplit(origin).netloc != request.headers.get("host")
        if foreign and request.method not in ("GET", "HEAD"):
            return JSONResponse({"detail": "requests from other sites' pages are refused"}, 403)
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        if first.get("type") == "json_invalid":
            error, at = first.get("ctx", {}).get("error", "decode error"), first["loc"][-1]
            return JSONResponse({"detail": f"the request is not valid JSON: {error} at character {at}"}, 422)
        if first.get("loc") == ("body",):  # no body, not an object, or not sent as JSON
            detail = "send the parameters as a JSON object (Content-Type: application/json)"
            return JSONResponse({"detail": detail}, 422)
        where = ".".join(str(v) for v in first.get("loc", ())[1:]) or "request"
        if first.get("type") == "too_long":  # not "List should have at most 8 items after validation, not 9"
            most, got = first["ctx"]["max_length"], first["ctx"]["actual_length"]
            return JSONResponse({"detail": f"at most {most} {where}, got {got}"}, 422)
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, 422)

    async def on_worker(fn: Callable[[], Any], first: bool = False) -> Any:
        try:
            return await asyncio.wrap_future(worker.submit(fn, first))
        except WCTError as e:
            raise HTTPException(400, one_line(e)) from None

    for route, (body, kind) in assets.items():
        app.add_api_route(
            route, lambda body=body, kind=kind: Response(body, media_type=kind), methods=["GET", "HEAD"]
        )

    @app.post("/api/sessions", status_code=201)
    def new_session() -> dict:
        s = sessions.create()
        limits = {"upload_bytes": max_upload, "max_size": MAX_SIZE, "preview": PREVIEW_SIZE}
        return {"id": s.id, "ttl": ttl, "limits": limits}

    @app.delete("/api/sessions/{sid}", status_code=204)
    def end_session(sid: str) -> Response:
        sessions.delete(sid)
        return Response(status_code=204)

    @app.post("/api/sessions/{sid}/images", status_code=201)
    async def upload(sid: str, request: Request, name: str = "") -> dict:
        s = sessions.get(sid)
        room(s)
        label = upload_label(name) + ": "
        data = bytearray()
        try:
            async for chunk in request.stream():
                data += chunk
                if len(data) > max_upload:
                    limit = f"the file is larger than the limit of {max_upload // 2**20} MiB"
                    raise HTTPException(413, label + limit)
        except ClientDisconnect:  # the page was closed or reloaded meanwhile: nobody hears the answer
            raise HTTPException(400, label + "the upload was interrupted") from None
        if request.headers.get("content-type", "").startswith("multipart/"):
            raise HTTPException(415, label + "send the file's bytes as the request body, not a form")
        try:
            im, notes = await asyncio.to_thread(decode_noted, bytes(data), max_pixels)
        except ImageError as e:
            raise HTTPException(415, label + str(e)) from None
        iid = token()
        with sessions.lock:  # one upload at a time counts and takes the room left
            room(s)  # again: while this one was read, others may have filled the session or it ended
            held = sessions.held_pixels()
            if held + im.width * im.height > max_held:
                full = f"the studio holds {held:,} of its {max_held:,} pixels of uploads: remove images first"
                raise HTTPException(507, label + full + ", or end other sessions")
            s.images[iid], s.names[iid], s.image_notes[iid] = im, label[:-2], [label + n for n in notes]
        return {
            "id": iid,
            "width": im.width,
            "height": im.height,
            "name": label[:-2],
            "notes": s.image_notes[iid],
        }

    @app.api_route("/api/sessions/{sid}/images/{iid}/thumbnail", methods=["GET", "HEAD"])
    def thumbnail(sid: str, iid: str) -> Response:
        """An upload as a PNG at most THUMBNAIL_SIZE px, for the page to show a file it cannot (TIFF)."""
        s = sessions.get(sid)
        try:
            im = eight_bit(image(s, iid)).copy()
        except InputError:
            raise HTTPException(404, "unknown image") from None
        im.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        return Response(png(im, fast=True), media_type="image/png")

    @app.delete("/api/sessions/{sid}/images/{iid}", status_code=204)
    def remove_image(sid: str, iid: str) -> Response:
        s = sessions.get(sid)
        for d in (s.images, s.names, s.image_notes, s.styles, s.style_notes):
            d.pop(iid, None)
        s.previews, s.frames, s.frames_of = {}, {}, ""  # nothing computed from it stays
        return Response(status_code=204)

    @app.post("/api/sessions/{sid}/preview")
    async def preview(sid: str, p: Params) -> Response:
        """The live preview (at most PREVIEW_SIZE px); X-Compute-Ms: model time, 0 if prefetched;
        X-Notes: a JSON list of what it warned about."""
        s = sessions.get(sid)
        key, alpha = frame_key(p)
        frame = s.frames.get(alpha) if s.frames_of == key else None
        if frame is None:  # ahead of any waiting render: the slider does not wait for them
            data, notes, seconds = await on_worker(lambda: engine.frame(s, p), first=True)
        else:
            data, notes, seconds = *frame, 0.0
        headers = {
            "X-Compute-Ms": f"{seconds * 1000:.0f}",
            "X-Prefetched": "1" if seconds == 0 else "0",
            "X-Notes": json.dumps(notes),  # ASCII: non-ASCII characters are escaped
        }
        return Response(data, media_type="image/png", headers=headers)

    @app.post("/api/sessions/{sid}/render", status_code=202)
    def render(sid: str, p: Params) -> dict:
        s = sessions.get(sid)
        try:  # refuse now what the job would fail on
            check_levels(p.levels)
            for iid in (p.content, *p.styles, *([p.mask] if p.mask else [])):
                image(s, iid)
            check_weights(p.weights, len(p.styles), p.mask is not None)
        except WCTError as e:
            raise HTTPException(400, one_line(e)) from None
        job = Job(token())
        names = [s.names.get(v, "?") for v in p.styles]  # now: a style may be removed while it runs

        def go_on(when: str) -> None:
            if stopping.is_set():
                raise InputError(f"the server stopped before the render {when}")
            if s.closed:
                raise InputError(f"the session ended before the render {when}")
            if job.cancel:
                raise Cancelled

        def step(f: float) -> None:
            go_on("finished")
            job.progress = 0.95 * f

        def run() -> None:
            go_on("started")
            job.status = "running"
            t0 = time.perf_counter()
            im, job.notes = engine.run(s, p, preview=False, progress=step)
            data = png(im)
            go_on("finished")
            rid = token()
            info = {
                "id": rid,
                "url": f"/api/sessions/{sid}/results/{rid}",
                "width": im.width,
                "height": im.height,
                "alpha": p.alpha,
                "levels": p.levels,
                "styles": names,
                "seconds": round(time.perf_counter() - t0, 2),
            }
            sessions.keep(s, info, data)
            job.result, job.progress, job.status = info, 1.0, "done"

        def failed(fut: Future) -> None:
            job.future = None  # its exception's traceback holds the render's tensors
            if fut.cancelled() or isinstance(fut.exception(), Cancelled):
                job.status = "cancelled"
            elif fut.exception() is not None:
                job.error, job.status = one_line(fut.exception()), "error"

        s.jobs[job.id] = job  # first, so a session ending now cancels it
        try:
            job.future = worker.submit(run)
        except HTTPException:
            s.jobs.pop(job.id, None)
            raise
        job.future.add_done_callback(failed)
        return {"job": job.id}

    def find_job(sid: str, jid: str) -> Job:
        job = sessions.get(sid).jobs.get(jid)
        if job is None:
            raise HTTPException(404, "unknown job")
        return job

    @app.api_route("/api/sessions/{sid}/jobs/{jid}", methods=["GET", "HEAD"])
    def job_state(sid: str, jid: str) -> dict:
        return find_job(sid, jid).state()

    @app.delete("/api/sessions/{sid}/jobs/{jid}")
    def cancel_job(sid: str, jid: str) -> dict:
        """Cancel a render: a queued one at once, a running one at its next level (one coarse-to-fine
        level is the unit of work). A finished one is left as it is. Returns the job's state."""
        job = find_job(sid, jid)
        if job.status not in FINISHED:
            job.cancel = True
            if job.status == "queued":
                job.status = "cancelled"
                if (future := job.future) is not None:
                    future.cancel()  # its place in the queue is free at once
        return job.state()

    @app.get("/api/sessions/{sid}/jobs/{jid}/events")
    def job_events(sid: str, jid: str) -> StreamingResponse:
        """Server-sent events: the job's state each time it changes, until done or error."""
        job = find_job(sid, jid)

        async def stream():
            last = None
            while True:
                state = job.state()
                if state != last:
                    yield f"data: {json.dumps(state)}\n\n"
                    last = state
                if state["status"] in FINISHED or stopping.is_set():
                    return
                await asyncio.sleep(0.1)

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.api_route("/api/sessions/{sid}/results", methods=["GET", "HEAD"])
    def results(sid: str) -> list[dict]:
        return list(sessions.get(sid).gallery)  # a copy: the worker may add one meanwhile

    @app.api_route("/api/sessions/{sid}/results/{rid}", methods=["GET", "HEAD"])
    def result(sid: str, rid: str) -> Response:
        data = sessions.get(sid).results.get(rid)
        if data is None:
            raise HTTPException(404, "unknown result")
        disposition = f'attachment; filename="wct-{rid[:8]}.png"'
        return Response(data, media_type="image/png", headers={"Content-Disposition": disposition})

    @app.delete("/api/sessions/{sid}/results/{rid}", status_code=204)
    def delete_result(sid: str, rid: str) -> Response:
        """Delete one of this session's results (404 if it has no such result)."""
        s = sessions.get(sid)
        with sessions.lock:  # `Sessions.keep` may be dropping it meanwhile
            if not s.drop(rid):
                raise HTTPException(404, "unknown result")
        return Response(status_code=204)

    return app


def run_server(
    host: str = "127.0.0.1",
    port: int = 7860,
    device: str | None = None,
    precision: str = "fp32",
    vgg_weights: str | os.PathLike | None = None,
) -> None:
    """Serve the studio with uvicorn; the model loads in the background at start."""
    hosts = list(LOOPBACK_HOSTS) if host in LOOPBACK else ["*"]
    app = create_app(device=device, hosts=hosts, precision=precision, vgg_weights=vgg_weights)
    app.state.worker.submit(lambda: app.state.engine.s)  # load the weights while the page opens
    try:
        studio_server(app, host=host, port=port, log_level="warning").run()
    finally:  # a process that exits while the worker is in the model aborts ("terminate called")
        worker = app.state.worker.thread
        try:  # Ctrl-C again, at any point of this (after which is_alive says False: CPython 3.11)
            app.state.stop()
            app.state.worker.close()
            worker.join(1)
            if worker.is_alive():
                print("stopping when the model ends its current level (Ctrl-C again: now)", flush=True)
                worker.join(SHUTDOWN_WAIT)
            ended = not worker.is_alive()
        except KeyboardInterrupt:
            ended = False
        if not ended:  # an exit with the worker in the model aborts: skip the runtime's cleanup
            print("interrupted", flush=True)
            os._exit(130)


def studio_server(app: FastAPI, **config: Any) -> Any:
    """A uvicorn server for the studio `app` on which Ctrl-C (or SIGTERM) first calls
    `app.state.stop()`: uvicorn waits for open requests, and a page's event stream would otherwise
    hold it until its render is done."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            app.state.stop()
            super().handle_exit(sig, frame)

    return Server(uvicorn.Config(app, **config))
