"""Speed of the Streamlit app: first render of each page, re-render after a widget change.

    .venv/bin/python benchmarks/bench_app.py [--repeats 3] [--screenshots docs]

Two views of the same app:

1. Script runs (streamlit's AppTest: the work the server does per interaction, without network
   or browser drawing). Each page starts in a fresh Python process: "cold" is its first render
   there (imports of lakelab, torch, matplotlib included), "first" a first render with empty
   caches in a warm process, "re-render" the median over ``--repeats`` of a widget change
   whose results are cached. The experiment page also times the default run (the quick
   preset with SFT, IFT, DPO, ORPO), whose results the re-render then shows.
2. A real browser (Debian's chromium, if installed): a fresh `streamlit run`, the time from
   opening each page to its content, and from a widget change to the new value on screen.
   ``--screenshots DIR`` saves each page there (the pictures in docs/app.md: ``docs``); the
   LM page shows ``results/lm-default`` and is opened only if that run exists (``lakelab lm
   --out results/lm-default``).

The machine is shared and noisy: read the numbers as orders of magnitude.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LM_RUN = "results/lm-default"  # what the LM page shows first (app_pages/lm.py)
PAGES = {
    "lake": "app_pages/lake.py",
    "experiment": "app_pages/experiment.py",
    "explorer": "app_pages/explorer.py",
}


def timed(run) -> float:
    start = time.perf_counter()
    at = run()
    elapsed = time.perf_counter() - start
    if at.exception:
        raise RuntimeError(f"the app raised: {at.exception[0].message}")
    return elapsed


# per page: a widget change, and the two values it goes back and forth between (the first
# computes, then both are cached)
CHANGES = {
    "lake": (lambda at, v: at.selectbox(key="lake_preset").select(v), ("two-paths", "4x4")),
    "explorer": (lambda at, v: at.radio(key="obj_flow").set_value(v), ("logp", "prob")),
    "experiment": (lambda at, v: at.number_input(key="exp_seeds").set_value(v), (2, 3)),
}


def child(page: str, repeats: int) -> dict[str, float]:
    """Timings of one page, in this (fresh) process."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    def fresh() -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        return at.switch_page(PAGES[page])

    at = fresh()
    out = {"cold": timed(at.run)}
    st.cache_data.clear()
    st.cache_resource.clear()
    at = fresh()
    out["first"] = timed(at.run)
    if page == "experiment":
        start = time.perf_counter()
        at.button(key="run_experiment").click().run()
        out["run"] = time.perf_counter() - start
        if at.exception or at.error or not at.dataframe:
            raise RuntimeError(f"the run failed: {at.exception or at.error}")
    if page == "experiment":  # the replay of the run just shown: its step slider
        slider = at.select_slider(key="exp_replay_step")
        steps = [int(s) for s in slider.options]
        out.update(frame_times(steps))
        out["replay: new step"] = statistics.median(
            timed(lambda s=s: at.select_slider(key="exp_replay_step").set_value(s).run())
            for s in steps[1:]
        )
        out["replay: step seen before"] = statistics.median(
            timed(lambda s=s: at.select_slider(key="exp_replay_step").set_value(s).run())
            for s in steps * repeats
        )
    change, (new, old) = CHANGES[page]
    out["compute"] = timed(lambda: change(at, new).run())
    out["rerender"] = statistics.median(
        timed(lambda v=v: change(at, v).run()) for v in [old, new] * repeats
    )
    return out


def frame_times(steps: list[int]) -> dict[str, float]:
    """Drawing one replay frame to PNG bytes (the app's form: method names only), median over
    the run's logged steps, and the same with every panel title."""
    sys.path.insert(0, str(ROOT))
    from app_pages.common import png
    from lakelab.mlp.replay_plot import load_run

    (out,) = Path(os.environ["LAKELAB_APP_RUNS"]).iterdir()  # the run the page just made
    run = load_run(out, seed=0)
    times = {}
    for labels in (False, True):
        spent = []
        for step in steps:
            start = time.perf_counter()
            png(run.figure(step, labels=labels), dpi=80)
            spent.append(time.perf_counter() - start)
        times[f"frame, labels={labels}"] = statistics.median(spent)
    return times


SHOWN = """([selector, count]) => {
    const found = [...document.querySelectorAll(selector)];
    return found.length === count && found.every(e => e.complete !== false);
}"""
CHANGED_SRC = """(before) => {
    const img = document.querySelectorAll('[data-testid=stImage] img')[1];
    return img !== undefined && img.src !== before && img.complete;
}"""
FIRST_METRIC = """(text) => {
    const value = document.querySelector('[data-testid=stMetricValue]');
    return value !== null && value.innerText === text;
}"""


def browser(runs: str, shots: Path | None, repeats: int) -> dict[str, float]:
    """Times seen in chromium against a fresh server (its own process, stopped by PID).
    Conditions are polled on every animation frame, so the resolution is ~16 ms."""
    sys.path.insert(0, str(ROOT))
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, free_port, screenshot, wait_healthy

    def until(page, script: str, arg) -> None:
        page.wait_for_function(script, arg=arg, polling="raf", timeout=120_000)

    def open_page(page, path: str, images: int) -> float:
        start = time.perf_counter()
        page.goto(f"{url}{path}")
        until(page, SHOWN, ["[data-testid=stImage] img", images])
        return time.perf_counter() - start

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py")]
    command += [f"--server.port={port}", "--server.address=127.0.0.1", "--server.headless=true"]
    command += ["--browser.gatherUsageStats=false", "--server.fileWatcherType=none"]
    env = {**os.environ, "LAKELAB_APP_RUNS": runs}
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    out = {}
    try:
        wait_healthy(url, proc)
        with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
            context = p.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1400, "height": 1000},
            )
            context.set_default_timeout(120_000)
            page = context.pages[0] if context.pages else context.new_page()

            out["lake: open"] = open_page(page, "", 2)
            select = page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox")
            times = []
            changes = [("two-paths", f"{0.95**7:.4f}")]
            changes += [("4x4", f"{0.95**5:.4f}"), ("two-paths", f"{0.95**7:.4f}")] * repeats
            for name, text in changes:
                select.click()
                option = page.get_by_role("option", name=name)
                option.wait_for()
                start = time.perf_counter()
                option.click()
                until(page, FIRST_METRIC, text)
                times.append(time.perf_counter() - start)
            out["lake: widget change, computing"] = times[0]
            out["lake: widget change, cached (median)"] = statistics.median(times[1:])
            if shots:
                screenshot(page, shots / "app-lake.png")

            out["explorer: open"] = open_page(page, "/explorer", 2)
            if shots:
                screenshot(page, shots / "app-explorer.png")
            out["experiment: open, results on disk"] = open_page(page, "/experiment", 2)
            if shots:
                screenshot(page, shots / "app-experiment.png")
            # the replay's step slider, by keyboard: until the new frame is on screen
            thumb = page.get_by_test_id("stSlider").get_by_role("slider")
            frame = page.get_by_test_id("stImage").nth(1).locator("img")
            times = {"right": [], "left": []}
            for key in ["ArrowRight", "ArrowLeft"] * repeats:
                # from an idle page, as a user who looks at each frame (the script has drawn
                # the neighbouring frames after the last one appeared)
                page.get_by_test_id("stStatusWidget").wait_for(state="hidden")
                time.sleep(0.5)
                before = frame.get_attribute("src")
                thumb.focus()
                start = time.perf_counter()
                thumb.press(key)
                until(page, CHANGED_SRC, before)
                times["right" if key == "ArrowRight" else "left"].append(
                    time.perf_counter() - start
                )
            out["experiment: replay slider, next step (median)"] = statistics.median(times["right"])
            out["experiment: replay slider, back (median)"] = statistics.median(times["left"])
            if (ROOT / LM_RUN / "summary.csv").exists():  # the LM page's default run
                out[f"lm: open, {LM_RUN} on disk"] = open_page(page, "/lm", 2)
                if shots:
                    screenshot(page, shots / "app-lm.png")
            context.close()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--screenshots", type=Path, default=None)
    parser.add_argument("--child", choices=sorted(PAGES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.repeats)))
        return

    with tempfile.TemporaryDirectory() as runs:
        env = {**os.environ, "LAKELAB_APP_RUNS": runs}
        rows = {}
        for page in ("lake", "explorer", "experiment"):
            command = [sys.executable, __file__, "--child", page, "--repeats", str(args.repeats)]
            done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"{page}: {done.stderr[-2000:]}")
            rows[page] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"Script runs (AppTest), seconds; re-render: median of {2 * args.repeats}")
        print(
            "\n| page | cold (new process) | first render | widget change, computing | "
            "widget change, cached |"
        )
        print("|---|---|---|---|---|")
        for page, t in rows.items():
            print(
                f"| {page} | {t['cold']:.2f} | {t['first']:.2f} | {t['compute']:.2f} | "
                f"{t['rerender']:.3f} |"
            )
        print(
            f"\nThe default experiment run (quick preset, 4 objectives x 3 seeds x 60 steps): "
            f"{rows['experiment']['run']:.1f} s"
        )
        replay = rows["experiment"]
        print(
            f"Its replay (4 methods), step slider: to a step not drawn yet "
            f"{replay['replay: new step']:.3f} s (median over the steps), to a step seen "
            f"before {replay['replay: step seen before']:.3f} s (median of {2 * args.repeats}); "
            f"one replay frame drawn to PNG: {replay['frame, labels=False']:.3f} s as the app "
            f"draws it, {replay['frame, labels=True']:.3f} s with every panel title"
        )

        if Path("/usr/bin/chromium").exists():
            if args.screenshots:
                args.screenshots.mkdir(parents=True, exist_ok=True)
            seen = browser(runs, args.screenshots, args.repeats)
            print("\nIn chromium (fresh server), seconds until the content is on screen")
            print("\n| step | seconds |\n|---|---|")
            for step, seconds in seen.items():
                print(f"| {step} | {seconds:.2f} |")
        else:
            print("\n(no /usr/bin/chromium: browser timings skipped)")


if __name__ == "__main__":
    main()
