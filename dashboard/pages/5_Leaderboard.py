"""Leaderboard: every model and both baselines evaluated on the same images, best figures highlighted."""

from __future__ import annotations

import re

import pandas as pd
import plotly.express as px
import streamlit as st
from common import (
    ProgressBar,
    active_source,
    evaluate_cached,
    guarded,
    list_models,
    no_models_message,
    page,
    source_picker,
)

from core.evaluate import LEADERBOARD_COLUMNS, best_per_column, leaderboard
from core.metrics import HIGHER_IS_BETTER, NOT_RANKED, RANK_TARGET

page("Leaderboard", ":material/leaderboard:")
source_picker()
source = active_source()
BASELINES = [("baseline:gray", "gray"), ("baseline:mean_ab", "mean_ab")]
BEST_CSS = "background-color: #d3f9d8; font-weight: 700"

st.title("Leaderboard")
st.caption(f"All models and both baselines on the same images of **{source}**, sorted by `auc_ab`. "
           "The best figure of each column is highlighted.")

with st.sidebar:
    part = st.radio("Part", ["test", "val"], key="lb_part", horizontal=True,
                    help="test: the source's own test images; val: the validation split of its training part")
    limit = int(st.number_input("Images (at most)", min_value=10, max_value=100_000, value=2000, step=100,
                                key="lb_limit", help="N images of the part (a fixed random draw); the bundled "
                                                     "sample has "
                                                     "1,000 test images, so 2,000 takes all of them."))

models = list_models()
specs = BASELINES + [(m.path, m.name) for m in models]
if not models:
    no_models_message()

results = []
with ProgressBar(f"Evaluating on up to {limit:,} {part} images") as bar:  # shown only while something is computed
    for k, (spec, name) in enumerate(specs, 1):
        result = guarded(evaluate_cached, spec, name, source, part, limit, progress=bar.part(k, len(specs), name),
                         what=f"Could not evaluate {name}")
        if result is not None:
            results.append(result)
if not results:
    st.stop()

table = guarded(leaderboard, results, what="Could not compare the models")
if table is None:
    st.stop()
best = best_per_column(table)


def _direction(col: str) -> str:
    if col in RANK_TARGET:
        return f"closest to {RANK_TARGET[col]:g} is best"
    if col in NOT_RANKED:
        return "describes the images, not ranked"
    return "higher is better" if HIGHER_IS_BETTER.get(col, True) else "lower is better"


def _highlight(frame: pd.DataFrame) -> pd.DataFrame:
    css = pd.DataFrame("", index=frame.index, columns=frame.columns)
    for col, name in best.items():
        css.loc[name, col] = BEST_CSS
    return css


numeric = [c for c in LEADERBOARD_COLUMNS if c in table]
styled = table.style.apply(_highlight, axis=None).format("{:.3f}", subset=numeric, na_rep="–")
st.dataframe(styled, width="stretch", key="lb_table",
             column_config={c: st.column_config.NumberColumn(c, help=_direction(c)) for c in numeric})
n_images = int(table["n_images"].iloc[0])
st.caption(f"{n_images:,} {part} images of {source}. `score` = auc_ab × min(1, colorfulness_ratio): the figure "
           "training maximises. Hover a column header for its direction.")
safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.rstrip("/").rsplit("/", 1)[-1]) or "source"
st.download_button("Download table (CSV)", table.to_csv().encode(), icon=":material/download:", key="lb_csv",
                   mime="text/csv", on_click="ignore",
                   file_name=f"leaderboard-{safe}-{part}-{n_images}.csv")

st.subheader("By class and by hue")
metric = st.selectbox("Metric", numeric, index=numeric.index("auc_ab"), key="lb_metric",
                      help="Shown per class and per hue bin, one colour per model")
st.caption(f"`{metric}`: {_direction(metric)}.")
order = list(table.index)
seen: dict[str, int] = {}
labels = []  # the table's row names, in the order of ``results`` (a repeated name gets a number, as in the table)
for r in results:
    seen[r.model] = seen.get(r.model, 0) + 1
    labels.append(r.model if seen[r.model] == 1 else f"{r.model} ({seen[r.model]})")

per_class = pd.concat([r.per_class.assign(model=n) for r, n in zip(results, labels)], ignore_index=True)
fig = px.bar(per_class, x="class_name", y=metric, color="model", barmode="group",
             category_orders={"model": order}, labels={"class_name": "class"},
             hover_data={"n_images": True}, title=f"{metric} per class")
st.plotly_chart(fig, width="stretch", key="lb_class_chart")

per_hue = pd.concat([r.per_hue_bin.assign(model=n) for r, n in zip(results, labels)], ignore_index=True)
per_hue["hue"] = [f"{lo * 360:.0f}–{hi * 360:.0f}°" for lo, hi in zip(per_hue["hue_lo"], per_hue["hue_hi"])]
fig = px.bar(per_hue, x="hue", y=metric, color="model", barmode="group", category_orders={"model": order},
             labels={"hue": "mean hue of the image"}, hover_data={"n_images": True},
             title=f"{metric} per hue bin")
st.plotly_chart(fig, width="stretch", key="lb_hue_chart")
st.caption("Hue bins with no images have no bars. Images are binned by their mean hue (the split's hue method).")
