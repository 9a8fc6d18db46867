"""Colorize: your own pictures (or bundled samples) through every model, side by side, scored when they have colour."""

from __future__ import annotations

import sys
from pathlib import Path

DASHBOARD = str(Path(__file__).resolve().parents[1])
if DASHBOARD not in sys.path:  # `common` lives in dashboard/
    sys.path.insert(0, DASHBOARD)

import numpy as np
import pandas as pd
import streamlit as st
from common import get_colorizer, list_models, load_prepared, model_label, no_models_message, page

from core import compare
from core.inference import colorize_picture, gray_picture
from core.progress import silent

NET_SIZES = [32, 64, 96, 128, 192, 256, 384, 512, 768, 1024]


@st.cache_data(show_spinner=False, max_entries=64)
def read(data: bytes, name: str) -> compare.Picture:
    """The uploaded bytes as a picture (raises PictureError for a damaged file)."""
    return compare.read_picture(data, name)


@st.cache_data(show_spinner=False, max_entries=64)
def gray_of(data: bytes, name: str) -> np.ndarray:
    return gray_picture(read(data, name).rgb)


@st.cache_data(show_spinner=False, max_entries=32)
def colorize(data: bytes, name: str, model_path: str, model_name: str, net_size: int) -> np.ndarray:
    """One picture colorized by one model at one network size."""
    return colorize_picture(get_colorizer(model_path, model_name), read(data, name).rgb, net_size)


@st.cache_data(show_spinner=False, max_entries=64)
def scores(data: bytes, name: str, model_path: str, model_name: str, net_size: int) -> dict[str, float]:
    return compare.score_picture(colorize(data, name, model_path, model_name, net_size), read(data, name).rgb)


@st.cache_data(show_spinner="Loading sample pictures…")
def samples() -> list[tuple[str, bytes]]:
    """A few bundled test images of different classes, enlarged."""
    prepared = load_prepared("sample", progress=silent)  # a cached function draws nothing (it would be replayed)
    return compare.sample_pictures(prepared.images("test"), prepared.labels("test"), prepared.dataset.class_names)


page("Colorize", ":material/brush:")
st.title("Colorize pictures")
entries = list_models()
if not entries:
    no_models_message()
    st.stop()
by_path = {e.path: e for e in entries}

c1, c2 = st.columns([3, 2])
chosen = c1.multiselect("Models", list(by_path), default=list(by_path)[:3], key="colorize_models",
                        format_func=lambda p: model_label(by_path[p]))
net_size = c2.select_slider("Network input size (longer side, pixels)", NET_SIZES, value=256, key="colorize_size",
                            help="The network sees the lightness resized to this (rounded to a multiple of 16); "
                                 "its colours are enlarged and joined with the full-resolution lightness.")
mode = st.radio("Pictures", ["upload", "samples"], horizontal=True, key="colorize_input",
                format_func={"upload": "Upload pictures", "samples": "Try bundled sample images"}.get)
if mode == "upload":
    files = st.file_uploader("Pictures (colour or gray, any size)", type=list(compare.PICTURE_TYPES),
                             accept_multiple_files=True, key="colorize_upload")
    items = [(f.name, f.getvalue()) for f in files or []]
    if not items:
        st.info("Upload one or several pictures, or choose **Try bundled sample images**.", icon=":material/info:")
else:
    try:
        options = dict(samples())
    except Exception as e:  # the bundled sample could not be read
        st.error(f"Sample images unavailable ({type(e).__name__}: {e}); upload a picture instead.",
                 icon=":material/warning:")
        options = {}
    picked = st.multiselect("Sample images", list(options), default=list(options)[:2], key="colorize_samples")
    items = [(n, options[n]) for n in picked]
if not chosen:
    st.info("Choose at least one model above.", icon=":material/info:")
    st.stop()

done: dict[int, tuple[compare.Picture, bytes, dict[str, np.ndarray]]] = {}
for index, (name, data) in enumerate(items):
    try:
        picture = read(data, name)
    except compare.PictureError as e:
        st.error(str(e), icon=":material/warning:")
        continue
    st.subheader(name)
    w, h = picture.original_size
    note = f" · reduced to {picture.rgb.shape[1]}×{picture.rgb.shape[0]}" if picture.reduced else ""
    st.caption(f"{w}×{h} pixels{note} · {'colour: scored against its own colours' if picture.is_colour else 'gray'}")
    outputs: dict[str, np.ndarray] = {}
    for path in chosen:
        entry = by_path[path]
        with st.spinner(f"Colorizing with {entry.name}…"):
            try:
                outputs[path] = colorize(data, name, path, entry.name, net_size)
            except Exception as e:  # a broken checkpoint or an out-of-memory picture: one line, go on
                st.error(f"{entry.name} could not colorize {name} ({type(e).__name__}: {e})", icon=":material/warning:")
    cols = st.columns(1 + len(outputs) + int(picture.is_colour))
    cols[0].image(compare.for_display(gray_of(data, name)), caption="input (gray)")
    for col, (path, out) in zip(cols[1:], outputs.items()):
        col.image(compare.for_display(out), caption=by_path[path].name)
        col.download_button("PNG", compare.png_bytes(out), file_name=f"{picture.stem}-{by_path[path].name}.png",
                            mime="image/png", on_click="ignore", key=f"colorize_dl_{index}_{path}",
                            icon=":material/download:")
    if picture.is_colour:
        cols[-1].image(compare.for_display(picture.rgb), caption="original")
        if outputs:
            table = pd.DataFrame.from_dict(
                {by_path[p].name: scores(data, name, p, by_path[p].name, net_size) for p in outputs},
                orient="index")[list(compare.PICTURE_SCORES)]
            st.dataframe(table.round(3))
    if outputs:
        done[index] = (picture, data, outputs)

if done:
    st.subheader("Before / after")
    b1, b2, b3 = st.columns([2, 2, 3])
    which = b1.selectbox("Picture", list(done), format_func=lambda i: done[i][0].name, key="colorize_ba_picture")
    picture, data, outputs = done[which]
    model_path = b2.selectbox("Model", list(outputs), format_func=lambda p: by_path[p].name, key="colorize_ba_model")
    position = b3.slider("Wipe", 0.0, 1.0, 0.5, step=0.01, key="colorize_ba_position",
                         help="Left of the line: the model's colours; right of it: the gray input")
    wipe = compare.before_after(gray_of(data, picture.name), outputs[model_path], position)
    st.image(compare.for_display(wipe, 512), caption=f"{by_path[model_path].name}: colour ← | → gray")
