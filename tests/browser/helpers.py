"""Steps the browser tests share."""

from __future__ import annotations

from tests.conftest import PASSWORD


def sign_in(page, live_server, username: str, password: str = PASSWORD) -> None:
    page.goto(live_server.url + "/")
    page.wait_for_url("**/accounts/login/**")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(live_server.url + "/")


def unlabelled_inputs(page) -> list[str]:
    """Visible form controls with neither a <label> nor an aria-label (should be none)."""
    return page.evaluate("""() => Array.from(document.querySelectorAll(
        'input:not([type=hidden]), select, textarea')).filter(e =>
        !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.outerHTML)""")


def sign_out(page) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/accounts/login/**")


def paint_stroke(page, start: tuple[float, float], end: tuple[float, float], *, steps: int = 10) -> None:
    """Drag the brush on the correction page's mask layer from ``start`` to ``end`` (fractions of its
    width and height)."""
    box = page.locator("#mask-layer").bounding_box()
    (x0, y0), (x1, y1) = start, end
    page.mouse.move(box["x"] + box["width"] * x0, box["y"] + box["height"] * y0)
    page.mouse.down()
    for i in range(1, steps + 1):
        t = i / steps
        page.mouse.move(
            box["x"] + box["width"] * (x0 + (x1 - x0) * t), box["y"] + box["height"] * (y0 + (y1 - y0) * t)
        )
    page.mouse.up()


def csrf_token(page) -> str:
    """The CSRF token of the page shown (any form's hidden input)."""
    return page.locator("input[name=csrfmiddlewaretoken]").first.get_attribute("value")


def paint_patch(
    page, top_left: tuple[float, float], bottom_right: tuple[float, float], *, rows: int = 8
) -> None:
    """Fill a rectangle of the mask layer (fractions of its size) with brush strokes, one per row."""
    (x0, y0), (x1, y1) = top_left, bottom_right
    for i in range(rows):
        y = y0 + (y1 - y0) * i / max(rows - 1, 1)
        paint_stroke(page, (x0, y), (x1, y), steps=6)
