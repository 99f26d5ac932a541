"""The web app as people and programs meet it: a live server on 127.0.0.1 (``python -m spatial_restore.app``)
driven by ``gradio_client`` and by Debian's headless Chromium through Selenium."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FLOWER = REPO / "datasets" / "samples" / "red_flower_256.png"
MAX_PIXELS = 100_000  # the server's --max-pixels: the 256x256 photo fits, a 400x300 image does not
START_TIMEOUT = 180  # seconds for the server to answer (imports and model on 2 busy cores)
RESULT_TIMEOUT = 300  # seconds for one restore seen from a client
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")  # Debian's packages


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app's own entry point on a free port (default host: 127.0.0.1); stopped after the module."""
    port = free_port()
    log = (tmp_path_factory.mktemp("server") / "server.log").open("w+")
    process = subprocess.Popen([sys.executable, "-m", "spatial_restore.app", "--port", str(port), "--device", "cpu",
                                "--max-pixels", str(MAX_PIXELS)], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log.seek(0)
            pytest.fail(f"the app did not start at {url}:\n{log.read()}")
        time.sleep(0.5)
    yield url
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
    log.close()


@pytest.fixture
def client(server, monkeypatch):
    """gradio_client sends a start-up report to Hugging Face unless told not to: nothing leaves 127.0.0.1."""
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    from gradio_client import Client

    return Client(server, verbose=False, httpx_kwargs={"timeout": RESULT_TIMEOUT})


def test_api_restores_like_the_readme_says(client, tmp_path):
    from gradio_client import handle_file

    crop = tmp_path / "flower.png"
    Image.open(FLOWER).crop((96, 96, 160, 160)).save(crop)
    job = client.submit(image=handle_file(str(crop)), model="default", sigma=25, api_name="/restore")
    restored, summary = job.result(timeout=RESULT_TIMEOUT)
    out = cv2.imread(restored, cv2.IMREAD_UNCHANGED)
    assert Path(restored).name == "flower.png" and out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert summary["psnr"] > summary["psnr_input"] + 5 and summary["sigma"] == 25
    # without sigma (optional) no noise is added and nothing is scored
    restored, summary = client.predict(image=handle_file(str(crop)), model="default", api_name="/restore")
    assert summary["psnr"] is None and cv2.imread(restored).shape == (64, 64, 3)
    # blur (optional): the CLI's --add-blur first, then scored against the sharp upload
    restored, summary = client.predict(image=handle_file(str(crop)), model="deblur", blur="defocus:9",
                                       api_name="/restore")
    assert summary["blur"] == "defocus:9" and summary["psnr"] > summary["psnr_input"] + 3


def test_api_refusals_are_messages(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    broken, large = tmp_path / "broken.png", tmp_path / "large.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    Image.new("RGB", (400, 300)).save(large)
    for path, message in [(broken, "broken.png: not a readable image"),
                          (large, "large.png: 400x300 is 120,000 pixels, over this app's limit of 100,000 pixels"),
                          (REPO / "README.md", "Invalid file type")]:
        with pytest.raises(AppError, match=message):
            client.predict(image=handle_file(str(path)), model="default", api_name="/restore")
    with pytest.raises(AppError, match="255"):  # the API takes sigma up to 255 (the page's slider: 75)
        client.predict(image=handle_file(str(broken)), model="default", sigma=300, api_name="/restore")
    with pytest.raises(AppError, match="the size must be odd"):
        client.predict(image=handle_file(str(broken)), model="default", blur="defocus:8", api_name="/restore")


@pytest.fixture(scope="module")
def browser(server, tmp_path_factory):
    """Debian's Chromium, headless, with a fresh profile and a log of every request the page makes."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM.is_file() and CHROMEDRIVER.is_file(), "needs Debian's chromium and chromium-driver (make test)"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--window-size=1400,900", f"--user-data-dir={tmp_path_factory.mktemp('profile')}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))  # given: no Selenium Manager
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def open_page(driver, server: str, paths: list[Path], sigma: int = 0) -> None:
    """Load the page, upload ``paths``, set the noise, press Restore."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(server)
    wait = WebDriverWait(driver, 60)
    upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#images input[type=file]"))
    upload.send_keys("\n".join(map(str, paths)))
    for path in paths:
        wait.until(lambda d, name=path.name: d.find_elements(By.CSS_SELECTOR, f"#images {listed(name)}"))
    if sigma:
        field = driver.find_element(By.CSS_SELECTOR, "#sigma input[type=number]")
        field.send_keys(Keys.CONTROL, "a")
        field.send_keys(str(sigma), Keys.TAB)
    driver.find_element(By.ID, "restore").click()


def listed(name: str) -> str:
    """The CSS selector of a file as gr.File lists it."""
    return f"td.filename[aria-label='{name}']"


def remote_requests(driver, server: str) -> list[str]:
    """URLs the page asked for (since the last call) from anywhere but the server; data: and the
    browser's own chrome:// pages are not the network."""
    messages = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    urls = {m["params"]["request"]["url"] for m in messages if m["method"] == "Network.requestWillBeSent"}
    assert any(u.startswith(server) for u in urls)
    return sorted(u for u in urls if u.split(":", 1)[0] in ("http", "https", "ws", "wss") and not u.startswith(server))


def test_browser_before_after(server, browser, tmp_path):
    """Upload the bundled photo with noise 25, wait for the before/after, screenshot it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, server, [FLOWER], sigma=25)
    WebDriverWait(browser, RESULT_TIMEOUT).until(lambda d: "PSNR" in d.find_element(By.ID, "report").text)
    images = WebDriverWait(browser, 60).until(lambda d: [
        img for img in d.find_elements(By.CSS_SELECTOR, "#before-after img")
        if d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == 256])
    assert len(images) >= 2  # both sides loaded, at the photo's size
    report = browser.find_element(By.ID, "report").text
    assert "red_flower_256.png: 256x256" in report and "noise σ=25" in report
    assert browser.find_elements(By.CSS_SELECTOR, f"#downloads {listed(FLOWER.name)}")
    shot = tmp_path / "app_screenshot.png"
    assert browser.save_screenshot(str(shot))
    assert Image.open(shot).size[0] >= 1000
    assert not remote_requests(browser, server), "the page loaded something from elsewhere"


def test_browser_several_files_one_refused(server, browser, tmp_path):
    """Three uploads, one of them corrupt: the other two are restored, the third is named with its reason."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo, grey, broken = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "broken.png"
    Image.open(FLOWER).crop((0, 0, 48, 40)).save(photo)
    Image.open(FLOWER).crop((100, 100, 140, 132)).convert("L").save(grey)
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    open_page(browser, server, [photo, broken, grey])
    report = WebDriverWait(browser, RESULT_TIMEOUT).until(
        lambda d: (text := d.find_element(By.ID, "report").text) and "b.png" in text and text)
    assert "a.png: 48x40" in report and "b.png: 40x32" in report
    assert "not restored: broken.png: not a readable image" in report
    toast = "[data-testid=toast-text]"  # the page's warning, which may come a moment after the report
    WebDriverWait(browser, 30).until(lambda d: any(
        "broken.png: not a readable image" in t.text for t in d.find_elements(By.CSS_SELECTOR, toast)))
    assert all(browser.find_elements(By.CSS_SELECTOR, f"#downloads {listed(name)}") for name in ("a.png", "b.png"))
    assert not browser.find_elements(By.CSS_SELECTOR, f"#downloads {listed('broken.png')}")
    assert not remote_requests(browser, server)
