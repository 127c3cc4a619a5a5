"""Make docs/screenshot.png: the case page of a drawn slice, in a throwaway embedded instance.

    python -m docs.screenshot            # needs /usr/bin/chromium and playwright (pip install playwright)

No file of the dataset is read and no image made from it is shown: the slice is drawn here (an ellipse for
the head, a brighter blob for the tumour). The instance (SQLite, media) lives in a temporary folder with an
empty record and the shipped models, serves on a free local port, and is deleted afterwards. It takes a
minute or two on 2 CPU cores, most of it the three segmenters and the ensemble running on the slice.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
USER, PASSWORD = "demo", "tumorsite-demo"


def drawn_slice(size: int = 256, seed: int = 7) -> Image.Image:
    """A grayscale slice that looks like an axial MRI at a glance: a skull ring, a textured brain, a bright
    round lesion. Drawn from numbers, so nothing of a patient is in it."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size
    head = ((x - 0.5) / 0.36) ** 2 + ((y - 0.5) / 0.44) ** 2
    image = np.where(head < 1.0, 0.35 + 0.08 * np.sin(18 * x) * np.cos(14 * y), 0.0)
    image = np.where((head > 0.86) & (head < 1.0), 0.85, image)  # the skull
    lesion = ((x - 0.62) / 0.09) ** 2 + ((y - 0.38) / 0.08) ** 2
    image = np.where(lesion < 1.0, 0.9 - 0.3 * lesion, image)
    image = np.clip(image + rng.normal(0, 0.03, image.shape), 0, 1) * (head < 1.05)
    return Image.fromarray((image * 255).astype(np.uint8), mode="L")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manage(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def shoot(url: str, slice_png: Path, out: Path, timeout_s: int) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url + "/")
        page.get_by_label("Username").fill(USER)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.goto(url + "/upload/")
        page.wait_for_load_state("load")
        page.set_input_files("#files", [str(slice_png)])
        row = page.locator("li", has_text=slice_png.name).first
        expect(row).to_contain_text("Uploaded as case", timeout=60_000)
        case_url = url + row.get_by_role("link").first.get_attribute("href")
        state_url = case_url.rstrip("/") + "/state.json"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = page.request.get(state_url).json()
            if state["segmentations"] and all(
                s["status"] in ("done", "failed") for s in state["segmentations"]
            ):
                break
            time.sleep(3)
        else:
            raise SystemExit(f"the segmentations did not finish in {timeout_s} s")
        page.goto(case_url)
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out), full_page=False)
        browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m docs.screenshot",
        description="Screenshot the case page of a drawn (not real) slice in a throwaway embedded instance.",
    )
    parser.add_argument(
        "--output", type=Path, default=ROOT / "docs" / "screenshot.png", help="the PNG to write"
    )
    parser.add_argument("--timeout", type=int, default=600, help="seconds to wait for the segmentations")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tumorsite-screenshot-") as var:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
        env |= {"TUMORSITE_VAR_DIR": var, "DEMO_USERNAME": USER, "DEMO_PASSWORD": PASSWORD}
        manage(env, "migrate", "--noinput", "-v0")
        manage(env, "demo_setup", "--data", "")
        slice_png = Path(var) / "drawn-slice.png"
        drawn_slice().save(slice_png)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"], cwd=ROOT, env=env
        )
        try:
            time.sleep(5)
            shoot(f"http://127.0.0.1:{port}", slice_png, args.output, args.timeout)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
