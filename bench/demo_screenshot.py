"""Screenshot of the demo page with a restored built-in example (docs/figures/demo.png), taken in Debian's
headless Chromium through Selenium — the same browser set-up as tests/test_demo_browser.py.

    python bench/demo_screenshot.py -m model.safetensors --example "chelsea · rain" --out docs/figures/demo.png

Starts the demo server on a free port of 127.0.0.1, picks the example, sets ω to its pure type (or ``--auto``),
restores and saves the page. Needs chromium + chromium-driver (apt) and pip install -e ".[dev]".
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT = 60


def chromium_options(download_dir: str, profile_dir: str, width: int = 1400, height: int = 1000) -> Any:
    """Flags for a headless, offline Chromium run as root; downloads go to ``download_dir``."""
    from selenium import webdriver

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile_dir}", f"--window-size={width},{height}",
                 # every name but the demo's address fails to resolve: the page must not need the internet
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": download_dir,
                                           "download.prompt_for_download": False})
    return opts


def start_chromium(root: str, width: int = 1400, height: int = 1000) -> Any:
    """A headless Chromium (the system's, through its chromedriver) with a fresh profile under ``root``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = os.path.join(root, "downloads")
    os.makedirs(downloads, exist_ok=True)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER),
                              options=chromium_options(downloads, os.path.join(root, "profile"), width, height))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads})
    return driver


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pick_example(driver: Any, label: str) -> None:
    """Choose the built-in example ``label`` in the page's drop-down."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.CSS_SELECTOR, "#demo-example input").click()
    option = WebDriverWait(driver, WAIT).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f"#demo-example li[aria-label='{label}']"))[0]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", option)
    option.click()


def main(argv: Any = None) -> int:
    """Start the demo, restore one built-in example in the browser, save the screenshot."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-m", "--model", required=True, help="exported model (.safetensors)")
    p.add_argument("--example", default="chelsea · rain", help="built-in example label (photo · set)")
    p.add_argument("--auto", action="store_true", help="ω from the bundled classifier instead of the pure type")
    p.add_argument("--out", default=os.path.join("docs", "figures", "demo.png"))
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from pip_adapter.demo import DemoSession
    from pip_adapter.demo.app import launch
    from pip_adapter.restore import Restorer

    session = DemoSession(Restorer.from_checkpoint(args.model, device=args.device))
    root = tempfile.mkdtemp(prefix="pip-adapter-shot-")
    port = free_port()
    app = launch(session, port=port, block=False)
    driver = start_chromium(root, 1400, 1040)
    try:
        wait = WebDriverWait(driver, WAIT)
        driver.get(f"http://127.0.0.1:{port}/")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#demo-example input"))
        pick_example(driver, args.example)
        stem = args.example.split(" · ")[0]
        wait.until(lambda d: stem in d.find_element(By.ID, "demo-info").text)
        if args.auto:
            driver.find_element(By.ID, "demo-auto").click()
            wait.until(lambda d: d.find_element(By.ID, "demo-probs").text.strip())
        else:
            kind = session.example(args.example).degradation
            driver.find_element(By.CSS_SELECTOR, f"#demo-pure input[value='{kind}']").click()
        driver.find_element(By.ID, "demo-restore").click()
        wait.until(lambda d: "PSNR" in d.find_element(By.ID, "demo-result").text)
        # the whole page in one picture: grow the window to the page's height
        height = driver.execute_script("return document.documentElement.scrollHeight;")
        driver.set_window_size(1400, int(height) + 140)
        driver.execute_script("window.scrollTo(0, 0);")
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        driver.save_screenshot(args.out)
        print(f"wrote {args.out}: {driver.find_element(By.ID, 'demo-result').text}")
    finally:
        driver.quit()
        app.close()
        session.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
