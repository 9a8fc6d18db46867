"""What every page shares: page set-up, the active data source (remembered), and cached calls into ``core``.

Pages stay short scripts: they pick options, call these cached functions, and lay out the answers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]

import streamlit as st

from core.access import AccessError, check_source
from core.atomic import atomic_write_text
from core.checkpoint import CheckpointError
from core.data import PreparedData, prepare
from core.eval_cache import EvalCache, cached_evaluate, checkpoint_file, evaluation_key
from core.evaluate import EvalResult
from core.inference import Colorizer, ModelEntry, available_models, load_colorizer
from core.progress import ProgressFn
from core.sources import DataSourceError, default_cache_dir
from dashboard.progress import ProgressBar, SharedCache

T = TypeVar("T")
SOURCE_ENV = "COLORIZE_DATA"
DEFAULT_SOURCE = "sample"
USER_ERRORS = (DataSourceError, CheckpointError, FileNotFoundError, ValueError, OSError)


# The browser tab's icon as an emoji: Streamlit draws it as an inline SVG. A ":material/...:" page icon would be
# fetched from fonts.gstatic.com, and the dashboard makes no request off this machine.
TAB_ICONS = {":material/palette:": "🎨", ":material/bar_chart:": "📊", ":material/model_training:": "🏋️",
             ":material/compare:": "🔍", ":material/brush:": "🖌️", ":material/leaderboard:": "🏆",
             ":material/visibility_off:": "🙈"}


def page(title: str, icon: str) -> None:
    """Common page set-up: wide layout, title, and the tab icon for the page's Material icon (an emoji); the
    start-up note of ``boot`` is removed (the imports it speaks of are done)."""
    import boot

    boot.done()
    st.set_page_config(page_title=f"{title} · Colorize Lab", page_icon=TAB_ICONS.get(icon, "🎨"), layout="wide")


# --- the active data source -------------------------------------------------------------------------
def _settings_file() -> Path:
    return default_cache_dir() / "dashboard-settings.json"


def _read_settings() -> dict:
    try:
        return json.loads(_settings_file().read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def remembered_source() -> str:
    """The source to start with: the last one that loaded here (while still under the allowed roots), else env
    COLORIZE_DATA, else the bundled sample."""
    saved = _read_settings().get("source")
    if isinstance(saved, str) and saved:
        try:
            return check_source(saved)
        except (AccessError, DataSourceError):
            pass
    return os.environ.get(SOURCE_ENV) or DEFAULT_SOURCE


def active_source() -> str:
    if "source" not in st.session_state:
        st.session_state["source"] = remembered_source()
    return st.session_state["source"]


def set_source(source: str) -> None:
    """Make ``source`` active for this session and remember it for the next start (call once it has loaded, so a
    source that fails or hangs is never the one the dashboard starts with)."""
    st.session_state["source"] = source
    settings = _read_settings() | {"source": source}
    atomic_write_text(_settings_file(), json.dumps(settings))


def source_picker(key: str = "source_picker") -> str:
    """Sidebar control for the data source: bundled sample, CIFAR-10, or a folder/archive path under the allowed
    roots (``core.access``); the choice is remembered once it has loaded."""
    current = active_source()
    options = ["sample", "cifar10", "path"]
    index = options.index(current) if current in ("sample", "cifar10") else 2
    with st.sidebar:
        kind = st.radio("Data source", options, index=index, key=f"{key}_kind",
                        format_func={"sample": "Bundled sample (2,000 images)", "cifar10": "CIFAR-10 (official files)",
                                     "path": "Folder or archive path"}.get, help=f"Default from ${SOURCE_ENV}")
        chosen = kind
        if kind == "path":
            chosen = st.text_input("Path", value=current if current not in ("sample", "cifar10") else "",
                                   key=f"{key}_path", placeholder="/data/cifar10-jpeg.tar.gz").strip()
        if chosen and chosen != current:
            try:
                check_source(chosen)
            except (AccessError, DataSourceError) as e:
                st.error(f"Not used: {e}", icon=":material/block:")
            else:
                st.session_state["source"] = current = chosen
    return current


# --- error handling ---------------------------------------------------------------------------------
def guarded(fn: Callable[..., T], *args: Any, what: str = "", **kwargs: Any) -> T | None:
    """Call ``fn``; on a user-facing error show one clear message instead of a traceback and return None."""
    try:
        return fn(*args, **kwargs)
    except USER_ERRORS as e:
        st.error(f"{what + ': ' if what else ''}{e}", icon=":material/warning:")
        return None


# --- cached calls into core ---------------------------------------------------------------------------
@st.cache_resource(show_spinner=False)
def shared_cache(name: str, max_entries: int) -> SharedCache:
    """One in-memory cache per ``name``, shared by every session (cleared with ``st.cache_resource.clear()``)."""
    return SharedCache(max_entries)


def load_prepared(source: str, split: str = "hue", val_fraction: float = 0.1, seed: int = 0,
                  hue_method: str = "circular", progress: ProgressFn | None = None) -> PreparedData:
    """The prepared data set (decoded images, statistics, split), shared by all sessions; while it is prepared,
    a progress bar shows the stages and counts (or ``progress`` gets them). Once the session's active source has
    loaded, it is remembered for the next start (never before: a source that fails or hangs is not kept)."""
    key = (source, split, float(val_fraction), int(seed), hue_method)
    cache = shared_cache("prepared", 8)
    prepared = cache.get(key)
    if prepared is None and progress is not None:
        prepared = cache.get_or_compute(key, lambda: prepare(source, split, val_fraction, seed,
                                                             hue_method=hue_method, progress=progress))
    elif prepared is None:
        with ProgressBar("Loading data") as bar:
            prepared = cache.get_or_compute(key, lambda: prepare(source, split, val_fraction, seed,
                                                                 hue_method=hue_method, progress=bar))
    if source == st.session_state.get("source") and _read_settings().get("source") != source:
        try:
            set_source(source)
        except OSError:  # a read-only cache folder costs the memory of the choice, not the page
            pass
    return prepared


@st.cache_data(show_spinner=False, ttl=5)
def list_models() -> list[ModelEntry]:
    """Shipped checkpoints and completed runs (re-read every few seconds, so new runs appear)."""
    return available_models()


def _file_state(spec: str) -> tuple:
    """What tells a checkpoint's bytes changed, cheaply: size and modification time of the file it loads."""
    if spec.startswith("baseline:"):
        return ()
    try:
        st_ = checkpoint_file(spec).stat()
    except OSError:
        return ("missing",)
    return (st_.st_size, st_.st_mtime_ns)


@st.cache_resource(show_spinner="Loading model…", max_entries=32)
def _colorizer(path: str, name: str, state: tuple) -> Colorizer:
    """One loaded colorizer per checkpoint state (``state``: the size and modification time of its file)."""
    return load_colorizer(path, name=name)


def get_colorizer(path: str, name: str) -> Colorizer:
    """The colorizer of a checkpoint or run, loaded again when the file it loads changed (a run's new best.pt)."""
    return _colorizer(path, name, _file_state(path))


# What Home, Compare and the Leaderboard evaluate when they open with their defaults (part, images, SSIM): the
# pages read these, and the server's warm-up (dashboard/app.py) loads the same evaluations from disk beforehand.
PAGE_EVALUATIONS = {
    "home": {"part": "test", "limit": 500, "ssim": False},
    "compare": {"part": "test", "limit": 1000, "ssim": True},
    "leaderboard": {"part": "test", "limit": 2000, "ssim": True},
}
BASELINE_SPECS = [("baseline:gray", "gray"), ("baseline:mean_ab", "mean_ab")]


def evaluate_cached(spec: str, name: str, source: str, part: str, limit: int | None, split: str = "hue",
                    val_fraction: float = 0.1, seed: int = 0, ssim: bool = True, keep_predictions: bool = True,
                    progress: ProgressFn | None = None, only_stored: bool = False) -> EvalResult | None:
    """Evaluate a model (a checkpoint/run path, or ``baseline:NAME``) on a part of a source: from memory, else
    from the disk cache (:mod:`core.eval_cache`, so a restarted dashboard finds it), else computed with
    ``progress`` reports (stage ``evaluating NAME``, images done and in all). ``only_stored``: None instead of
    computing what neither memory nor disk holds."""
    from core.baselines import make_baseline

    key = (spec, _file_state(spec), name, source, part, limit, split, float(val_fraction), int(seed), ssim,
           keep_predictions)
    if only_stored and shared_cache("evaluations", 64).get(key) is None:
        found = EvalCache().load(evaluation_key(spec, source, part, limit, split, val_fraction, seed, ssim=ssim),
                                 need_predictions=keep_predictions)
        if found is None:
            return None
        found.model = name
        return shared_cache("evaluations", 64).get_or_compute(key, lambda: found)

    def get_model(spec: str, name: str, prepared: PreparedData):
        if spec.startswith("baseline:"):
            return make_baseline(spec.split(":", 1)[1], prepared)
        return get_colorizer(spec, name)

    def compute() -> EvalResult:
        return cached_evaluate(spec, name, source, part, limit,
                               lambda p: load_prepared(source, split, val_fraction, seed, progress=p),
                               get_model, split=split, val_fraction=val_fraction, seed=seed, ssim=ssim,
                               keep_predictions=keep_predictions, progress=progress)

    return shared_cache("evaluations", 64).get_or_compute(key, compute)


def warm_evaluations(source: str) -> int:
    """Load into memory the evaluations the pages show first (:data:`PAGE_EVALUATIONS`, every model and both
    baselines) that the disk cache holds, computing none; returns how many were loaded."""
    specs = BASELINE_SPECS + [(m.path, m.name) for m in available_models()]
    loaded = 0
    for args in PAGE_EVALUATIONS.values():
        for spec, name in specs:
            try:
                loaded += evaluate_cached(spec, name, source, args["part"], args["limit"], ssim=args["ssim"],
                                          only_stored=True) is not None
            except Exception:  # noqa: BLE001 - a page evaluates it again and shows the error itself
                continue
    return loaded


def model_label(entry: ModelEntry) -> str:
    where = "shipped" if entry.kind == "shipped" else "run"
    return f"{entry.name} ({entry.method}, {where})"


def no_models_message() -> None:
    """The empty state when no model exists yet: how to get one."""
    st.info(
        "No trained models yet. Shipped models live in `checkpoints/` (see README); or train one on the "
        "**Train** page, or from a terminal: `python -m core.train --model unet --source sample --epochs 5 "
        "--out runs/my-unet`.", icon=":material/info:")
