"""Colorize: your own pictures (or bundled photographs and samples) through every model at full resolution, side by
side or as a gallery, scored against their own colours and the gray baseline when they have colour."""

from __future__ import annotations

import hashlib

import boot  # noqa: F401 - first: its note shows while the imports below load
import numpy as np
import pandas as pd
import streamlit as st
from common import (
    ProgressBar,
    get_colorizer,
    list_models,
    load_prepared,
    model_label,
    no_models_message,
    page,
    shared_cache,
)

from core import compare
from core.colorize_view import GRAY_ROW, photo_pictures, score_table, screen_copy, size_summary
from core.inference import CARD, FALLBACK_NET_SIZE, colorize_picture, default_net_size, gray_picture
from core.progress import silent
from dashboard.wipe import wipe_html

NET_SIZES = [CARD, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
GALLERY_COLUMNS = 4


@st.cache_data(show_spinner=False, max_entries=16)
def read(data: bytes, name: str) -> compare.Picture:
    """The uploaded bytes as a picture at its full resolution (raises PictureError for a damaged file)."""
    return compare.read_picture(data, name, max_side=None)


@st.cache_data(show_spinner=False, max_entries=16)
def gray_of(data: bytes, name: str) -> np.ndarray:
    return gray_picture(read(data, name).rgb)


@st.cache_data(show_spinner=False, max_entries=64)
def on_screen(data: bytes, name: str, which: str, model_path: str = "", net_size: int = 0) -> np.ndarray:
    """The screen-sized copy of the gray input, the original, or a colorization (``which``: gray, original, model)."""
    if which == "gray":
        return screen_copy(gray_of(data, name))
    if which == "original":
        return screen_copy(read(data, name).rgb)
    return screen_copy(colorized(data, name, model_path, net_size))


def _key(data: bytes, name: str, model_path: str, net_size: int) -> tuple:
    return hashlib.sha1(data).hexdigest(), name, model_path, net_size


def is_colorized(data: bytes, name: str, model_path: str, net_size: int) -> bool:
    """Whether this colorization is already kept (no wait to show)."""
    return shared_cache("colorized", 12).get(_key(data, name, model_path, net_size)) is not None


def colorized(data: bytes, name: str, model_path: str, net_size: int) -> np.ndarray:
    """One picture colorized by one model at one network size, full resolution (kept for all sessions)."""
    entry = by_path[model_path]
    return shared_cache("colorized", 12).get_or_compute(
        _key(data, name, model_path, net_size),
        lambda: colorize_picture(get_colorizer(model_path, entry.name), read(data, name).rgb, net_size))


@st.cache_data(show_spinner=False, max_entries=32)
def scores(data: bytes, name: str, sizes: tuple[tuple[str, int], ...]) -> pd.DataFrame:
    """Each model's scores against the picture's own colours, and the gray baseline's, one row each."""
    outputs = {f"{by_path[p].name} · {s} px": colorized(data, name, p, s) for p, s in sizes}
    return score_table(outputs, read(data, name).rgb)


@st.cache_data(show_spinner=False)
def samples() -> list[tuple[str, bytes]]:
    """The photo check's photographs, then a few bundled CIFAR-10 test images of different classes, enlarged."""
    prepared = load_prepared("sample", progress=silent)  # a cached function draws nothing (it would be replayed)
    cifar = compare.sample_pictures(prepared.images("test"), prepared.labels("test"), prepared.dataset.class_names)
    return photo_pictures() + cifar


def size_of(path: str) -> int:
    """The network size this model runs at: the one chosen, or with "best per model" its card's."""
    return default_net_size(get_colorizer(path, by_path[path].name)) if choice == CARD else int(choice)


def size_note(paths: list[str]) -> str:
    """Why each model runs at its default size (the photo check's figures), and what larger sizes change."""
    parts, worse = [], []
    for p in paths:
        entry = by_path[p]
        summary = size_summary(entry.card)
        if summary is None:
            parts.append(f"**{entry.name}** {FALLBACK_NET_SIZE} px (no photo check in its card)")
            continue
        parts.append(f"**{entry.name}** {summary['size']} px ({summary['metric']} {summary['value']:.2f} against "
                     f"gray's {summary['gray']:.2f})")
        largest = max(summary["means"])
        if summary["means"][largest] > summary["gray"]:
            worse.append(f"{entry.name} {summary['means'][largest]:.2f} at {largest} px")
    text = ("each model at the network size that colorized the photo check's photographs best (mean over four "
            "photographs bundled with scikit-image, lower is better): " + "; ".join(parts) + ". Larger sizes show "
            "the network more pixels of each object than the 32 × 32 images it learnt from: its colours then follow "
            "texture and small details instead of whole objects, with patches of blue and green where none belong")
    return text + (f" (worse than gray: {', '.join(worse)})." if worse else ".")


page("Colorize", ":material/brush:")
st.title("Colorize pictures")
entries = list_models()
if not entries:
    no_models_message()
    st.stop()
by_path = {e.path: e for e in entries}

# the picker has the page's whole width: its chips wrap onto more lines instead of scrolling out of sight
chosen = st.multiselect("Models", list(by_path), default=list(by_path)[:3], key="colorize_models",
                        format_func=lambda p: model_label(by_path[p]))
choice = st.select_slider("Network input size (longer side, pixels)", NET_SIZES, value=CARD, key="colorize_size",
                          format_func=lambda s: "best per model" if s == CARD else str(s),
                          help="The network sees the lightness resized to this (rounded to a multiple of 16); its "
                               "colours are enlarged and joined with the picture's full-resolution lightness.")
if chosen:
    st.caption(("**Best per model** (the default): " if choice == CARD else
                f"All models at **{choice} px**; the default, best per model, runs ") + size_note(chosen))
i1, i2 = st.columns([3, 2])
mode = i1.radio("Pictures", ["upload", "samples"], horizontal=True, key="colorize_input",
                format_func={"upload": "Upload pictures", "samples": "Try bundled photographs and samples"}.get)
layout = i2.radio("Layout", ["rows", "gallery"], horizontal=True, key="colorize_layout",
                  format_func={"rows": "One row per picture", "gallery": "Gallery"}.get)
if mode == "upload":
    files = st.file_uploader("Pictures (colour or gray, any size)", type=list(compare.PICTURE_TYPES),
                             accept_multiple_files=True, key="colorize_upload")
    items = [(f.name, f.getvalue()) for f in files or []]
    if not items:
        st.info("Upload one or several pictures, or choose **Try bundled photographs and samples**.",
                icon=":material/info:")
else:
    try:
        options = dict(samples())
    except Exception as e:  # the bundled pictures could not be read
        st.error(f"Sample images unavailable ({type(e).__name__}: {e}); upload a picture instead.",
                 icon=":material/warning:")
        options = {}
    picked = st.multiselect("Sample pictures", list(options), default=list(options)[:2], key="colorize_samples")
    items = [(n, options[n]) for n in picked]
if not chosen:
    st.info("Choose at least one model above.", icon=":material/info:")
    st.stop()

pictures: dict[int, tuple[compare.Picture, bytes]] = {}
for index, (name, data) in enumerate(items):
    try:
        pictures[index] = (read(data, name), data)
    except compare.PictureError as e:
        st.error(str(e), icon=":material/warning:")
sizes = {p: size_of(p) for p in chosen}

done: dict[int, dict[str, np.ndarray]] = {}
with ProgressBar("Colorizing") as bar:  # shown only while something is computed
    steps = [(i, p) for i in pictures for p in chosen]
    for k, (index, path) in enumerate(steps, 1):
        picture, data = pictures[index]
        entry = by_path[path]
        if not is_colorized(data, picture.name, path, sizes[path]):
            bar.part(k, len(steps), f"{picture.name} · {entry.name}")(f"colorizing at {sizes[path]} px", 0, 0)
        try:
            colorized(data, picture.name, path, sizes[path])
            done.setdefault(index, {})[path] = on_screen(data, picture.name, "model", path, sizes[path])
        except Exception as e:  # a broken checkpoint or an out-of-memory picture: one line, go on
            st.error(f"{entry.name} could not colorize {picture.name} ({type(e).__name__}: {e})",
                     icon=":material/warning:")


def download(index: int, path: str, column) -> None:
    picture, data = pictures[index]
    name = by_path[path].name
    column.download_button("PNG", lambda: compare.png_bytes(colorized(data, picture.name, path, sizes[path])),
                           file_name=f"{picture.stem}-{name}.png", mime="image/png", on_click="ignore",
                           key=f"colorize_dl_{index}_{path}", icon=":material/download:",
                           help="the colorized picture at its full resolution")


def picture_caption(picture: compare.Picture) -> str:
    w, h = picture.original_size
    kind = "colour: scored against its own colours" if picture.is_colour else "gray"
    return f"{w}×{h} pixels, colorized at full resolution · {kind}"


if layout == "rows":
    for index, (picture, data) in pictures.items():
        outputs = done.get(index, {})
        st.subheader(picture.name)
        st.caption(picture_caption(picture))
        cols = st.columns(1 + len(outputs) + int(picture.is_colour))
        cols[0].image(on_screen(data, picture.name, "gray"), caption="input (gray)")
        for col, (path, shown) in zip(cols[1:], outputs.items()):
            col.image(shown, caption=f"{by_path[path].name} · {sizes[path]} px")
            download(index, path, col)
        if picture.is_colour:
            cols[-1].image(on_screen(data, picture.name, "original"), caption="original")
            if outputs:
                st.dataframe(scores(data, picture.name, tuple((p, sizes[p]) for p in outputs)).round(3))
else:
    cells = []
    for index, (picture, data) in pictures.items():
        cells.append((index, None, on_screen(data, picture.name, "gray"), f"{picture.name} · input (gray)"))
        for path, shown in done.get(index, {}).items():
            cells.append((index, path, shown, f"{picture.name} · {by_path[path].name} · {sizes[path]} px"))
    for start in range(0, len(cells), GALLERY_COLUMNS):
        row = cells[start : start + GALLERY_COLUMNS]
        for col, (index, path, shown, caption) in zip(st.columns(GALLERY_COLUMNS), row):
            col.image(shown, caption=caption)
            if path is not None:
                download(index, path, col)
    scored = [(pictures[i][0].name, scores(pictures[i][1], pictures[i][0].name, tuple((p, sizes[p]) for p in outs)))
              for i, outs in done.items() if pictures[i][0].is_colour and outs]
    if scored:
        st.caption(f"Scores against each picture's own colours; `{GRAY_ROW}` is the picture with no colour at all.")
        st.dataframe(pd.concat({name: table for name, table in scored}, names=["picture", "model"]).round(3))

if done:
    st.subheader("Before / after")
    b1, b2, b3 = st.columns([2, 2, 2])
    which = b1.selectbox("Picture", list(done), format_func=lambda i: pictures[i][0].name, key="colorize_ba_picture")
    picture, data = pictures[which]
    model_path = b2.selectbox("Model", list(done[which]), format_func=lambda p: by_path[p].name,
                              key="colorize_ba_model")
    against = b3.radio("Against", ["gray", "original"] if picture.is_colour else ["gray"], horizontal=True,
                       key="colorize_ba_against", format_func={"gray": "gray input", "original": "original"}.get)
    left = done[which][model_path]
    right = on_screen(data, picture.name, against)
    right_label = "gray input" if against == "gray" else "original"
    st.iframe(wipe_html(left, right, f"{by_path[model_path].name} · {sizes[model_path]} px", right_label),
              height="content", alt=f"Before and after: {picture.name}")
    st.caption("Drag across the picture (or the slider under it) to move the line: the model's colours on the left, "
               f"the {right_label} on the right. Shown at up to 1,600 pixels; the PNG downloads are full size.")
