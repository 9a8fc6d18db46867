"""Page speed of the dashboard in a real browser (Debian's Chromium, headless), against a one-line Streamlit app.

``python benchmarks/bench_dashboard.py [--repeats N] [--jobs N] [--no-model] [--strict] [--json OUT]``

The dashboard runs as in ``tests/test_e2e_browser.py``: its own server on a free port, runs and cache in a temporary
folder, the bundled sample as data; unless ``--no-model``, one tiny U-Net run is trained there first so Compare has
a model to evaluate. Measured (time to ready = navigation until the script has finished and nothing is left to
render):

1. baseline: a one-line Streamlit app (``st.write``) on a second server of the same Streamlit, same browser;
2. Home, Compare and Leaderboard: the first (cold) load, then the median of ``--repeats`` loads with warm caches;
3. Train: its time to ready (warm), and a started job: from the click on "Start training" until the new run's row
   is in the runs table (median of ``--jobs`` jobs; each is stopped as soon as it is seen);
4. after a restart: the server (``dashboard/app.py``) is stopped and started again on the same cache folder and
   port (the evaluations on disk, nothing in memory), and Home, Compare and Leaderboard are each the first page a
   new session opens, in the same browser context (primed by one untimed visit of each page, so Streamlit's own
   files come from its cache, as a visitor's do): once
   opened as soon as the server answers, once after its warm-up reports ready (``/_colorize/ready``); median of
   ``--restarts`` restarts per page and way (``--restarts 0`` skips this).

Targets: Home, Compare and Leaderboard ready in under 2 s warm and under 3 s after a restart; a started job
visible within 2 s. ``--strict`` exits 1 when a target is missed. Figures depend on what else the machine runs;
the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from tests.e2e_util import (  # noqa: E402
    CHROMIUM,
    Dashboard,
    free_port,
    launch_chromium,
    open_page,
    start_dashboard,
    stop_dashboard,
    stop_jobs,
    wait_until_ready,
)

TARGET_S = 2.0
RESTART_TARGET_S = 3.0
RESTART_PAGES = {"Home": "", "Compare": "Compare", "Leaderboard": "Leaderboard"}
TIMEOUT_MS = 180_000
JOB_FORM = {"Epochs": 1, "Width": 8, "Batch size": 32, "Image limit": 256, "Validation limit": 64}


def make_model(work: Path) -> None:
    """A tiny completed U-Net run in ``work/runs`` (so Compare evaluates a real model)."""
    os.environ["COLORIZE_CACHE_DIR"] = str(work / "cache")
    from core.config import TrainConfig
    from core.train import train

    train(TrainConfig(model="unet", source="sample", epochs=1, limit=128, val_limit=32, width=8, batch_size=32,
                      threads=1), work / "runs" / "bench-unet", progress=False)


def time_to_ready(page, url: str, repeats: int) -> tuple[float, list[float]]:
    """The first load, then ``repeats`` loads (warm) of ``url``."""
    first = open_page(page, url, TIMEOUT_MS)
    return first, [open_page(page, url, TIMEOUT_MS) for _ in range(repeats)]


def job_visible(page, dash: Dashboard, name: str) -> float:
    """Seconds from the click on "Start training" until the run's row is in the runs table."""
    open_page(page, f"{dash.url}/Train", TIMEOUT_MS)
    expander = page.get_by_test_id("stExpander").filter(has_text="Start a new run")
    if not page.get_by_role("button", name="Start training").is_visible():
        expander.locator("summary").click()
    for label, value in JOB_FORM.items():
        box = page.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Tab")
    page.get_by_label("Run name", exact=True).fill(name)
    cell = page.get_by_test_id("stDataFrame").locator("td[aria-colindex='1']").filter(has_text=name)
    button = page.get_by_role("button", name="Start training")
    t0 = time.perf_counter()
    button.click()
    cell.first.wait_for(state="attached", timeout=TIMEOUT_MS)
    seconds = time.perf_counter() - t0
    stop_jobs(dash.runs_dir)
    return seconds


def prime(context, work: Path, port: int) -> None:
    """One visit of each page on ``port`` (not timed): the browser has Streamlit's files cached, as a visitor's has."""
    dash = start_dashboard(work, port=port)
    try:
        page = context.new_page()
        for path in RESTART_PAGES.values():
            open_page(page, f"{dash.url}/{path}", TIMEOUT_MS)
        page.close()
    finally:
        stop_dashboard(dash)


def after_restart(context, work: Path, path: str, restarts: int, port: int, ready: bool,
                  warm_ups: list[float] | None = None) -> list[float]:
    """Seconds to ready of ``path`` as the first page a new session opens on a just restarted server (same port and
    browser context, so Streamlit's files come from the browser's cache): opened as soon as the server answers,
    or with ``ready`` once its warm-up reports ready (the seconds from answering to ready go to ``warm_ups``)."""
    out = []
    for _ in range(restarts):
        dash = start_dashboard(work, port=port)
        try:
            if ready:
                waited = wait_until_ready(dash)
                if warm_ups is not None:
                    warm_ups.append(waited)
            page = context.new_page()
            out.append(open_page(page, f"{dash.url}/{path}", TIMEOUT_MS))
            page.close()
        finally:
            stop_dashboard(dash)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="warm loads per page (median reported)")
    ap.add_argument("--jobs", type=int, default=3, help="jobs started to time their appearance (median reported)")
    ap.add_argument("--restarts", type=int, default=3, help="server restarts per page timed after a restart")
    ap.add_argument("--no-model", action="store_true", help="do not train the tiny model first")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    if not CHROMIUM.is_file():
        print(f"{CHROMIUM} is missing: install Debian's chromium with `make browser`", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        if not args.no_model:
            make_model(work)
        model_s = time.perf_counter() - t
        trivial = work / "trivial_app.py"
        trivial.write_text('import streamlit as st\n\nst.write("ready")\n')
        dash = start_dashboard(work)
        base = None
        try:
            base = start_dashboard(work / "baseline", script=trivial)
            with sync_playwright() as p:
                browser = launch_chromium(p)
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                page.set_default_timeout(60_000)
                _, baseline = time_to_ready(page, base.url, args.repeats)
                home_cold, home = time_to_ready(page, f"{dash.url}/", args.repeats)
                compare_cold, compare = time_to_ready(page, f"{dash.url}/Compare", args.repeats)
                board_cold, board = time_to_ready(page, f"{dash.url}/Leaderboard", args.repeats)
                _, train = time_to_ready(page, f"{dash.url}/Train", args.repeats)
                jobs = [job_visible(page, dash, f"bench-job-{i}") for i in range(args.jobs)]
                stop_dashboard(dash)
                port, context = free_port(), browser.new_context(viewport={"width": 1400, "height": 1000})
                at_once, once_ready, warm_ups = {}, {}, []
                if args.restarts:
                    prime(context, work, port)
                    at_once = {name: after_restart(context, work, path, args.restarts, port, ready=False)
                               for name, path in RESTART_PAGES.items()}
                    once_ready = {name: after_restart(context, work, path, args.restarts, port, ready=True,
                                                        warm_ups=warm_ups)
                                  for name, path in RESTART_PAGES.items()}
                browser.close()
        finally:
            stop_dashboard(dash)
            if base is not None:
                stop_dashboard(base)
    load_after = os.getloadavg()

    med = statistics.median
    rows = [  # name, seconds, samples, target
        ("one-line app ready (baseline)", med(baseline), baseline, None),
        ("Home ready, cold (first load)", home_cold, [home_cold], None),
        ("Home ready, warm", med(home), home, TARGET_S),
        ("Compare ready, cold (first load)", compare_cold, [compare_cold], None),
        ("Compare ready, warm", med(compare), compare, TARGET_S),
        ("Leaderboard ready, cold (first load)", board_cold, [board_cold], None),
        ("Leaderboard ready, warm", med(board), board, TARGET_S),
        ("Train ready, warm", med(train), train, None),
        ("started job visible in runs table", med(jobs), jobs, TARGET_S),
    ]
    rows += [(f"{name} after a restart, at once", med(samples), samples, RESTART_TARGET_S)
             for name, samples in at_once.items() if samples]
    if warm_ups:  # how long a restarted server takes from answering to ready (imports, data, stored evaluations)
        rows.append(("restarted server: answering to warmed up", med(warm_ups), warm_ups, None))
    rows += [(f"{name} after a restart, warmed up", med(samples), samples, RESTART_TARGET_S)
             for name, samples in once_ready.items() if samples]
    missed = [name for name, s, _, target in rows if target is not None and s > target]
    print(f"Dashboard page speed (Chromium headless; {os.cpu_count()} CPUs; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; model {'none' if args.no_model else 'tiny U-Net'}"
          f"{'' if args.no_model else f', trained in {model_s:.0f} s'})")
    print(f"{'measure':<42} {'median s':>9} {'x baseline':>11} {'target':>7}  {'ok':<4} samples (s)")
    for name, s, samples, target in rows:
        ok = "" if target is None else ("yes" if s <= target else "NO")
        tgt = f"< {target:g}" if target is not None else ""
        print(f"{name:<42} {s:>9.2f} {s / med(baseline):>11.1f} {tgt:>7}  {ok:<4} "
              + ", ".join(f"{x:.2f}" for x in samples))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "cpus": os.cpu_count(), "load_average_before": load_before[0], "load_average_after": load_after[0],
            "model": not args.no_model, "target_s": TARGET_S, "restart_target_s": RESTART_TARGET_S, "missed": missed,
            "measures": {name: {"seconds": s, "samples": samples, "target_s": target}
                         for name, s, samples, target in rows},
        }, indent=2))
    if missed:
        print("missed targets: " + "; ".join(missed))
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
