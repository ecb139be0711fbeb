"""``medtl app``: the page's computation, its refusals, and the page itself in a real
headless Chromium (Selenium + Debian's chromium-driver; skipped where they are absent,
failed under ``CI=true``)."""

from __future__ import annotations

import os
import socket
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pytest

from medtl.utils.errors import MedtlError
from tests.screenshot import CHROMEDRIVER, CHROMIUM, require_browser

pytestmark = pytest.mark.skipif(
    find_spec("gradio") is None, reason="needs the [app] extra (gradio)"
)  # gradio is imported by the tests that run, not at collection


def _image(phantoms: Path) -> Path:
    return sorted((phantoms / "benign").glob("benign_000[0-9].png"))[0]


def test_analyser_segmentation(seg_run, phantoms, tmp_path):
    from medtl.apps.gradio_app import Analyser

    shown, probs, cam, mask, message = Analyser(seg_run)(str(_image(phantoms)))
    assert shown.shape == (32, 32, 3) and probs is None
    assert cam.shape == (32, 32, 3) and Path(mask).is_file()
    assert "lesion pixels" in message and "Grad-CAM" in message


def test_analyser_bad_file_gives_message(seg_run, tmp_path):
    from medtl.apps.gradio_app import Analyser

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    shown, probs, cam, mask, message = Analyser(seg_run)(str(bad))
    assert (shown, probs, cam, mask) == (None, None, None, None)
    assert message.startswith("Cannot read broken.png")


def test_refuses_folder_without_model(tmp_path):
    from medtl.apps.gradio_app import build_app

    with pytest.raises(MedtlError, match="model.pt not found"):
        build_app(tmp_path)


def test_missing_extra_is_one_line(seg_run, monkeypatch):
    from medtl.apps.gradio_app import build_app

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    with pytest.raises(MedtlError, match=r"pip install medtl\[app\]"):
        build_app(seg_run)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_app_in_browser(mt_run, phantoms, tmp_path):
    webdriver = require_browser(CHROMIUM, CHROMEDRIVER, module="selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from medtl.apps.gradio_app import serve

    port = _free_port()
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    demo = serve(mt_run, port=port, block=False)
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,1100"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(
        service=webdriver.ChromeService(executable_path=str(CHROMEDRIVER)), options=opts
    )
    try:
        driver.set_page_load_timeout(60)
        driver.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(driver, 60)
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#upload input[type=file]"))
        upload.send_keys(str(_image(phantoms)))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#overlay img"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#cam img"))
        message = wait.until(lambda d: d.find_element(By.ID, "message").text.strip() or None)
        assert "predicted class" in message
        time.sleep(1)  # let the images paint before the screenshot
        driver.save_screenshot(str(tmp_path / "app.png"))  # docs/img/app.png is one of these
        # a file the app cannot decode: a message in the page, the page keeps working
        bad = tmp_path / "broken.png"
        bad.write_bytes(b"not a png")
        try:
            driver.find_element(By.CSS_SELECTOR, "#upload button[aria-label='Clear']").click()
        except Exception:
            pass
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#upload input[type=file]"))
        upload.send_keys(str(bad))
        wait.until(lambda d: "Cannot read" in d.find_element(By.ID, "message").text)
    finally:
        driver.quit()
        demo.close()
    assert (tmp_path / "app.png").stat().st_size > 0
