"""Colorize Lab: what the tool does, the active data, the models with their headline metrics, and a sample strip."""

from pathlib import Path

import boot  # noqa: F401 - first: its note shows while the imports below load
import streamlit as st
from common import (
    PAGE_EVALUATIONS,
    ProgressBar,
    evaluate_cached,
    guarded,
    list_models,
    load_prepared,
    no_models_message,
    page,
    source_picker,
)
from display import hidden_runs_note
from streamlit.errors import StreamlitPageNotFoundError

from core.explore import HEADLINE_METRICS, comparison_strip, headline_table, strip_models, strip_positions
from core.methods import method_label
from core.tags import featured_models

EVAL = PAGE_EVALUATIONS["home"]
EVAL_LIMIT = EVAL["limit"]
STRIP_IMAGES = 6
PAGES = [
    ("pages/1_Data_and_splits.py", "Data & splits", ":material/bar_chart:"),
    ("pages/2_Train.py", "Train", ":material/model_training:"),
    ("pages/3_Compare.py", "Compare", ":material/compare:"),
    ("pages/4_Colorize.py", "Colorize", ":material/brush:"),
    ("pages/5_Leaderboard.py", "Leaderboard", ":material/leaderboard:"),
    ("pages/6_Blind_test.py", "Blind test", ":material/visibility_off:"),
    ("pages/7_Runs.py", "Runs", ":material/table_view:"),
]
HERE = Path(__file__).resolve().parent

page("Home", ":material/palette:")
st.title("Colorize Lab")
st.markdown(
    "Deep-learning colorization of small pictures: models predict the CIELAB **a,b** colour channels from "
    "the lightness **L**.  \nTrain **U-Net**, conditional **DCGAN** and **NoGAN** colorizers on CIFAR-10 or "
    "your own pictures, with random or hue-stratified validation splits.  \nCompare them with the same "
    "metrics on the same images, colorize your own pictures, and put them to a blind test.")

links = [(path, label, icon) for path, label, icon in PAGES if (HERE / path).is_file()]
if links:
    for col, (path, label, icon) in zip(st.columns(len(links)), links):
        with col:
            try:
                st.page_link(path, label=label, icon=icon)
            except StreamlitPageNotFoundError:  # a page file that appeared after the app started
                st.caption(f"{icon} {label}")

source = source_picker()
st.subheader("Data")
prepared = guarded(load_prepared, source, what=f"Could not load data source {source!r} (pick another in the sidebar)")
if prepared is not None:
    s = prepared.summary()
    st.caption(f"Active source: **{s['source']}** ({s['name']}, {len(s['class_names'])} classes), "
               f"hue split, validation fraction {s['val_fraction']}, seed {s['seed']}.")
    cols = st.columns(5)
    cols[0].metric("Train", f"{s['n_train']:,}")
    cols[1].metric("Validation", f"{s['n_val']:,}")
    cols[2].metric("Test", f"{s['n_test']:,}")
    cols[3].metric("Grayscale dropped", f"{s['n_grayscale_dropped']:,}")
    cols[4].metric("Unreadable skipped", f"{s['n_skipped']:,}")

st.subheader("Models")
every_model = list_models()
show_all = st.toggle("Show all runs", key="home_show_all_runs",
                     help="every completed run, not only the shipped models and the runs tagged keep")
models = featured_models(every_model, show_all)
strip_entries = strip_models(models)
results = []
if note := hidden_runs_note(len(every_model) - len(models)):
    st.caption(note)
elif not models:
    no_models_message()
if prepared is not None and prepared.split.test.size:
    with ProgressBar(f"Evaluating on {EVAL_LIMIT} test images") as bar:  # shown only while something is computed
        n_steps = 1 + len(models)
        gray = guarded(evaluate_cached, "baseline:gray", "gray", source, EVAL["part"], EVAL_LIMIT, ssim=EVAL["ssim"],
                       progress=bar.part(1, n_steps, "gray baseline"), what="Gray baseline")
        if gray is not None:
            results.append(("baseline:gray", "baseline", "baseline", gray))
        for k, entry in enumerate(models, 2):
            r = guarded(evaluate_cached, entry.path, entry.name, source, EVAL["part"], EVAL_LIMIT, ssim=EVAL["ssim"],
                        progress=bar.part(k, n_steps, entry.name), what=f"Model {entry.name}")
            if r is not None:
                results.append((entry.name, entry.method, entry.kind, r))
    if results:
        n = results[0][3].n_images
        st.caption(f"Headline metrics on {n} test images of **{source}**, a fixed draw over every class (auc_ab "
                   "and psnr: higher is better; mae_rgb: lower; colorfulness_ratio: closest to 1). The gray baseline "
                   "predicts no colour.")
        st.dataframe(headline_table(results).style.format({m: "{:.3f}" for m in HEADLINE_METRICS}),
                     width="stretch")
elif prepared is not None:
    st.warning("This source has no test part, so models are not scored here; use a train/test layout.",
               icon=":material/warning:")

if prepared is not None and results:
    st.subheader("A few test images")
    by_name = {name: r for name, _, _, r in results}
    gray_result = results[0][3]
    positions = strip_positions(gray_result.n_images, STRIP_IMAGES)
    in_part = gray_result.per_image["part_index"].to_numpy()[positions]  # the images' places in the test part
    truth = prepared.images("test")[in_part]
    predictions = {f"{method_label(e.method)} · {e.name}": by_name[e.name].predictions[positions]
                   for e in strip_entries if e.name in by_name and by_name[e.name].predictions is not None}
    strip = comparison_strip(truth, predictions, scale=4)
    for col, (title, picture) in zip(st.columns(len(strip)), strip):
        with col:
            st.markdown(f"**{title}**")
            st.image(picture)
    st.caption(f"Test images {', '.join(str(int(p)) for p in in_part)}, enlarged 4x with nearest-neighbour. "
               "One model per method (shipped ones first).")
