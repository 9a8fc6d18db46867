"""Leaderboard: every model and both baselines evaluated on the same images, best figures highlighted."""

from __future__ import annotations

import re

import boot  # noqa: F401 - first: its note shows while the imports below load
import pandas as pd
import streamlit as st
from common import (
    BASELINE_SPECS,
    PAGE_EVALUATIONS,
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
from core.explore import group_table, zoomed_range
from core.metrics import HIGHER_IS_BETTER, NOT_RANKED, RANK_TARGET
from dashboard.charts import group_bars

page("Leaderboard", ":material/leaderboard:")
source_picker()
source = active_source()
BASELINES = BASELINE_SPECS
DEFAULTS = PAGE_EVALUATIONS["leaderboard"]
BEST_CSS = "background-color: #d3f9d8; font-weight: 700"

st.title("Leaderboard")
st.caption(f"All models and both baselines on the same images of **{source}**, sorted by `auc_ab`. "
           "The best figure of each column is marked ★.")

with st.sidebar:
    part = st.radio("Part", ["test", "val"], key="lb_part", horizontal=True,
                    help="test: the source's own test images; val: the validation split of its training part")
    limit = int(st.number_input("Images (at most)", min_value=10, max_value=100_000, value=DEFAULTS["limit"], step=100,
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
DECIMALS = {"psnr": 2, "ssim": 4, "mae_rgb": 2, "auc_ab": 2, "acc_ab_2": 1, "acc_ab_5": 1, "acc_ab_10": 1,
            "colorfulness": 1, "colorfulness_ratio": 3, "score": 2}


def _direction(col: str) -> str:
    if col in RANK_TARGET:
        return f"closest to {RANK_TARGET[col]:g} is best"
    if col in NOT_RANKED:
        return "describes the images, not ranked"
    return "higher is better" if HIGHER_IS_BETTER.get(col, True) else "lower is better"


def _header(col: str) -> str:
    """A column's name with its direction: ``auc_ab ↑``, ``mae_rgb ↓``, ``colorfulness_ratio → 1``."""
    if col in RANK_TARGET:
        return f"{col.replace('_', ' ')} → {RANK_TARGET[col]:g}"
    return f"{col} {'↑' if HIGHER_IS_BETTER.get(col, True) else '↓'}"


numeric = [c for c in LEADERBOARD_COLUMNS if c in table]
shown_cols = [c for c in numeric if c != "colorfulness_gt"]  # the truth's colourfulness: one value, in the caption
headers = {c: _header(c) for c in shown_cols}
shown = table[["method", *shown_cols]]
text = shown.astype(object)
css = pd.DataFrame("", index=shown.index, columns=shown.columns)
for col in shown_cols:  # figures to a fixed number of decimals; the best of each column marked with ★, highlighted
    d = DECIMALS.get(col, 3)
    text[col] = ["–" if pd.isna(v) else f"{v:.{d}f}" + ("\u00a0★" if best.get(col) == name else "")  # no break
                 for name, v in shown[col].items()]
    if col in best:
        css.loc[best[col], col] = BEST_CSS
styled = text.rename(columns=headers).style.apply(lambda _: css.rename(columns=headers), axis=None)
st.table(styled)  # a plain table: it fits the page's width (its headers wrap) instead of scrolling sideways
n_images = int(table["n_images"].iloc[0])
gt = table["colorfulness_gt"].iloc[0] if "colorfulness_gt" in table else float("nan")
st.caption(f"{n_images:,} {part} images of {source} (colorfulness of the truth: {gt:.2f}). ↑ higher is better, "
           "↓ lower is better, → 1 closest to 1 is best; ★ marks the best figure of each column. `score` = auc_ab × "
           "min(1, colorfulness_ratio): the figure training maximises.")
safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", source.rstrip("/").rsplit("/", 1)[-1]) or "source"
st.download_button("Download table (CSV)", table.to_csv().encode(), icon=":material/download:", key="lb_csv",
                   mime="text/csv", on_click="ignore",
                   file_name=f"leaderboard-{safe}-{part}-{n_images}.csv")

st.subheader("By class and by hue")
m1, m2 = st.columns([2, 3])
metric = m1.selectbox("Metric", numeric, index=numeric.index("auc_ab"), key="lb_metric",
                      help="Shown per class and per hue bin, one colour per model")
has_gray = "gray" in table.index
view = m2.radio("Bars", ["difference", "values"] if has_gray else ["values"], horizontal=True, key="lb_view",
                format_func={"difference": "difference from the gray baseline",
                             "values": "values (axis zoomed to their spread)"}.get)
order = list(table.index)
if view == "difference":
    st.caption(f"Each model's `{metric}` minus the gray baseline's on the same images of that class or hue bin "
               f"({_direction(metric)}: bars {'above' if HIGHER_IS_BETTER.get(metric, True) else 'below'} zero beat "
               "gray). The differences are small beside the values themselves, so they are drawn from zero.")
else:
    st.caption(f"`{metric}`: {_direction(metric)}. The axis spans the values' spread, not zero to the top.")
for table_name, title, x_title, key in (("per_class", "per class", "class", "lb_class_chart"),
                                         ("per_hue_bin", "per hue bin", "mean hue of the image", "lb_hue_chart")):
    frame = group_table(results, table_name, metric, "gray" if has_gray else None)
    if view == "difference":
        frame = frame[frame["model"] != "gray"]
        fig = group_bars(frame, "vs_baseline", f"{metric} {title}, minus gray's", order, x_title, zero_line=True,
                         y_title=f"{metric} − gray")
    else:
        fig = group_bars(frame, "value", f"{metric} {title}", order, x_title, y_range=zoomed_range(frame["value"]))
    st.altair_chart(fig, width="stretch", key=key)
st.caption("Hue bins with no images have no bars. Images are binned by their mean hue (the split's hue method).")
