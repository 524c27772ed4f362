"""report.html in a real browser: headless Chromium (selenium) opens it from disk.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); skipped with
the reason where either is missing. Marked ``browser`` and ``slow`` (runs in ``make test-slow``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.evaluation.test_evaluate import K, checkpoint, data_overrides  # noqa: F401
from tests.evaluation.test_report import report_run  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]

_BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _driver():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    browser = next((shutil.which(b) for b in _BROWSERS if shutil.which(b)), None)
    chromedriver = shutil.which("chromedriver")
    if browser is None or chromedriver is None:
        pytest.skip(
            "needs chromium and chromedriver on PATH (apt-get install chromium chromium-driver)"
        )
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1400,1000")
    # An explicit driver path: selenium never tries to download one.
    return webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)


def _column(driver, index: int) -> list[str]:
    rows = driver.find_elements("css selector", "#per-class tbody tr")
    return [row.find_elements("tag name", "td")[index].text for row in rows]


def test_report_in_headless_chromium(report_run: Path, tmp_path: Path) -> None:  # noqa: F811
    driver = _driver()
    try:
        driver.get((report_run / "report.html").resolve().as_uri())
        images = driver.find_elements("tag name", "img")
        assert len(images) >= 3  # the bar chart, the heat map and the worst panels
        for img in images:
            driver.execute_script("arguments[0].scrollIntoView();", img)  # lazy panels load
        driver.execute_script("window.scrollTo(0, 0);")
        for img in images:
            loaded = driver.execute_script(
                "return arguments[0].complete && arguments[0].naturalWidth;", img
            )
            assert loaded and loaded > 0, img.get_attribute("src")
        assert len(driver.find_elements("css selector", "#per-class tbody tr")) == K
        before = _column(driver, 2)  # IoU, in class order
        header = driver.find_elements("css selector", "#per-class th")[2]
        header.click()
        ascending = _column(driver, 2)
        numbers = [float(v) for v in ascending if v != "nan"]
        assert numbers == sorted(numbers) and sorted(ascending) == sorted(before)
        assert header.get_attribute("data-order") == "asc"
        header.click()
        descending = [float(v) for v in _column(driver, 2) if v != "nan"]
        assert descending == sorted(numbers, reverse=True)
        driver.find_elements("css selector", "#per-class th")[1].click()  # class names
        names = _column(driver, 1)
        assert names == sorted(names)
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 1000
        keep = os.environ.get("VANSEG_REPORT_SCREENSHOT")  # docs/eval_report.png is made so
        if keep:
            driver.set_window_size(1400, 2200)
            driver.save_screenshot(keep)
    finally:
        driver.quit()
