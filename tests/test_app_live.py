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


def test_browser_before_after(server, tmp_path):
    """Upload the bundled photo with noise 25 in a real browser, wait for the before/after, screenshot it;
    every request the page made went to this server."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    assert CHROMIUM.is_file() and CHROMEDRIVER.is_file(), "needs Debian's chromium and chromium-driver (make test)"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--window-size=1400,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        driver.set_page_load_timeout(60)
        driver.get(server)
        wait = WebDriverWait(driver, 60)
        upload = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#images input[type=file]"))
        upload.send_keys(str(FLOWER))
        listed = "td.filename[aria-label='red_flower_256.png']"  # how gr.File lists a file
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"#images {listed}"))
        sigma = driver.find_element(By.CSS_SELECTOR, "#sigma input[type=number]")
        sigma.send_keys(Keys.CONTROL, "a")
        sigma.send_keys("25", Keys.TAB)
        driver.find_element(By.ID, "restore").click()
        WebDriverWait(driver, RESULT_TIMEOUT).until(lambda d: "PSNR" in d.find_element(By.ID, "report").text)
        images = WebDriverWait(driver, 60).until(lambda d: [
            img for img in d.find_elements(By.CSS_SELECTOR, "#before-after img")
            if d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == 256])
        assert len(images) >= 2  # both sides loaded, at the photo's size
        report = driver.find_element(By.ID, "report").text
        assert "red_flower_256.png" in report and "noise σ=25" in report
        assert driver.find_elements(By.CSS_SELECTOR, f"#downloads {listed}")
        shot = tmp_path / "app_screenshot.png"
        assert driver.save_screenshot(str(shot))
        assert Image.open(shot).size[0] >= 1000
        requests = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    finally:
        driver.quit()
    urls = {m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"}
    remote = sorted(u for u in urls if u.split(":", 1)[0] in ("http", "https", "ws", "wss")
                    and not u.startswith(server))
    assert not remote, f"the page loaded from elsewhere: {remote}"
    assert any(u.startswith(server) for u in urls)
