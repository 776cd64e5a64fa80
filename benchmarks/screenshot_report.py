"""Screenshot a report.html in headless Chromium (for the README).

    python benchmarks/screenshot_report.py reports/recipes/image_folder/report.html reports/screenshots/image_folder.png
"""
from __future__ import annotations

import os
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def main(html: str, png: str) -> int:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1150,1500",
                     f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            driver.get("file://" + os.path.abspath(html))
            os.makedirs(os.path.dirname(os.path.abspath(png)), exist_ok=True)
            driver.save_screenshot(png)
        finally:
            driver.quit()
    print(png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], sys.argv[2]))
