"""Issue 32's viewer in a real browser: window/level by drag and presets, zoom and pan, the length tool
and the heat-map, each checked on the canvas's pixels against the formula it should follow, with a
screenshot of each in the test artefacts."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest
from django.core.files.base import ContentFile
from playwright.sync_api import expect

from cases.rendering import png_bytes
from cases.services import case_create
from clinic.views.pictures import viewer_slice
from segmentation.testing import make_case
from tests.browser.helpers import sign_in
from tests.cases.builders import dicom_bytes
from tests.web.builders import add_finished_run

CANVAS = 560  # the viewer canvas's size in its own pixels (templates/cases/case_detail.html)
SIZE = 64  # the test slice, so one image pixel is CANVAS / SIZE = 8.75 canvas pixels at zoom 1
SCALE = CANVAS / SIZE
SLOPE, INTERCEPT = 2, -100  # the DICOM rescale: stored value = 2 x raw - 100
SPACING = (0.5, 0.75)  # mm between rows, between columns
WINDOW = (1500, 1000)  # the DICOM header's window (level, width)
# Where the slice holds what: a region at the window's level, a bright marker, the rest in between.
REGION = (slice(8, 16), slice(8, 16))  # stored 1500
MARKER = (slice(16, 24), slice(40, 48))  # stored 3900: the mask and p = 1
BACKGROUND = 700


def window_level(value: float, center: float, width: float) -> int:
    """DICOM PS3.3 C.11.2.1.2.1, the linear VOI function, as the viewer applies it."""
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    if value <= low:
        return 0
    if value > high:
        return 255
    return int(np.floor(((value - (center - 0.5)) / (width - 1) + 0.5) * 255 + 0.5))


def heat_colour(p: float) -> tuple[int, int, int]:
    """static/js/viewer.js's colour map: blue, cyan, yellow, red at p = 0, 0.35, 0.65, 1."""
    stops = [(0, (0, 0, 255)), (0.35, (0, 255, 255)), (0.65, (255, 255, 0)), (1, (255, 0, 0))]
    for (p0, c0), (p1, c1) in itertools.pairwise(stops):
        if p <= p1:
            t = (p - p0) / (p1 - p0)
            return tuple(int(np.floor(a + t * (b - a) + 0.5)) for a, b in zip(c0, c1, strict=True))
    return stops[-1][1]


def stored_values() -> np.ndarray:
    values = np.full((SIZE, SIZE), BACKGROUND, np.float64)
    values[REGION] = 1500
    values[MARKER] = 3900
    values[60:, :] = -100  # the lowest value: the full range runs from -100 to 3900
    return values


@pytest.fixture
def dicom_case(media_dir, doctor, settings):
    """A DICOM case of known stored values and spacing, with the ensemble's mask (the marker) and its
    probability map (1 on the marker, 0.5 on the region, 0 elsewhere)."""
    settings.TUMORSITE_PRIMARY_MODEL = "ensemble"
    raw = ((stored_values() - INTERCEPT) / SLOPE).astype(np.uint16)
    case = case_create(
        image_file=dicom_bytes(raw, rescale=(SLOPE, INTERCEPT), window=WINDOW, spacing=SPACING),
        filename="slice.dcm",
        user=doctor,
        patient_identifier="VIEWER-1",
    )
    mask = np.zeros((SIZE, SIZE), bool)
    mask[MARKER] = True
    run = add_finished_run(case, "ensemble", mask, ensemble=True)
    probability = np.zeros((SIZE, SIZE), np.uint8)
    probability[MARKER] = 255
    probability[REGION] = 128  # 0.502
    run.probability_file.save(f"case{case.pk}_ensemble_prob.png", ContentFile(png_bytes(probability)))
    return case


@pytest.fixture(autouse=True)
def console_errors(page):
    """What the page writes to its console as errors (a failed fetch, a script error): none expected."""
    errors: list[str] = []
    page.on(
        "console",
        lambda message: (
            errors.append(f"{message.text} {message.location.get('url', '')}")
            if message.type == "error"
            else None
        ),
    )
    yield errors
    # The browser asks for /favicon.ico by itself; the site has none, and that is no error of the page's.
    assert [e for e in errors if not e.endswith("/favicon.ico")] == []


def open_case(page, live_server, case, doctor):
    sign_in(page, live_server, doctor.username)
    page.goto(f"{live_server.url}/cases/{case.pk}/")
    # The slice is drawn once the window inputs are filled in; the mask layer once its PNG is decoded.
    expect(page.locator("#wl-width")).not_to_have_value("")
    page.wait_for_function("() => document.querySelectorAll('#layer-toggles input:checked').length === 1")
    page.wait_for_timeout(300)


def pixel(page, x: float, y: float) -> tuple[int, int, int]:
    """The canvas's RGB at canvas pixel (x, y)."""
    return tuple(
        page.eval_on_selector(
            "#viewer-canvas",
            "(c, p) => Array.from(c.getContext('2d').getImageData(p[0], p[1], 1, 1).data.slice(0, 3))",
            [int(x), int(y)],
        )
    )


def at_image(x: float, y: float) -> tuple[float, float]:
    """The canvas pixel at the centre of image pixel (x, y), at zoom 1."""
    return ((x + 0.5) * SCALE, (y + 0.5) * SCALE)


def white_box(page) -> tuple[int, int, int, int]:
    """The canvas's bounding box (x0, y0, x1, y1) of pure white pixels: the marker, with no mask drawn."""
    return tuple(
        page.eval_on_selector(
            "#viewer-canvas",
            """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let x0 = c.width, y0 = c.height, x1 = -1, y1 = -1;
                for (let y = 0; y < c.height; y++) for (let x = 0; x < c.width; x++) {
                  const i = (y * c.width + x) * 4;
                  if (d[i] === 255 && d[i + 1] === 255 && d[i + 2] === 255) {
                    x0 = Math.min(x0, x); y0 = Math.min(y0, y);
                    x1 = Math.max(x1, x + 1); y1 = Math.max(y1, y + 1); } }
                return [x0, y0, x1, y1]; }""",
        )
    )


def to_screen(page, canvas_x: float, canvas_y: float) -> tuple[float, float]:
    box = page.locator("#viewer-canvas").bounding_box()
    return box["x"] + canvas_x * box["width"] / CANVAS, box["y"] + canvas_y * box["height"] / CANVAS


def grey(value: int) -> tuple[int, int, int]:
    return (value, value, value)


def test_window_level_by_drag_and_by_preset_follows_the_dicom_formula(
    page, live_server, dicom_case, doctor, screenshot
):
    open_case(page, live_server, dicom_case, doctor)
    # It opens in the DICOM header's window, on the stored values (not the 8-bit picture).
    expect(page.locator("#wl-center")).to_have_value("1500")
    expect(page.locator("#wl-width")).to_have_value("1000")
    assert pixel(page, *at_image(10, 10)) == grey(window_level(1500, *WINDOW))
    assert pixel(page, *at_image(30, 40)) == grey(window_level(BACKGROUND, *WINDOW))

    # A right-drag: left-right widens the window, up-down moves the level.
    page.mouse.move(*to_screen(page, 280, 300))
    page.mouse.down(button="right")
    page.mouse.move(*to_screen(page, 330, 260), steps=5)
    page.mouse.up(button="right")
    center = float(page.locator("#wl-center").input_value())
    width = float(page.locator("#wl-width").input_value())
    assert width > WINDOW[1] and center < WINDOW[0]
    assert pixel(page, *at_image(10, 10)) == grey(window_level(1500, center, width))
    assert pixel(page, *at_image(30, 40)) == grey(window_level(BACKGROUND, center, width))
    screenshot("viewer-1-window-level-drag")

    # The full range preset shows the lowest value (-100) black and the highest (3900) white.
    page.get_by_label("Preset").select_option(label="Full range (L 1900.5, W 4001)")
    assert pixel(page, *at_image(30, 40)) == grey(window_level(BACKGROUND, 1900.5, 4001))
    assert pixel(page, *at_image(30, 40)) == grey(round(0.2 * 255))
    assert pixel(page, *at_image(30, 62)) == grey(0)
    assert pixel(page, *at_image(10, 10)) == grey(window_level(1500, 1900.5, 4001))
    # The readout gives the stored value under the pointer.
    page.mouse.move(*to_screen(page, *at_image(12, 9)))
    expect(page.locator("#viewer-readout")).to_have_text("x 12, y 9: 1500 stored value")
    screenshot("viewer-2-window-level-preset")
    assert page.js_errors == []


def test_zoom_and_pan_scale_and_move_the_slice_about_the_centre(
    page, live_server, dicom_case, doctor, screenshot
):
    open_case(page, live_server, dicom_case, doctor)
    page.get_by_label("ensemble (primary)").uncheck()  # the marker alone is white
    x0, y0, x1, y1 = 40 * SCALE, 16 * SCALE, 48 * SCALE, 24 * SCALE
    assert white_box(page) == (round(x0), round(y0), round(x1), round(y1))

    page.get_by_role("button", name="Zoom in").click()  # x1.25 about the canvas's centre
    centre = CANVAS / 2
    zoomed = [centre + (v - centre) * 1.25 for v in (x0, y0, x1, y1)]
    assert all(abs(got - want) <= 1 for got, want in zip(white_box(page), zoomed, strict=True))

    # Keys on the focused canvas: + zooms again, an arrow moves the slice 20 canvas pixels.
    page.locator("#viewer-canvas").focus()
    page.keyboard.press("+")
    page.keyboard.press("ArrowRight")
    again = [centre + (v - centre) * 1.25 for v in zoomed]
    again[0] += 20
    again[2] += 20
    assert all(abs(got - want) <= 1 for got, want in zip(white_box(page), again, strict=True))
    screenshot("viewer-3-zoom-and-pan")

    page.keyboard.press("r")  # reset
    assert white_box(page) == (round(x0), round(y0), round(x1), round(y1))

    # The wheel zooms about the pointer: the image point under it stays put.
    page.mouse.move(*to_screen(page, x0, y0))
    page.mouse.wheel(0, -100)
    page.wait_for_function("() => TS.viewer.view.zoom > 1")
    zoomed = [x0 + (v - x0) * 1.25 for v in (x0, x1)] + [y0 + (v - y0) * 1.25 for v in (y0, y1)]
    box = white_box(page)
    assert all(
        abs(got - want) <= 1.5
        for got, want in zip(box, [zoomed[0], zoomed[2], zoomed[1], zoomed[3]], strict=True)
    )
    assert page.js_errors == []


def test_the_length_tool_measures_in_mm_with_row_and_column_spacing(
    page, live_server, dicom_case, doctor, screenshot
):
    open_case(page, live_server, dicom_case, doctor)
    expect(page.locator("#viewer-spacing")).to_contain_text("Lengths in mm")
    # By keyboard: the cross starts at the centre; Enter sets each end, Shift+arrow moves it 10 pixels.
    page.locator("#viewer-canvas").focus()
    page.keyboard.press("l")
    expect(page.get_by_role("button", name="Length", exact=True)).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Enter")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Enter")
    # 10 columns of 0.75 mm.
    expect(page.locator("#viewer-measurements li").nth(0)).to_have_text("Length 1: 7.5 mm")

    # By mouse: 30 columns across and 40 rows down: hypot(30 x 0.75, 40 x 0.5) = 30.1 mm (50 pixels).
    page.mouse.click(*to_screen(page, 10 * SCALE, 20 * SCALE))
    page.mouse.click(*to_screen(page, 40 * SCALE, 60 * SCALE))
    text = page.locator("#viewer-measurements li").nth(1).inner_text()
    found = re.fullmatch(r"Length 2: ([\d.]+) mm", text)
    assert found, text
    assert float(found.group(1)) == pytest.approx(np.hypot(30 * 0.75, 40 * 0.5), abs=0.15)
    # The line's ends are drawn on the canvas, in the ruler's yellow.
    assert pixel(page, 10 * SCALE, 20 * SCALE) == (255, 212, 0)
    screenshot("viewer-4-length")
    assert page.js_errors == []


def test_without_a_pixel_spacing_lengths_are_in_pixels_and_say_so(page, live_server, media_dir, doctor):
    case = make_case(user=doctor, patient="VIEWER-PNG", seed=1)  # a PNG: no spacing
    sign_in(page, live_server, doctor.username)
    page.goto(f"{live_server.url}/cases/{case.pk}/")
    expect(page.locator("#wl-width")).not_to_have_value("")
    expect(page.locator("#viewer-spacing")).to_have_text(
        "Pixel spacing unknown: lengths are in pixels, not mm."
    )
    page.locator("#viewer-canvas").focus()
    page.keyboard.press("l")
    page.keyboard.press("Enter")
    for _ in range(3):
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.locator("#viewer-measurements li")).to_have_text(
        "Length 1: 3.0 px (pixel spacing unknown: in pixels, not mm)"
    )
    assert page.js_errors == []


def test_the_heat_map_colours_where_the_probability_is_high(
    page, live_server, dicom_case, doctor, screenshot
):
    open_case(page, live_server, dicom_case, doctor)
    page.get_by_label("ensemble (primary)").uncheck()
    plain_marker, plain_region = pixel(page, *at_image(44, 20)), pixel(page, *at_image(10, 10))
    assert plain_marker == grey(255)
    page.get_by_label("Show as a heat-map").check()
    page.wait_for_function("() => !document.getElementById('heat-note').textContent")
    alpha = round(0.5 * 255) / 255  # the opacity slider's 50%

    def blend(colour, under):
        return tuple(round(alpha * c + (1 - alpha) * u) for c, u in zip(colour, under, strict=True))

    def close(got, want):
        return all(abs(g - w) <= 1 for g, w in zip(got, want, strict=True))

    assert close(pixel(page, *at_image(44, 20)), blend(heat_colour(1.0), plain_marker))  # p = 1: red
    assert close(pixel(page, *at_image(10, 10)), blend(heat_colour(128 / 255), plain_region))
    assert pixel(page, *at_image(30, 40)) == grey(window_level(BACKGROUND, *WINDOW))  # p = 0: untouched
    screenshot("viewer-5-heat-map")

    # Printed, the slice stays as shown and the tools go.
    page.emulate_media(media="print")
    expect(page.locator("#viewer-canvas")).to_be_visible()
    expect(page.locator(".viewer-toolbar")).to_be_hidden()
    expect(page.locator("#viewer-help")).to_be_hidden()
    page.emulate_media(media="screen")

    page.get_by_label(re.compile("^Heat-map opacity")).fill("100")
    assert pixel(page, *at_image(44, 20)) == (255, 0, 0)
    page.get_by_label("Show as a heat-map").uncheck()
    assert pixel(page, *at_image(44, 20)) == plain_marker
    assert page.js_errors == []


def test_a_stack_of_slices_scrolls_by_key_wheel_and_slider(page, live_server, dicom_case, doctor):
    """A study's slices come as the page's ``viewer-slices`` JSON (clinic.views.pictures.viewer_slice per
    case); here it is put into the page on its way to the browser, with a second slice of other values."""
    values = np.full((SIZE, SIZE), 3500.0)
    second = case_create(
        image_file=dicom_bytes(
            ((values - INTERCEPT) / SLOPE).astype(np.uint16), rescale=(SLOPE, INTERCEPT), window=WINDOW
        ),
        filename="slice2.dcm",
        user=doctor,
        patient_identifier="VIEWER-1",
    )
    slices = [viewer_slice(dicom_case), viewer_slice(second)]

    def with_slices(route):
        response = route.fetch()
        body = response.text().replace(
            "</section>",
            f'<script id="viewer-slices" type="application/json">{json.dumps(slices)}</script></section>',
            1,
        )
        route.fulfill(response=response, body=body)

    page.route(f"**/cases/{dicom_case.pk}/", with_slices)
    open_case(page, live_server, dicom_case, doctor)
    expect(page.locator("#viewer-slice-label")).to_have_text(f"Slice 1 of 2 (Case {dicom_case.pk})")
    assert pixel(page, *at_image(30, 40)) == grey(window_level(BACKGROUND, *WINDOW))

    page.locator("#viewer-canvas").focus()
    page.keyboard.press("PageDown")
    expect(page.locator("#viewer-slice-label")).to_have_text(f"Slice 2 of 2 (Case {second.pk})")
    page.wait_for_function("() => TS.viewer.current().data !== null")
    # The window carries over: 3500 is above the DICOM window's top, so white.
    assert pixel(page, *at_image(30, 40)) == grey(255)
    expect(page.locator("#viewer-slice")).to_have_value("2")

    page.mouse.move(*to_screen(page, 280, 280))
    page.mouse.wheel(0, -100)  # up: the previous slice
    expect(page.locator("#viewer-slice-label")).to_have_text(f"Slice 1 of 2 (Case {dicom_case.pk})")
    page.locator("#viewer-slice").fill("2")
    expect(page.locator("#viewer-slice-label")).to_have_text(f"Slice 2 of 2 (Case {second.pk})")
    assert page.js_errors == []
