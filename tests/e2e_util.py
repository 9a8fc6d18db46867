"""Helpers for driving the dashboard in a real browser: start the server, launch Chromium, wait for script runs.

The readiness checks follow Streamlit's own end-to-end tests: the server's health endpoint answers ``ok``, then
the app root (``[data-testid="stApp"]``) reports a connected websocket and a script state of ``notRunning``,
with no element skeleton left and no running indicator (``[data-testid="stStatusWidget"]``) shown.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# URL path of every page (the file name without its number prefix) and the text of its title.
PAGES = {
    "": "Colorize Lab",
    "Data_and_splits": "Data & splits",
    "Train": "Train",
    "Compare": "Compare models",
    "Colorize": "Colorize pictures",
    "Leaderboard": "Leaderboard",
    "Blind_test": "Blind test",
    "Runs": "Runs",
}
APP_READY = "[data-testid='stApp'][data-test-connection-state='CONNECTED'][data-test-script-state='notRunning']"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_healthy(port: int) -> bool:
    """Whether Streamlit's health endpoint on ``port`` answers ``ok``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.read().decode().strip() == "ok"
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Dashboard:
    """A running dashboard server."""

    proc: subprocess.Popen
    port: int
    log: Path
    runs_dir: Path
    cache_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def server_ready(port: int) -> str:
    """What ``dashboard/app.py``'s warm-up reports (``ready`` once the pages' imports are loaded); "" if no answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_colorize/ready", timeout=2) as r:
            return r.read().decode().strip()
    except (urllib.error.URLError, OSError):
        return ""


def wait_until_ready(dash: Dashboard, timeout_s: float = 120.0) -> float:
    """Wait until the server's warm-up has finished; returns the seconds waited."""
    t0 = time.monotonic()
    while server_ready(dash.port) != "ready":
        if dash.proc.poll() is not None or time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"the dashboard did not warm up ({server_ready(dash.port)!r}):\n{dash.log_tail()}")
        time.sleep(0.2)
    return time.monotonic() - t0


def start_dashboard(work: Path, script: str | Path = "dashboard/app.py", timeout_s: float = 90.0,
                    extra_env: Mapping[str, str] | None = None, port: int | None = None) -> Dashboard:
    """Start ``streamlit run script`` on ``port`` (default: a free one) with runs and cache under ``work``; wait
    until it is healthy."""
    runs_dir, cache_dir = work / "runs", work / "cache"
    runs_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    env = os.environ | {"COLORIZE_RUNS_DIR": str(runs_dir), "COLORIZE_CACHE_DIR": str(cache_dir),
                        "COLORIZE_DATA": "sample", "PYTHONPATH": str(ROOT), "TQDM_DISABLE": "1",
                        "PYTHONUNBUFFERED": "1"} | dict(extra_env or {})
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
           "--server.headless", "true", "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    log = work / f"streamlit-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    dash = Dashboard(proc, port, log, runs_dir, cache_dir)
    deadline = time.monotonic() + timeout_s
    while not server_healthy(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_dashboard(dash)
            raise RuntimeError(f"the dashboard did not start (exit {proc.poll()}):\n{dash.log_tail()}")
        time.sleep(0.2)
    return dash


def stop_dashboard(dash: Dashboard, timeout_s: float = 10.0) -> None:
    """Stop the server (its process group), then any training job it started that is still running."""
    if dash.proc.poll() is None:
        try:
            os.killpg(dash.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            dash.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(dash.proc.pid, signal.SIGKILL)
            dash.proc.wait(timeout_s)
    stop_jobs(dash.runs_dir)


def stop_jobs(runs_dir: Path) -> None:
    """SIGTERM every job still marked active in ``runs_dir`` (jobs run in their own sessions)."""
    from core.runs import ACTIVE, RunDir, pid_alive

    for path in runs_dir.iterdir() if runs_dir.is_dir() else []:
        status = RunDir(path).status()
        pid = status.get("pid")
        if status.get("state") in ACTIVE and isinstance(pid, int) and pid_alive(pid):
            os.kill(pid, signal.SIGTERM)


@contextmanager
def dashboard(work: Path, **kwargs) -> Iterator[Dashboard]:
    """A dashboard server for the ``with`` block; always stopped afterwards."""
    dash = start_dashboard(work, **kwargs)
    try:
        yield dash
    finally:
        stop_dashboard(dash)


def record_requests(target) -> list[str]:
    """Every address a page or browser context asks for from now on (frames and iframes included), in order."""
    seen: list[str] = []
    target.on("request", lambda request: seen.append(request.url))
    return seen


def foreign_requests(urls: list[str], dash: Dashboard) -> list[str]:
    """The requests that left the dashboard's own server: any network address (http, https, ws, wss) on another
    host or port. Inline data (``data:``, ``blob:``, ``about:``) never leaves the browser."""
    own = f"127.0.0.1:{dash.port}"
    out = []
    for url in urls:
        scheme, _, rest = url.partition("://")
        if scheme in ("http", "https", "ws", "wss") and rest.split("/", 1)[0] != own:
            out.append(url)
    return out


def launch_chromium(playwright):
    """Headless Debian Chromium (never a downloaded browser)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


def wait_for_app_run(page, timeout_ms: float = 60_000) -> None:
    """Wait until the app is connected, its script is not running, and nothing is left to render."""
    page.locator(APP_READY).wait_for(state="attached", timeout=timeout_ms)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="detached", timeout=timeout_ms)
    page.wait_for_function("() => document.querySelectorAll(\"[data-testid='stSkeleton']\").length === 0",
                           timeout=timeout_ms)
    page.locator(APP_READY).wait_for(state="attached", timeout=timeout_ms)


def save_screenshot(page, path: Path, max_height: int = 12_000) -> None:
    """A screenshot of the whole page: the viewport is stretched to the main block's height while it is taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    viewport = page.viewport_size or {"width": 1400, "height": 1000}
    height = page.evaluate("""() => {
        const main = document.querySelector("[data-testid='stMainBlockContainer']");
        return main ? Math.ceil(main.getBoundingClientRect().bottom + 80) : 0;
    }""")
    if height > viewport["height"]:
        page.set_viewport_size({"width": viewport["width"], "height": min(int(height), max_height)})
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(viewport)


def open_page(page, url: str, timeout_ms: float = 90_000) -> float:
    """Navigate to ``url`` and wait for the script run to finish; returns the seconds it took."""
    t0 = time.perf_counter()
    page.goto(url, wait_until="domcontentloaded", timeout=timeout_ms)
    wait_for_app_run(page, timeout_ms)
    return time.perf_counter() - t0
