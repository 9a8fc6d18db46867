"""End to end in a real browser (Debian's Chromium, headless): every page renders without an exception, and a tiny
training job started from the Train page completes and can be picked on the Compare page; a histogram bar picked by
a click and a range by Box Select on Data & splits; every chip of Compare's model picker in sight; the Colorize
page's before/after view; two runs picked on the Runs page are drawn together in its charts; a fresh server's first
page says it is starting while the imports load. Every request the browser makes is recorded: none may go to
another host than the dashboard's own server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e_util import (
    CHROMIUM,
    PAGES,
    ROOT,
    Dashboard,
    foreign_requests,
    launch_chromium,
    open_page,
    record_requests,
    save_screenshot,
    start_dashboard,
    stop_dashboard,
    wait_for_app_run,
)
from tests.run_util import train_tiny

playwright_api = pytest.importorskip("playwright.sync_api")
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium with `make browser`", allow_module_level=True)
expect = playwright_api.expect

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
RUN_NAME = "e2e-unet"
PAGE_TIMEOUT_MS = 150_000  # a cold first load decodes the sample and evaluates the baselines
TRAIN_TIMEOUT_MS = 180_000
FORM = {"Epochs": 1, "Width": 8, "Batch size": 32, "Image limit": 256, "Validation limit": 64}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """The dashboard on a free port, with private runs and cache folders; always stopped afterwards."""
    dash = start_dashboard(tmp_path_factory.mktemp("e2e"))
    try:
        yield dash
    finally:
        stop_dashboard(dash)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        b = launch_chromium(p)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser, server: Dashboard) -> Iterator[object]:
    """A fresh browser tab (its own Streamlit session); fails the test if the tab asked any other host than the
    dashboard's for anything (fonts, icons, scripts, data)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    requests = record_requests(context)
    tab = context.new_page()
    try:
        yield tab
        assert requests, "no request recorded"
        foreign = foreign_requests(requests, server)
        assert not foreign, f"requests that left the machine: {foreign[:10]}"
    finally:
        context.close()


def no_exception(page, server: Dashboard, where: str) -> None:
    exceptions = page.get_by_test_id("stException")
    if exceptions.count():
        pytest.fail(f"{where} shows an exception:\n{exceptions.first.inner_text()}\n--- server log ---\n"
                    f"{server.log_tail()}")


def screenshot(page, name: str) -> None:
    save_screenshot(page, SCREENSHOTS / f"{name}.png")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", list(PAGES), ids=[p or "Home" for p in PAGES])
def test_page_renders(page, server: Dashboard, path: str) -> None:
    """Each page loads at its own URL with its title and no exception."""
    open_page(page, f"{server.url}/{path}", PAGE_TIMEOUT_MS)
    screenshot(page, path or "Home")
    no_exception(page, server, f"/{path}")
    assert page.url.rstrip("/") == f"{server.url}/{path}".rstrip("/"), "the page was not found at its URL"
    expect(page.locator("h1").filter(has_text=PAGES[path]).first).to_be_visible(timeout=30_000)


def run_row_cell(page, run: str, column: int):
    """A cell of ``run``'s row in the runs table (columns counted from 1: run, state, progress, ...)."""
    row = page.get_by_test_id("stDataFrame").locator("tr[role='row']").filter(
        has=page.locator("td[aria-colindex='1']", has_text=re.compile(f"^{re.escape(run)}$")))
    return row.locator(f"td[aria-colindex='{column}']")


@pytest.mark.timeout(420)
def test_train_then_compare(page, server: Dashboard) -> None:
    """Start a tiny U-Net from the Train form, see it complete, then select it on Compare and see its column."""
    open_page(page, f"{server.url}/Train", PAGE_TIMEOUT_MS)
    no_exception(page, server, "/Train")
    expect(page.get_by_role("button", name="Start training")).to_be_visible(timeout=30_000)
    for label, value in FORM.items():
        box = page.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Tab")
    page.get_by_label("Run name", exact=True).fill(RUN_NAME)
    page.get_by_role("button", name="Start training").click()

    expect(run_row_cell(page, RUN_NAME, 1)).to_be_attached(timeout=60_000)  # canvas fallback: never "visible"
    state = run_row_cell(page, RUN_NAME, 2)
    expect(state).to_have_text(re.compile("^(completed|failed|cancelled)$"), timeout=TRAIN_TIMEOUT_MS)
    log = server.runs_dir / RUN_NAME / "log.txt"
    assert state.inner_text() == "completed", log.read_text() if log.is_file() else "(no log)"
    expect(run_row_cell(page, RUN_NAME, 5)).to_have_text("unet", timeout=30_000)
    state_metric = page.get_by_test_id("stMetric").filter(has=page.get_by_text("state", exact=True))
    expect(state_metric.get_by_test_id("stMetricValue")).to_have_text("completed", timeout=30_000)
    no_exception(page, server, "/Train after the run")
    screenshot(page, "Train-completed")

    # Compare: the run is among the models; (re)select it and its column of the image grid appears.
    open_page(page, f"{server.url}/Compare", PAGE_TIMEOUT_MS)
    no_exception(page, server, "/Compare")
    models = page.get_by_test_id("stMultiSelect").filter(has=page.get_by_text("Models", exact=True))
    named = re.compile(re.escape(RUN_NAME))
    column = page.get_by_test_id("stTable").locator("thead th").filter(  # the run's column of the grid's table
        has_text=re.compile(f"^\\s*(run:)?{re.escape(RUN_NAME)}\\s*$"))
    remove = models.get_by_role("button", name=re.compile(f"^Remove .*{re.escape(RUN_NAME)}"))
    if remove.count():  # selected by default (it is the newest model): take it out first
        remove.click()
        expect(column).to_have_count(0, timeout=PAGE_TIMEOUT_MS)
    models.get_by_role("combobox", name="Models").click()
    page.get_by_role("option", name=named).click()
    page.keyboard.press("Escape")
    expect(remove).to_be_visible(timeout=30_000)
    expect(column).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    wait_for_app_run(page, PAGE_TIMEOUT_MS)
    no_exception(page, server, "/Compare with the run")
    screenshot(page, "Compare-run")


OVERLAY_RUNS = ("e2e-overlay-a", "e2e-overlay-b")
PLOTLY_TRACE_NAMES = """() => Array.from(document.querySelectorAll("[data-testid='stPlotlyChart'] .js-plotly-plot"))
    .map(div => (div.data || []).map(trace => trace.name))"""


@pytest.mark.timeout(300)
def test_runs_page_overlays_two_runs(page, server: Dashboard) -> None:
    """With two tiny completed runs in the runs folder, pick both on the Runs page: its charts draw both runs."""

    for seed, name in enumerate(OVERLAY_RUNS):
        train_tiny(server.runs_dir / name, log_every=1, seed=seed)
    open_page(page, f"{server.url}/Runs", PAGE_TIMEOUT_MS)
    no_exception(page, server, "/Runs")
    for name in OVERLAY_RUNS:
        expect(page.get_by_test_id("stDataFrame").locator("td[aria-colindex='1']", has_text=re.compile(
            f"^{re.escape(name)}$"))).to_be_attached(timeout=30_000)
    overlay = page.get_by_test_id("stMultiSelect").filter(has=page.get_by_text("Runs to overlay", exact=True))
    for name in OVERLAY_RUNS:
        overlay.get_by_role("combobox", name="Runs to overlay").click()
        page.get_by_role("option", name=name, exact=True).click()
        page.keyboard.press("Escape")
        expect(overlay.get_by_role("button", name=re.compile(f"^Remove .*{re.escape(name)}"))).to_be_visible(
            timeout=30_000)
        wait_for_app_run(page, PAGE_TIMEOUT_MS)
    page.wait_for_function(f"() => ({PLOTLY_TRACE_NAMES})().length === 2", timeout=60_000)
    charts = page.evaluate(PLOTLY_TRACE_NAMES)
    assert len(charts) == 2, charts  # losses and validation
    for names in charts:
        assert set(names) == set(OVERLAY_RUNS), charts
    no_exception(page, server, "/Runs with two runs overlaid")
    screenshot(page, "Runs-overlay")


def bar_filter_text(page) -> str:
    """The line above the train part's gallery: '**train** (hue split): N images with hue in [lo, hi]...'."""
    return next(t for t in page.get_by_test_id("stMarkdown").all_inner_texts() if t.startswith("train ("))


@pytest.mark.timeout(300)
def test_data_page_histogram_click_and_box_select(page, server: Dashboard) -> None:
    """A click on a bar of the hue split's histogram shows that bin's images; Box Select shows a dragged range."""
    open_page(page, f"{server.url}/Data_and_splits", PAGE_TIMEOUT_MS)
    assert "[0.000, 1.000]" in bar_filter_text(page)
    chart = page.get_by_test_id("stPlotlyChart").nth(1)  # the hue split
    bar = chart.locator("g.point path").nth(20).bounding_box()
    page.mouse.click(bar["x"] + bar["width"] / 2, bar["y"] + bar["height"] - 3)
    expect(page.get_by_test_id("stMarkdown").filter(has_text=re.compile(r"^train \(hue split\)"))).not_to_contain_text(
        "[0.000, 1.000]", timeout=30_000)
    wait_for_app_run(page, PAGE_TIMEOUT_MS)
    lo, hi = map(float, re.search(r"\[([0-9.]+), ([0-9.]+)\]", bar_filter_text(page)).groups())
    assert hi - lo == pytest.approx(1 / 36, abs=2e-3)  # one bin of 36
    no_exception(page, server, "/Data_and_splits after a click")

    chart.hover()
    chart.locator(".modebar-btn[data-val='select']").click()  # the toolbar's Box Select
    area = chart.locator(".nsewdrag").first.bounding_box()
    x0, y0 = area["x"] + area["width"] * 0.1, area["y"] + area["height"] * 0.2
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + area["width"] * 0.25, y0 + area["height"] * 0.6, steps=8)
    page.mouse.up()
    expect(page.get_by_test_id("stMarkdown").filter(has_text=re.compile(r"^train \(hue split\)"))).not_to_contain_text(
        f"[{lo:.3f}, {hi:.3f}]", timeout=30_000)
    wait_for_app_run(page, PAGE_TIMEOUT_MS)
    lo2, hi2 = map(float, re.search(r"\[([0-9.]+), ([0-9.]+)\]", bar_filter_text(page)).groups())
    assert 0.1 < hi2 - lo2 < 0.5
    no_exception(page, server, "/Data_and_splits after a box selection")
    screenshot(page, "Data_and_splits-selected")


@pytest.mark.timeout(420)
def test_compare_picker_shows_every_chip(page, server: Dashboard) -> None:
    """With every model and baseline chosen, each chip of the picker lies inside the picker (none scrolled away)."""
    open_page(page, f"{server.url}/Compare", PAGE_TIMEOUT_MS)
    models = page.get_by_test_id("stMultiSelect").filter(has=page.get_by_text("Models", exact=True))
    models.get_by_role("combobox", name="Models").click()
    page.get_by_role("option", name="Select all").click()
    page.keyboard.press("Escape")
    wait_for_app_run(page, PAGE_TIMEOUT_MS)
    no_exception(page, server, "/Compare with every model")
    chips = models.get_by_role("button", name=re.compile("^Remove "))
    assert chips.count() >= 5  # the shipped models and both baselines at least
    box = models.bounding_box()
    for i in range(chips.count()):
        chip = chips.nth(i).bounding_box()
        assert chip is not None and box["x"] <= chip["x"] and chip["x"] + chip["width"] <= box["x"] + box["width"], \
            f"chip {i} lies outside the picker"
    screenshot(page, "Compare-all-models")


@pytest.mark.timeout(300)
def test_colorize_before_after_view(page, server: Dashboard) -> None:
    """The bundled photographs colorized at each model's own size; the wipe moves when dragged."""
    open_page(page, f"{server.url}/Colorize", PAGE_TIMEOUT_MS)
    page.get_by_test_id("stRadio").get_by_text("Try bundled photographs and samples", exact=True).click()
    wait_for_app_run(page, PAGE_TIMEOUT_MS)
    no_exception(page, server, "/Colorize with samples")
    expect(page.get_by_text(re.compile(r"dcgan · 48 px")).first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    frame = page.frame_locator("iframe[title^='Before and after']")
    wipe = frame.locator("#wipe")
    expect(wipe).to_be_visible(timeout=30_000)
    wipe.scroll_into_view_if_needed()
    area = wipe.bounding_box()
    wipe.click(position={"x": area["width"] * 0.2, "y": area["height"] / 2})
    expect(frame.locator("#position")).to_have_value(re.compile(r"^(19|20|21)(\.\d+)?$"), timeout=10_000)
    screenshot(page, "Colorize-samples")


@pytest.mark.timeout(300)
def test_first_page_of_a_fresh_server_says_it_is_starting(browser, tmp_path: Path) -> None:
    """``streamlit run dashboard/Home.py`` (no warm-up): the first page waits for torch and the project's imports
    under a note that says so, and the note is gone once the page is there."""
    dash = start_dashboard(tmp_path, script="dashboard/Home.py")
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        tab = context.new_page()
        tab.goto(dash.url, wait_until="domcontentloaded")
        note = tab.get_by_text("Starting the dashboard: loading torch")
        expect(note).to_be_visible(timeout=60_000)
        wait_for_app_run(tab, PAGE_TIMEOUT_MS)
        expect(tab.locator("h1").filter(has_text="Colorize Lab").first).to_be_visible(timeout=30_000)
        expect(note).to_have_count(0)
        no_exception(tab, dash, "/ of a fresh server")
    finally:
        context.close()
        stop_dashboard(dash)


def test_server_log_clean(server: Dashboard) -> None:
    """The server logged no traceback while the pages were used."""
    text = Path(server.log).read_text(errors="replace")
    assert "Traceback" not in text, server.log_tail(80)
