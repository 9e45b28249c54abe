"""The playground as a person sees it: JupyterLab headless, Debian's Chromium driven by Playwright.

The test writes a one-cell notebook into a scratch folder, starts JupyterLab there on a free port,
runs all cells through JupyterLab's own command, types a prompt into the playground, clicks Generate,
waits for the pictures (the shipped `cpu` model), checks that they came token row by row, and keeps a
screenshot in runs/playground-browser/ (ignored by git). It skips, saying why, only where Playwright
or Chromium cannot be had (`.ci/run` installs Chromium with apt-get when it is missing).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTEFACTS = ROOT / "runs" / "playground-browser"
PROMPT = "a large green circle above a small yellow triangle"
N = 4
LAB_START_S = 90  # JupyterLab's first start builds nothing, but a busy 2-core machine is slow
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # JupyterLab and Chromium then need to be told
GENERATE_S = 120  # the shipped cpu model draws 4 pictures in seconds; the margin is for a loaded machine


def chromium_path() -> str | None:
    """Debian's Chromium (`apt-get install chromium`), or DALLE_LESSONS_CHROMIUM."""
    for candidate in (os.environ.get("DALLE_LESSONS_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install -e .[dev]")
CHROMIUM = chromium_path()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium at /usr/bin/chromium (nor on PATH, nor "
                                "DALLE_LESSONS_CHROMIUM): `apt-get install -y chromium`, as .ci/run does")

NOTEBOOK_CELLS = [
    nbformat.v4.new_markdown_cell("# The playground\n\nType a prompt, press **Generate**."),
    nbformat.v4.new_code_cell("from dalle_lessons.playground import playground\n\n"
                              "app = playground(device='cpu')  # the shipped cpu model, loaded on the first click\n"
                              "app"),
]
#: JupyterLab settings for a quiet screen: no news or update toasts over the playground.
QUIET_SETTINGS = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                  {"fetchNews": "false", "checkForUpdates": False}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_lab(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + LAB_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer {url}/api/status within {LAB_START_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(url, folder): JupyterLab serving a scratch folder that holds playground.ipynb; stopped afterwards."""
    folder = tmp_path_factory.mktemp("lab")
    root = folder / "root"
    root.mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=NOTEBOOK_CELLS, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}),
        root / "playground.ipynb")
    settings = folder / "settings"
    for name, values in QUIET_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(folder / "config"), "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(folder / "workspaces"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    port = free_port()
    command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--IdentityProvider.token=",
               "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={root}"]
    if AS_ROOT:
        command.append("--allow-root")
    log = folder / "lab.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_lab(url, process, log)
        yield url, folder
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, ARTEFACTS / "lab.log")  # the server's own account, kept for a failure's reader


def test_a_person_types_a_prompt_clicks_generate_and_sees_the_pictures(lab):
    url, folder = lab
    started = time.monotonic()
    args = ["--disable-dev-shm-usage", "--disable-gpu"] + (["--no-sandbox"] if AS_ROOT else [])
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{url}/lab/tree/playground.ipynb", timeout=60_000)
            # the notebook is open and its kernel is up: then run every cell with JupyterLab's own command
            page.wait_for_function("""() => {
                const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
                const kernel = widget && widget.sessionContext && widget.sessionContext.session
                    && widget.sessionContext.session.kernel;
                return kernel && kernel.status === 'idle';
            }""", timeout=60_000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            prompt = page.locator(".dalle-playground-prompt input")
            prompt.wait_for(timeout=60_000)
            prompt.fill(PROMPT)
            # every redraw of the percentage, kept by the page itself: proof the pictures came row by row
            page.evaluate("""() => {
                window.playgroundPercents = [];
                const label = document.querySelector('.dalle-playground-percent');
                new MutationObserver(() => window.playgroundPercents.push(label.textContent))
                    .observe(label, {childList: true, characterData: true, subtree: true});
            }""")
            clicked = time.monotonic()
            page.locator("button.dalle-playground-generate").click()
            page.wait_for_function(f"""() => {{
                const captions = [...document.querySelectorAll('.dalle-playground-caption')];
                return captions.length === {N} && captions.every(c => c.textContent.includes('CLIP score'));
            }}""", timeout=GENERATE_S * 1000)
            generate_s = time.monotonic() - clicked
            ARTEFACTS.mkdir(parents=True, exist_ok=True)
            app = page.locator(".dalle-playground")
            app.scroll_into_view_if_needed()
            app.screenshot(path=str(ARTEFACTS / "playground.png"))
            page.screenshot(path=str(ARTEFACTS / "page.png"))

            percents = page.evaluate("window.playgroundPercents")
            captions = page.locator(".dalle-playground-caption").all_inner_texts()
            message = page.locator(".dalle-playground-message").inner_text()
            images = page.locator("img.dalle-playground-picture")
            sizes = images.evaluate_all("images => images.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
            value = page.locator(".dalle-playground-prompt input").input_value()
        finally:
            browser.close()
    total_s = time.monotonic() - started
    print(f"\nplayground in Chromium: {N} pictures {generate_s:.1f} s after the click, {total_s:.1f} s in the "
          f"browser in all; screenshot: {ARTEFACTS / 'playground.png'}")
    (ARTEFACTS / "timings.json").write_text(json.dumps({"generate_s": round(generate_s, 1),
                                                        "browser_s": round(total_s, 1)}) + "\n")

    assert value == PROMPT
    assert "⚠" not in message and f"{N} pictures in" in message, message
    assert sizes == [[True, 128, 128]] * N
    assert all("background" in c and "judge:" in c and "CLIP score" in c for c in captions), captions
    assert percents[-1] == "100 %"
    assert any(p not in ("0 %", "100 %") for p in percents), percents  # partial pictures were shown
    assert not errors, errors
