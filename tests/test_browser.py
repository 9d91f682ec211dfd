"""The app in a real browser: `streamlit run` on localhost, driven by Debian's chromium.

Skips only when /usr/bin/chromium is missing (`apt-get install chromium`; CI installs it).
The server runs on a free port with its results in a temporary directory and is stopped by
its PID at the end. Screenshots go to the test's temporary directory, or to
$LAKELAB_SCREENSHOTS if set.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,  # a server and a browser: tens of seconds
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium; CI installs it)",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"streamlit did not answer {url}/_stcore/health within {timeout} s")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    """A `streamlit run app.py` of our own, on a free port; killed by its PID afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    runs = tmp_path_factory.mktemp("runs")
    log = (tmp_path_factory.mktemp("server") / "streamlit.log").open("wb")
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "app.py"),
        "--server.headless=true",
        f"--server.port={port}",
        "--server.address=127.0.0.1",
        "--server.fileWatcherType=none",
        "--browser.gatherUsageStats=false",
    ]
    env = {**os.environ, "LAKELAB_APP_RUNS": str(runs)}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)  # first renders import torch on a shared 2-core machine
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),  # a fresh user data dir
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            context.set_default_timeout(60_000)
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = os.environ.get("LAKELAB_SCREENSHOTS")
    return Path(out) if out else tmp_path_factory.mktemp("screenshots")


def screenshot(page, path: Path) -> None:
    """Once the script run is over (no "Running..." status), with the whole page in view:
    Streamlit scrolls inside its own container, so a full-page capture would cut it."""
    from playwright.sync_api import expect

    expect(page.get_by_test_id("stStatusWidget")).to_be_hidden()
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": min(max(height, 1000), 3000)})
    page.mouse.move(1390, 5)  # no tooltip in the picture: nothing hovered or focused
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.screenshot(path=path)
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_lake_page_reacts_to_a_preset_change(app_url, page, shots):
    from playwright.sync_api import expect

    page.goto(app_url)
    values = page.get_by_test_id("stMetricValue")
    expect(values.first).to_have_text(f"{0.95**5:.4f}")  # 4x4, deterministic, gamma 0.95
    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").click()
    page.get_by_role("option", name="two-paths").click()
    expect(values.first).to_have_text(f"{0.95**7:.4f}")  # the 8-move route
    expect(page.get_by_text("5x5 lake, deterministic")).to_be_visible()  # the last element
    screenshot(page, shots / "app-lake.png")


def test_experiment_page_runs_and_shows_results(app_url, page, shots):
    from playwright.sync_api import expect

    page.goto(f"{app_url}/experiment")
    sidebar = page.get_by_test_id("stSidebar")
    for label, value in (("Seeds", "1"), ("Steps", "10")):
        box = sidebar.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Enter")
    run = page.get_by_role("button", name="Run: 4 objectives x 1 seed x 10 steps")
    run.click()
    expect(page.get_by_text("Finished:")).to_be_visible(timeout=120_000)
    expect(page.get_by_role("button", name="Download metrics.csv")).to_be_visible()
    expect(page.get_by_test_id("stImage").first).to_be_visible()
    screenshot(page, shots / "app-experiment.png")
    # the replay: moving the step slider with the keyboard redraws the frame for step 10
    frame = page.get_by_test_id("stImage").nth(1).locator("img")
    expect(frame).to_be_visible()
    before = frame.get_attribute("src")
    thumb = page.get_by_test_id("stSlider").get_by_role("slider")
    expect(thumb).to_have_attribute("aria-valuetext", "0")
    thumb.focus()
    thumb.press("ArrowRight")
    expect(thumb).to_have_attribute("aria-valuetext", "10")
    expect(frame).not_to_have_attribute("src", before)
    expect(page.get_by_text("Step 10, seed 0:")).to_be_visible()
    screenshot(page, shots / "app-replay.png")


def test_explorer_page_renders_formulas(app_url, page, shots):
    from playwright.sync_api import expect

    page.goto(f"{app_url}/explorer")
    expect(page.get_by_text("Every objective at the probe point")).to_be_visible()
    expect(page.locator(".katex").first).to_be_visible()  # st.latex, typeset
    expect(page.get_by_test_id("stImage")).to_have_count(2)  # DPO and ASFT fields
    screenshot(page, shots / "app-explorer.png")
