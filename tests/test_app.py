"""The browser editor (`python -m hairclipv2.app`) on the embedded default: the canvases' conversion to
sketches and painted masks, a sketch edit and a bad upload through the app's API (gradio_client), and
a text edit driven in headless Chromium (Playwright on the system's Chromium)."""

from __future__ import annotations

import os
import shutil
import socket
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hairclipv2.app import CANVAS, PAINT_COLOURS, EditorApp, build_app, hex_to_rgb, mask_from_canvas, sketch_from_canvas
from hairclipv2.photo import EditError, PhotoEditor
from hairclipv2.pipeline import from_pretrained

from conftest import ThresholdParser

ROOT = Path(__file__).resolve().parent.parent
SMALL = [
    "editing.embedding.w_steps=2", "editing.embedding.fs_steps=2", "editing.embedding.refinement=2",
    "editing.text.steps=2", "editing.colour.edit_steps=2", "editing.colour.final_steps=2",
    "editing.use_landmarks=false",
]  # fmt: skip
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def layer(rgba: np.ndarray) -> dict:
    """An ImageEditor value with one drawn layer."""
    return {"background": None, "layers": [rgba], "composite": None}


def test_painted_colours_become_painting_classes_over_the_source_labels():
    labels = np.full((32, 32), 15, np.int64)  # cloth everywhere: a class the painting cannot produce
    rgba = np.zeros((CANVAS, CANVAS, 4), np.uint8)
    rgba[:128, :, :3], rgba[:128, :, 3] = PAINT_COLOURS[10], 255  # hair over the top quarter
    rgba[256:, :256, :3], rgba[256:, :256, 3] = (40, 240, 60), 255  # near the ear colour
    mask = mask_from_canvas(layer(rgba), labels)
    assert mask.shape == (32, 32) and mask.dtype == np.int64
    assert (mask[:8] == 10).all() and (mask[16:, :16] == 6).all()
    assert (mask[8:16] == 15).all() and (mask[16:, 16:] == 15).all()  # unpainted: the source's labels
    assert mask_from_canvas(layer(np.zeros((CANVAS, CANVAS, 4), np.uint8)), labels) is None


def test_sketch_strokes_are_the_drawn_pixels_at_the_edit_size():
    rgba = np.zeros((CANVAS, CANVAS, 4), np.uint8)
    rgba[100:110, 50:400, 3] = 255
    strokes = sketch_from_canvas(layer(rgba), 64)
    assert strokes.shape == (64, 64) and strokes.dtype == np.uint8 and set(np.unique(strokes)) == {0, 255}
    assert strokes[13, 20] == 255 and strokes[40, 20] == 0
    assert sketch_from_canvas(None, 64) is None and sketch_from_canvas(layer(np.zeros_like(rgba)), 64) is None
    assert hex_to_rgb("#b43228") == (180, 50, 40) and hex_to_rgb("rgba(10, 20.4, 30, 1)") == (10, 20, 30)
    with pytest.raises(EditError, match="#rrggbb"):
        hex_to_rgb("red")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from skimage import data

    folder = tmp_path_factory.mktemp("app_photos")
    Image.fromarray(data.astronaut()).save(folder / "astronaut.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not an image" * 10)
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(photos, tmp_path_factory):
    """The app on the embedded default (a parser that finds hair, so the region is visible)."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app = EditorApp(
            lambda: PhotoEditor(from_pretrained(None, SMALL, parser=ThresholdParser())),
            tmp_path_factory.mktemp("app_out"),
        )
        app.editor  # noqa: B018 -- built before the page serves, as main() does
    page = build_app(app, "random weights")
    _, url, _ = page.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    yield app, url
    page.close()


def test_a_sketch_edit_through_the_api_and_a_bad_upload_answered_with_a_message(served, photos, tmp_path):
    from gradio_client import Client, handle_file

    app, url = served
    client = Client(url, verbose=False)
    strokes = np.zeros((CANVAS, CANVAS, 4), np.uint8)
    strokes[60:200:4, 100:400, 3] = 255
    Image.fromarray(strokes).save(tmp_path / "strokes.png")
    sketch = {"background": None, "layers": [handle_file(str(tmp_path / "strokes.png"))], "composite": None}
    photo = handle_file(str(photos / "astronaut.png"))
    aligned, bald, proxy, edit, pasted, files = client.predict(
        photo, "sketch", "", None, sketch, None, "", "#b43228", api_name="/edit"
    )
    assert bald is None  # a sketch alone blends no bald proxy
    # the 64 px results shown at the canvas size, upscaled with nearest: each pixel a 8x8 block
    assert Image.open(aligned).size == Image.open(proxy).size == Image.open(edit).size == (CANVAS, CANVAS)
    shown = np.asarray(Image.open(edit).convert("RGB"))
    assert np.array_equal(shown, np.repeat(np.repeat(shown[::8, ::8], 8, 0), 8, 1))
    before, after = np.asarray(Image.open(photos / "astronaut.png")), np.asarray(Image.open(pasted).convert("RGB"))
    assert after.shape == before.shape and 0 < (after != before).any(-1).mean() < 0.5
    # downloads at their computed size, named after the photo as the command names its outputs
    names = sorted(Path(f).name for f in files)
    assert names == ["astronaut_aligned.png", "astronaut_edit.png", "astronaut_edited.png", "astronaut_proxy.png"]
    saved = {Path(f).name: f for f in files}
    assert np.array_equal(np.asarray(Image.open(saved["astronaut_edit.png"]).convert("RGB")), shown[::8, ::8])

    started = app.edits_started
    with pytest.raises(Exception, match="not a readable image"):
        client.predict(
            handle_file(str(photos / "corrupt.png")), "text", "bob", None, None, None, "", "#b43228", api_name="/edit"
        )
    with pytest.raises(Exception, match="the hairstyle text is empty"):
        client.predict(photo, "text", "  ", None, None, None, "", "#b43228", api_name="/edit")
    with pytest.raises(Exception, match="draw hair strokes"):
        client.predict(photo, "sketch", "", None, None, None, "", "#b43228", api_name="/edit")
    assert app.edits_started == started  # each refused before an edit starts
    sketch_canvas, mask_canvas = client.predict(photo, api_name="/canvases")  # still serving
    assert Image.open(sketch_canvas["background"]).size == (CANVAS, CANVAS)


def upload(page, path: Path) -> None:
    """Choose a file in the photo box as a user does: clear the previous one, click the box, answer
    the file chooser."""
    clear = page.locator("#photo button[aria-label='Clear'], #photo button[title='Clear']")
    if clear.count():
        clear.first.click()
    with page.expect_file_chooser() as chooser:
        page.locator("#photo button.upload-container, #photo [aria-label*='upload' i]").first.click()
    chooser.value.set_files(str(path))


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it with apt-get)")
def test_a_text_edit_in_headless_chromium(served, photos, tmp_path):
    from playwright.sync_api import sync_playwright

    app, url = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page()
        page.goto(url)
        upload(page, photos / "corrupt.png")
        page.get_by_text("corrupt.png: not a readable image").first.wait_for(timeout=60_000)  # in the page

        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        upload(page, photos / "astronaut.png")
        page.locator("#sketch canvas").first.wait_for(timeout=60_000)
        page.locator("#text textarea").fill("short bob haircut")
        started = app.edits_started
        page.locator("#run").click()
        page.locator("#run").click()  # a second click while the edit runs starts nothing
        page.locator("#pasted img").wait_for(timeout=120_000)
        page.locator("#proxy img").wait_for(timeout=10_000)
        time.sleep(1)
        width = page.locator("#pasted img").evaluate("img => img.naturalWidth")
        assert width == 512 and app.edits_started == started + 1
        assert page.locator("#before img").evaluate("img => img.naturalWidth") == CANVAS  # before | after
        assert page.locator("#colour_text textarea").count() == 0  # fields of other modes are hidden
        assert "hair" in page.locator("#legend").inner_text()
        page.locator("#text textarea").fill("   ")  # an error after an edit: said, the results stay
        page.locator("#run").click()
        page.get_by_text("the hairstyle text is empty").first.wait_for(timeout=60_000)
        time.sleep(1)
        assert page.locator("#pasted img").evaluate("img => img.naturalWidth") == 512
        browser.close()


@pytest.fixture(scope="module")
def world_served(tmp_path_factory):
    """The browser editor as a user starts it on the world: `python -m hairclipv2.app --aligned --set
    experiment=hairclipv2_world --fast` (the world's trained networks, no random parser)."""
    from hairclipv2.pipeline import command_config, from_config

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg, _ = command_config(None, ["editing.source_cache=8", "experiment=hairclipv2_world"], fast=True)
        app = EditorApp(lambda: PhotoEditor(from_config(cfg), aligned=True), tmp_path_factory.mktemp("world_out"))
        app.editor  # noqa: B018
    page = build_app(app, None)
    _, url, _ = page.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    yield app, url
    page.close()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it with apt-get)")
def test_a_world_face_edited_in_headless_chromium_for_the_docs_screenshot(world_served, tmp_path):
    """The screenshot of the docs (UPDATE_SCREENSHOT=1 writes docs/app.png): a world face, as a user
    gets it, edited by the world's networks."""
    from playwright.sync_api import sync_playwright

    from hairclipv2.world.__main__ import main as world_main

    world_main([str(tmp_path / "faces"), "--n", "1", "--seed", "0"])
    app, url = world_served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        upload(page, tmp_path / "faces" / "world_0_0.png")
        page.locator("#sketch canvas").first.wait_for(timeout=60_000)
        page.locator("#text textarea").fill("short black straight hair")
        page.locator("#run").click()
        page.locator("#pasted img").wait_for(timeout=180_000)
        time.sleep(1)
        # the 64 px face with its edit, shown at the canvas size (nearest)
        assert page.locator("#pasted img").evaluate("img => img.naturalWidth") == CANVAS
        page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        browser.close()
    shot = np.asarray(Image.open(tmp_path / "app.png").convert("L"))
    assert shot.std() > 10  # a rendered page
    if os.environ.get("UPDATE_SCREENSHOT"):
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copy(tmp_path / "app.png", ROOT / "docs" / "app.png")
