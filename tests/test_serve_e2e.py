"""`wct serve` end to end in headless Chromium: upload, slide alpha, preview changes, render, download.

Skipped only when Chromium, its driver or selenium is missing (CI installs them: see .ci/run).
Set WCT_E2E_SCREENSHOTS=DIR to keep the screenshot (scripts/serve_screenshot.py does).
"""

import base64
import io
import json
import os
import shutil
import socket
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="chromium and chromium-driver are not installed"
)

webdriver = pytest.importorskip("selenium.webdriver")
uvicorn = pytest.importorskip("uvicorn")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from wct import serve  # noqa: E402
from wct.demo import landscape, painting  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(stylizer):
    """The studio on a free loopback port, served by uvicorn on a thread."""
    port = free_port()
    app = serve.create_app(stylizer)
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)
    app.state.worker.thread.join(60)  # shutdown stopped the prefetch: let the last frame finish


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, for get_log
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


PREVIEW_PIXELS = """
const img = document.getElementById("preview");
const canvas = document.createElement("canvas");
canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
canvas.getContext("2d").drawImage(img, 0, 0);
return canvas.toDataURL("image/png");
"""


def preview_pixels(driver) -> np.ndarray:
    url = driver.execute_script(PREVIEW_PIXELS)
    return np.asarray(
        Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"), dtype=int
    )


def previews(driver) -> int:
    ok = driver.execute_script(
        "const i = document.getElementById('preview'); return i.complete && i.naturalWidth > 0"
    )
    return int(driver.find_element(By.ID, "preview").get_attribute("data-count")) if ok else 0


def test_studio_in_headless_chromium(server, browser, tmp_path):
    content, style, bad = tmp_path / "landscape.png", tmp_path / "painting.png", tmp_path / "notes.png"
    landscape(384, 288).save(content)
    painting(256, 256).save(style)
    bad.write_text("this is not an image")
    wait = WebDriverWait(browser, 120, poll_frequency=0.1)

    browser.get(server)
    wait.until(lambda d: d.execute_script("return typeof state !== 'undefined' && state.session"))
    Select(browser.find_element(By.ID, "size")).select_by_visible_text("256")
    for level in ("5", "4"):  # levels 3, 2, 1: quicker, and the deep decoders wash the photo out
        browser.find_element(By.CSS_SELECTOR, f"#levels input[value='{level}']").click()
    browser.find_element(By.ID, "content-input").send_keys(str(content))
    browser.find_element(By.ID, "style-input").send_keys(str(style))
    wait.until(lambda d: previews(d) >= 1)
    before, count = preview_pixels(browser), previews(browser)
    assert before.shape == (192, 256, 3)

    slider = browser.find_element(By.ID, "alpha")
    slider.send_keys(*[Keys.ARROW_RIGHT] * 4)  # alpha 0.6 -> 0.8 in four moves, as with the keyboard
    wait.until(
        lambda d: (
            previews(d) > count and d.find_element(By.ID, "preview").get_attribute("data-alpha") == "0.80"
        )
    )
    after = preview_pixels(browser)
    assert np.abs(after - before).mean() > 2, "the preview did not change with alpha"
    assert "ms" in browser.find_element(By.ID, "latency").text
    assert not browser.find_element(By.ID, "notes").is_displayed()  # nothing to say about these

    browser.find_element(By.ID, "render").click()
    wait.until(lambda d: d.find_element(By.ID, "download").is_displayed())
    href = browser.find_element(By.ID, "download").get_attribute("href")
    with urllib.request.urlopen(href) as response:
        data = response.read()
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG" and im.size == (256, 192)
        im.load()
    assert len(browser.find_elements(By.CSS_SELECTOR, "#gallery figure")) == 1
    assert not browser.find_element(By.ID, "cancel").is_displayed()

    Select(browser.find_element(By.ID, "size")).select_by_visible_text("2048")  # seconds a level
    browser.find_element(By.ID, "render").click()
    wait.until(lambda d: d.find_element(By.ID, "cancel").is_displayed())
    browser.execute_script("draw()")  # as adding or removing a style does: a second render must not start
    assert not browser.find_element(By.ID, "render").is_enabled()
    browser.find_element(By.ID, "cancel").click()
    wait.until(lambda d: d.find_element(By.ID, "latency").text == "render cancelled")
    assert not browser.find_element(By.ID, "cancel").is_displayed()
    assert browser.find_element(By.ID, "render").is_enabled()
    assert len(browser.find_elements(By.CSS_SELECTOR, "#gallery figure")) == 1
    Select(browser.find_element(By.ID, "size")).select_by_visible_text("256")

    browser.find_element(By.ID, "style-input").send_keys(str(bad))
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "notes.png: the file is not an image" in browser.find_element(By.ID, "error").text
    browser.execute_script("document.getElementById('error').hidden = true")  # a clean screenshot

    shots = Path(os.environ.get("WCT_E2E_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(shots / "serve.png"))
    with Image.open(shots / "serve.png") as im:
        assert im.size[0] >= 1000

    painting(10, 8, seed=3).save(tiny := tmp_path / "tiny.png")
    browser.find_element(By.ID, "style-input").send_keys(str(tiny))
    wait.until(lambda d: d.find_element(By.ID, "notes").is_displayed())
    assert "the style is only 10x8 px: stretched" in browser.find_element(By.ID, "notes").text

    for level in ("3", "2", "1"):  # no level: the render is refused, and the error shows
        browser.find_element(By.CSS_SELECTOR, f"#levels input[value='{level}']").click()
    browser.find_element(By.ID, "render").click()
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    browser.find_element(By.CSS_SELECTOR, "#levels input[value='1']").click()
    browser.find_element(By.ID, "render").click()  # until a render succeeds
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery figure")) == 2)
    assert not browser.find_element(By.ID, "error").is_displayed()

    figures = browser.find_elements(By.CSS_SELECTOR, "#gallery figure")  # newest first
    newest, oldest = (f.get_attribute("data-id") for f in figures)
    figures[0].find_element(By.CSS_SELECTOR, "figcaption button").click()  # delete the newest
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery figure")) == 1)
    assert not browser.find_element(By.ID, "download").is_displayed()  # it offered the deleted one
    results = f"{server}/api/sessions/{browser.execute_script('return state.session')}/results"
    assert [r["id"] for r in json.load(urllib.request.urlopen(results))] == [oldest]
    urllib.request.urlopen(urllib.request.Request(f"{results}/{oldest}", method="DELETE"))  # as if evicted
    browser.find_element(By.ID, "render").click()  # the page drops what the server no longer holds
    wait.until(lambda d: d.find_element(By.ID, "download").is_displayed())
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery figure")) == 1)
    kept = browser.find_element(By.CSS_SELECTOR, "#gallery figure").get_attribute("data-id")
    assert kept not in (newest, oldest)


def test_long_file_names_wrap_on_a_phone_and_are_named_once(server, browser, tmp_path):
    """A 390-px-wide page keeps its width with a 200-character file name in a thumbnail and in an
    error, and the error names the file once (as the server cuts it, at 80 characters)."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": False},
    )
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    stem = "x" * 200
    landscape(96, 64).save(photo := tmp_path / f"photo_{stem}.png")
    (empty := tmp_path / f"empty_{stem}.png").write_bytes(b"")
    browser.get(server)
    wait.until(lambda d: d.execute_script("return typeof state !== 'undefined' && state.session"))
    browser.find_element(By.ID, "content-input").send_keys(str(photo))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#content .thumb"))
    browser.find_element(By.ID, "style-input").send_keys(str(empty))
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert browser.find_element(By.ID, "error").text == f"empty_{stem}"[:80] + ": the file is empty"
    width, scroll = browser.execute_script("return [innerWidth, document.documentElement.scrollWidth]")
    assert width == 390 and scroll <= width, "the page is wider than the phone"


def test_a_double_click_starts_one_render(server, browser, tmp_path):
    """The second click of a double click on "Render full size" comes before the server has named
    the first render's job: it must not start a second render the page could not cancel."""
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    landscape(96, 64).save(photo := tmp_path / "photo.png")
    painting(64, 64).save(style := tmp_path / "style.png")
    browser.get(server)
    wait.until(lambda d: d.execute_script("return typeof state !== 'undefined' && state.session"))
    browser.find_element(By.ID, "content-input").send_keys(str(photo))
    browser.find_element(By.ID, "style-input").send_keys(str(style))
    wait.until(lambda d: d.find_element(By.ID, "render").is_enabled())
    browser.execute_script(
        """window.renders = 0;
        const real = window.fetch;
        window.fetch = (url, options) => {
            if (String(url).endsWith("/render")) window.renders += 1;
            return real(url, options);
        };
        const button = document.getElementById("render");
        button.click();
        button.click();"""
    )
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#gallery figure"))
    wait.until(lambda d: d.find_element(By.ID, "render").is_enabled())
    assert browser.execute_script("return window.renders") == 1


def accessible_names(driver) -> list[str]:
    """What a screen reader announces for each control and image (Chromium's accessibility tree)."""
    tree = driver.execute_cdp_cmd("Accessibility.getFullAXTree", {})["nodes"]
    roles = ("button", "checkbox", "slider", "combobox", "link", "image", "img")
    return [
        n.get("name", {}).get("value", "").strip()
        for n in tree
        if not n.get("ignored") and n.get("role", {}).get("value") in roles
    ]


def test_every_control_has_its_own_name_and_is_reached_by_tab(server, browser, tmp_path):
    """What a screen reader announces for each control of the page (Chromium's accessibility tree)
    is never empty and never the same for two controls (three file pickers all labelled "choose"
    were indistinguishable), and Tab reaches every enabled control in the page's order. With the
    same painting uploaded twice and two renders at the same alpha, each of their thumbnails,
    remove buttons, weights, gallery images, links and delete buttons still has a name of its own."""
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    browser.get(server)
    wait.until(lambda d: d.execute_script("return typeof state !== 'undefined' && state.session"))
    browser.execute_script("document.getElementById('mask-drop').hidden = false")  # as with 2 styles
    names = accessible_names(browser)
    assert "choose a content photo" in names and "choose a mask image" in names
    assert all(names) and len(set(names)) == len(names), names

    order = ["end", "content-input", "style-input", "mask-input", "alpha", "5", "4", "3", "2", "1"]
    order += ["size", "preserve"]
    reached = []
    for _ in order:  # Render is disabled until there is a photo
        webdriver.ActionChains(browser).send_keys(Keys.TAB).perform()
        reached.append(browser.execute_script("const e = document.activeElement; return e.id || e.value"))
    assert reached == order

    landscape(96, 64).save(photo := tmp_path / "photo.png")
    painting(64, 64).save(style := tmp_path / "style.png")
    browser.find_element(By.ID, "content-input").send_keys(str(photo))
    for _ in range(2):
        browser.find_element(By.ID, "style-input").send_keys(str(style))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#styles li")) == 2)
    Select(browser.find_element(By.ID, "size")).select_by_visible_text("256")
    for figures in (1, 2):
        wait.until(lambda d: d.find_element(By.ID, "render").is_enabled())
        browser.find_element(By.ID, "render").click()
        wait.until(lambda d, n=figures: len(d.find_elements(By.CSS_SELECTOR, "#gallery figure")) == n)
    wait.until(lambda d: d.execute_script("return [...document.images].every((i) => i.complete)"))
    names = accessible_names(browser)
    assert "remove style.png" in names and "remove style.png (2)" in names
    assert "weight of style.png" in names and "weight of style.png (2)" in names
    assert sum(n.startswith("delete") for n in names) == 2
    assert sum(n.startswith("download") for n in names) == 2  # and "Download PNG (...)"
    assert all(names) and len(set(names)) == len(names), names


def test_the_page_loads_without_console_errors(server, browser):
    """Nothing the page asks for is missing: browsers ask for /favicon.ico unless the page names
    an icon, and its 404 was an error in the console."""
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    browser.get(server)
    wait.until(lambda d: d.execute_script("return typeof state !== 'undefined' && state.session"))
    time.sleep(0.5)  # the icon is asked for after the page has loaded
    assert [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_the_readouts_are_live_regions(server, browser):
    """Screen readers announce each new preview timing and render message (#latency) as they do
    the notes: all three readouts are polite live regions, the error an assertive one."""
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    browser.get(server)
    wait.until(lambda d: d.execute_script("return typeof state !== 'undefined' && state.session"))
    browser.execute_script("for (const id of ['notes', 'error']) document.getElementById(id).hidden = false")
    root = browser.execute_cdp_cmd("DOM.getDocument", {})["root"]["nodeId"]
    live = {}
    for element in ("latency", "notes", "error"):
        node = browser.execute_cdp_cmd("DOM.querySelector", {"nodeId": root, "selector": f"#{element}"})
        ax = browser.execute_cdp_cmd("Accessibility.getPartialAXTree", {**node, "fetchRelatives": False})
        props = {p["name"]: p["value"].get("value") for p in ax["nodes"][0].get("properties", [])}
        live[element] = props.get("live")
    assert live == {"latency": "polite", "notes": "polite", "error": "assertive"}


def test_removing_the_photo_or_the_last_style_clears_the_preview(server, browser, tmp_path):
    """The preview, its timing and its notes are of the images shown: with the photo (or the last
    style) removed they go, instead of showing a stylised photo that is no longer there."""
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    landscape(96, 64).save(photo := tmp_path / "photo.png")
    painting(10, 8).save(tiny := tmp_path / "tiny.png")
    browser.get(server)
    wait.until(lambda d: d.execute_script("return typeof state !== 'undefined' && state.session"))
    hint = browser.find_element(By.ID, "latency").text
    browser.find_element(By.ID, "style-input").send_keys(str(tiny))
    for remove in ("#content .thumb button", "#styles .thumb button"):
        browser.find_element(By.ID, "content-input").send_keys(str(photo))
        wait.until(lambda d: previews(d) >= 1 and d.find_element(By.ID, "notes").is_displayed())
        assert "tiny.png: the style is only 10x8 px" in browser.find_element(By.ID, "notes").text
        browser.find_element(By.CSS_SELECTOR, remove).click()
        wait.until(lambda d: previews(d) == 0)
        assert browser.find_element(By.ID, "latency").text == hint
        assert not browser.find_element(By.ID, "notes").is_displayed()


def test_a_server_out_of_reach_is_named_not_failed_to_fetch(server, browser, tmp_path):
    """With the server stopped (or the network down) the page says so in words, not with the
    browser's bare "Failed to fetch"."""
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    painting(32, 32).save(style := tmp_path / "style.png")
    browser.get(server)
    wait.until(lambda d: d.execute_script("return typeof state !== 'undefined' && state.session"))
    browser.execute_cdp_cmd("Network.enable", {})
    offline = {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1}
    browser.execute_cdp_cmd("Network.emulateNetworkConditions", offline)
    browser.find_element(By.ID, "style-input").send_keys(str(style))
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    expected = "style.png: no answer from the studio server: is wct serve still running?"
    assert browser.find_element(By.ID, "error").text == expected


def test_a_bad_file_among_several_chosen_keeps_its_error(server, browser, tmp_path):
    """Three paintings chosen at once, the second not an image: the two others are added and the
    error about the second stays shown (the third's success used to hide it at once)."""
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    painting(32, 32, seed=1).save(first := tmp_path / "first.png")
    (bad := tmp_path / "notes.png").write_text("this is not an image")
    (empty := tmp_path / "empty.png").write_bytes(b"")
    painting(32, 32, seed=2).save(last := tmp_path / "last.png")
    browser.get(server)
    wait.until(lambda d: d.execute_script("return typeof state !== 'undefined' && state.session"))
    browser.find_element(By.ID, "style-input").send_keys("\n".join(map(str, (first, bad, empty, last))))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#styles li")) == 2)
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed() and error.text == (
        "notes.png: the file is not an image in an accepted format (PNG, JPEG, WEBP, BMP, GIF, TIFF)"
        " \u00b7 empty.png: the file is empty"
    )


def focused(driver) -> str:
    """The focused element's id or accessible label ("BODY" when the focus was lost)."""
    return driver.execute_script(
        "const e = document.activeElement; return e.id || e.getAttribute('aria-label') || e.tagName"
    )


def test_the_focus_is_never_dropped_after_an_action(server, browser, tmp_path):
    """A keyboard user's focus never falls to the page's body: removing a thumbnail focuses the
    next one's remove button (or the zone's file picker), Render hands it to Cancel while it
    renders and gets it back at the end (cancelled or done), and deleting a render focuses the
    next one's delete button, then the gallery's heading."""
    wait = WebDriverWait(browser, 120, poll_frequency=0.05)
    landscape(96, 64).save(photo := tmp_path / "photo.png")
    painting(48, 48, seed=1).save(a := tmp_path / "a.png")
    painting(48, 48, seed=2).save(b := tmp_path / "b.png")
    browser.get(server)
    wait.until(lambda d: d.execute_script("return typeof state !== 'undefined' && state.session"))

    def press(name: str) -> None:  # Enter on the control (by id or label), as with the keyboard
        by = (By.CSS_SELECTOR, f"[aria-label='{name}']") if " " in name else (By.ID, name)
        browser.find_element(*by).send_keys(Keys.ENTER)

    browser.find_element(By.ID, "content-input").send_keys(str(photo))
    browser.find_element(By.ID, "style-input").send_keys(f"{a}\n{b}")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#styles li")) == 2)
    for label, then in (("remove a.png", "remove b.png"), ("remove b.png", "style-input")):
        press(label)
        wait.until(lambda d, then=then: focused(d) == then)
    press("remove photo.png")
    wait.until(lambda d: focused(d) == "content-input")

    browser.find_element(By.ID, "content-input").send_keys(str(photo))
    browser.find_element(By.ID, "style-input").send_keys(str(a))
    for level in ("5", "4"):
        browser.find_element(By.CSS_SELECTOR, f"#levels input[value='{level}']").click()
    Select(browser.find_element(By.ID, "size")).select_by_visible_text("2048")  # seconds a level
    wait.until(lambda d: d.find_element(By.ID, "render").is_enabled())
    press("render")
    wait.until(lambda d: focused(d) == "cancel")
    press("cancel")
    wait.until(lambda d: d.find_element(By.ID, "latency").text == "render cancelled")
    assert focused(browser) == "render"

    Select(browser.find_element(By.ID, "size")).select_by_visible_text("256")
    for figures in (1, 2):
        press("render")
        wait.until(lambda d, n=figures: len(d.find_elements(By.CSS_SELECTOR, "#gallery figure")) == n)
        wait.until(lambda d: d.find_element(By.ID, "render").is_enabled())
        assert focused(browser) == "render"
    press("delete render 2 (alpha 0.6)")
    wait.until(lambda d: focused(d) == "delete render 1 (alpha 0.6)")
    press("delete render 1 (alpha 0.6)")
    wait.until(lambda d: focused(d) == "gallery-heading")
    assert not browser.find_elements(By.CSS_SELECTOR, "#gallery figure")


def test_a_tiff_upload_gets_a_thumbnail_the_browser_can_show(server, browser, tmp_path):
    """Chromium shows no TIFF: the thumbnail falls back to the server's PNG of the upload."""
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)
    landscape(96, 64).save(photo := tmp_path / "photo.tif")
    browser.get(server)
    wait.until(lambda d: d.execute_script("return typeof state !== 'undefined' && state.session"))
    browser.find_element(By.ID, "content-input").send_keys(str(photo))
    shown = (
        "const i = document.querySelector('#content .thumb img'); return i && i.complete && i.naturalWidth"
    )
    assert wait.until(lambda d: d.execute_script(shown)) == 96


def test_a_refused_session_is_named_and_tried_again(server, browser, tmp_path):
    """With every session taken the page says why (429 "busy"), and its next action tries again
    instead of uploading to a session named "null" ("unknown or expired session")."""
    wait = WebDriverWait(browser, 60, poll_frequency=0.1)
    painting(32, 32).save(style := tmp_path / "style.png")

    def start() -> str:
        request = urllib.request.Request(f"{server}/api/sessions", method="POST")
        return json.load(urllib.request.urlopen(request))["id"]

    taken = [start() for _ in range(serve.MAX_SESSIONS)]
    busy = f"cannot start a session: busy: {serve.MAX_SESSIONS} sessions are open, end one or try later"
    browser.get(server)
    wait.until(lambda d: d.find_element(By.ID, "error").text == busy)
    browser.find_element(By.ID, "style-input").send_keys(str(style))
    wait.until(lambda d: d.find_element(By.ID, "error").text == f"style.png: {busy}")
    urllib.request.urlopen(urllib.request.Request(f"{server}/api/sessions/{taken[0]}", method="DELETE"))
    browser.find_element(By.ID, "style-input").send_keys(str(style))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#styles .thumb"))
    assert browser.execute_script("return state.session") not in (None, *taken)
    assert not browser.find_element(By.ID, "error").is_displayed()


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two CSS colours given as rgb(...)."""

    def luminance(css: str) -> float:
        c = np.array([float(v) for v in css[css.index("(") + 1 : -1].split(",")[:3]]) / 255
        c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
        return float(c @ [0.2126, 0.7152, 0.0722])

    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_control_outlines_stand_out_at_3_to_1(server, browser):
    """WCAG 1.4.11: a button's, the levels' and a drop zone's border is at least 3:1 against the
    white inside it and the page around it (#d2d2d7 was 1.5:1)."""
    browser.get(server)
    page = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    for element in ("end", "levels", "content-drop"):
        border = browser.execute_script(
            "return getComputedStyle(document.getElementById(arguments[0])).borderTopColor", element
        )
        assert min(contrast(border, "rgb(255, 255, 255)"), contrast(border, page)) >= 3, (element, border)
