"""dashboard/progress.py: the progress bar of long waits (stage text and counts) and the shared cache."""

from __future__ import annotations

import threading
import time

import torch
from streamlit.testing.v1 import AppTest

from dashboard.progress import SharedCache, stage_text


def test_stage_text() -> None:
    assert stage_text("decoding", 3072, 60000) == "decoding 3,072 / 60,000 images"
    assert stage_text("reading", 2048, 0) == "reading 2,048 files…"
    assert stage_text("evaluating unet", 0, 0) == "evaluating unet…"
    assert stage_text("statistics", 10, 10) == "colour statistics 10 / 10 images"
    assert stage_text("split", 0, 1) == "splitting"


def _page() -> None:
    import streamlit as st

    from dashboard.progress import ProgressBar

    bar = ProgressBar("Evaluating on 500 test images", min_interval_s=0)
    report = bar.part(2, 4, "unet")
    report("evaluating unet", 250, 500)
    if st.session_state.get("close"):
        bar.close()
    st.write("end")


def test_progress_bar_shows_the_step_stage_and_counts() -> None:
    at = AppTest.from_function(_page).run()
    assert not at.exception
    (bar,) = at.get("progress")
    assert bar.proto.text == "Evaluating on 500 test images · 2/4 (unet) · evaluating unet 250 / 500 images"
    assert bar.proto.value == 37  # (1 + 250/500) of 4 steps
    at.session_state["close"] = True
    at.run()
    assert not at.get("progress")  # closed: the wait is over, nothing left on the page


def test_shared_cache_computes_a_key_once_and_forgets_the_oldest() -> None:
    cache = SharedCache(max_entries=2)
    calls: list[str] = []

    def slow(key: str):
        def compute() -> str:
            calls.append(key)
            time.sleep(0.2)
            return key.upper()
        return compute

    threads = [threading.Thread(target=cache.get_or_compute, args=("a", slow("a"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["a"] and cache.get("a") == "A"
    cache.get_or_compute("b", slow("b"))
    cache.get("a")  # used: "b" is now the oldest
    cache.get_or_compute("c", slow("c"))
    assert cache.get("b") is None and cache.get("a") == "A" and len(cache) == 2


def test_a_changed_checkpoint_is_loaded_again(tmp_path) -> None:
    import os
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dashboard"))
    import common

    from tests.test_eval_cache import tiny_checkpoint

    path = tiny_checkpoint(tmp_path / "tiny.pt", seed=0)
    first = common.get_colorizer(str(path), "tiny")
    assert common.get_colorizer(str(path), "tiny") is first
    tiny_checkpoint(path, seed=1)  # new weights in the same file (a run's best.pt after a resumed run improved)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    second = common.get_colorizer(str(path), "tiny")
    assert second is not first
    a, b = (next(iter(c.net.state_dict().values())) for c in (first, second))
    assert not torch.equal(a, b)


def test_the_server_warm_up_reports_ready() -> None:
    import asyncio
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dashboard"))
    import app

    assert asyncio.run(app.ready(None)).body == app.STATE["warm-up"].encode()
    app.warm_up()
    assert app.STATE["warm-up"] == "ready"
    assert asyncio.run(app.ready(None)).body == b"ready"
    assert app.app is not None  # the st.App that `streamlit run dashboard/app.py` serves
