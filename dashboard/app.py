"""The dashboard as a server that gets ready before its first visitor: ``streamlit run dashboard/app.py``.

``dashboard/Home.py`` is the main page either way (``streamlit run dashboard/Home.py`` works too); started from here,
the server imports what the pages need (torch, the core modules, pandas, pyarrow, plotly, scipy.stats: several
seconds) in a background thread as soon as it starts, instead of during the first page a visitor opens.
``GET /_colorize/ready`` answers ``ready`` once that is done (``warming up`` before; ``failed: ...`` if an import
failed, in which case the pages import it themselves and show the error).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import streamlit as st
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

HERE = Path(__file__).resolve().parent


STATE = {"warm-up": "warming up"}


def warm_up() -> None:
    """Import the modules every page imports and run once what each first use loads lazily (the emoji pattern of
    the tab icon, a plotly figure, a styled table), then load the remembered data source and the evaluations the
    first pages show (those on disk) into the shared caches, so the first visitor waits for none of it."""
    try:
        import common  # (torch, core.data, core.inference, core.eval_cache, pandas)
        import pandas as pd
        import plotly.express as px
        import pyarrow.parquet  # noqa: F401  (the evaluation cache's tables)
        import scipy.stats  # noqa: F401  (the split's KS statistic)
        from streamlit.string_util import is_emoji

        import core.compare  # noqa: F401
        import core.explore  # noqa: F401
        import dashboard.charts  # noqa: F401
        from core.progress import silent

        is_emoji("🎨")  # the tab icon: Streamlit compiles its emoji pattern on first use (most of a second)
        frame = pd.DataFrame({"model": ["a", "b"], "value": [1.0, 2.0]})
        px.bar(frame, x="model", y="value").to_json()
        frame.style.format(precision=2).to_html()
        source = common.remembered_source()
        common.load_prepared(source, progress=silent)
        common.warm_evaluations(source)  # what Home, Compare and the Leaderboard show first, from the disk cache
    except Exception as e:  # noqa: BLE001 - the pages do all of this again and show any error themselves
        STATE["warm-up"] = f"failed: {type(e).__name__}: {e}"
        return
    STATE["warm-up"] = "ready"


async def ready(_request: Request) -> PlainTextResponse:
    """``ready`` once the warm-up has imported everything."""
    return PlainTextResponse(STATE["warm-up"])


@asynccontextmanager
async def lifespan(_app: st.App) -> AsyncIterator[None]:
    """Start the warm-up when the server starts; it runs beside the server, which answers at once."""
    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    yield


app = st.App(str(HERE / "Home.py"), lifespan=lifespan, routes=[Route("/_colorize/ready", ready)])
