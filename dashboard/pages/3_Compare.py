"""Compare: models side by side on the same images — summary metrics, then gray | each model | truth, page by page."""

from __future__ import annotations

import boot  # noqa: F401 - first: its note shows while the imports below load
import streamlit as st
from common import (
    PAGE_EVALUATIONS,
    ProgressBar,
    evaluate_cached,
    guarded,
    list_models,
    load_prepared,
    model_label,
    no_models_message,
    page,
    source_picker,
)

from core import compare
from core.evaluate import BASELINE_PREFIX, best_per_column, leaderboard
from core.metrics import HIGHER_IS_BETTER, METRICS

DEFAULTS = PAGE_EVALUATIONS["compare"]
page("Compare", ":material/compare:")
st.title("Compare models")
source = source_picker()

entries = list_models()
if not entries:
    no_models_message()
labels = {e.path: model_label(e) for e in entries}
names = {e.path: e.name for e in entries}
titles_of = dict(names)
for b in ("gray", "mean_ab"):
    labels[BASELINE_PREFIX + b] = titles_of[BASELINE_PREFIX + b] = f"{b} (baseline)"
    names[BASELINE_PREFIX + b] = b
default = [e.path for e in entries][:3] or [BASELINE_PREFIX + "gray", BASELINE_PREFIX + "mean_ab"]

# the picker has the page's whole width: its chips wrap onto more lines instead of scrolling out of sight
chosen = st.multiselect("Models", list(labels), default=default, format_func=labels.get, key="compare_models",
                        help="Shipped models, completed runs and the two baselines")
c2, c3, _ = st.columns([2, 1, 3])
part = c2.radio("Part", ["test", "val"], format_func={"test": "test", "val": "validation"}.get, horizontal=True,
                key="compare_part")
limit = int(c3.number_input("Images", min_value=8, max_value=60000, value=DEFAULTS["limit"], step=100,
                            key="compare_limit",
                            help="Evaluate N images of the part (a fixed random draw, the same for every model)"))
if not chosen:
    st.info("Choose at least one model or baseline above.", icon=":material/info:")
    st.stop()

results = {}
baselines_left = [BASELINE_PREFIX + b for b in ("gray", "mean_ab") if BASELINE_PREFIX + b not in chosen]
with ProgressBar(f"Evaluating on {limit} {part} images") as bar:  # shown only while something is computed
    steps = [*chosen, *baselines_left]  # the summary lists both baselines: evaluate them in the same pass
    for k, spec in enumerate(steps, 1):
        try:
            r = guarded(evaluate_cached, spec, names[spec], source, part, limit, keep_predictions=True,
                        progress=bar.part(k, len(steps), names[spec]), what=labels[spec])
        except Exception as e:  # any other failure: one line, the other models still shown
            st.error(f"{labels[spec]}: evaluation failed ({type(e).__name__}: {e})", icon=":material/warning:")
            r = None
        if r is not None and r.predictions is not None:
            results[spec] = r
reference = {spec: results.pop(spec) for spec in baselines_left if spec in results}
if not results:
    st.stop()
specs = list(results)
first = results[specs[0]]
prepared = guarded(load_prepared, source, what="Data")
images = guarded(prepared.images, part, what="Data") if prepared is not None else None
if images is None:
    st.stop()
images = images[first.per_image["part_index"].to_numpy()]  # the evaluated images, in the table's order

st.subheader("Summary")
st.caption(f"{first.n_images} {part} images of {first.source} (colorfulness of the truth: "
           f"{first.metrics['colorfulness_gt']:.2f}); both baselines always listed for reference; "
           "the best figure of each column in bold")
summary = [results[s] for s in specs] + list(reference.values())
table = guarded(leaderboard, summary, what="Summary")
if table is not None:
    table = table.drop(columns=[c for c in ("n_images", "colorfulness_gt") if c in table.columns])  # in the caption
    best = best_per_column(table)
    st.table(table.style.format(precision=3).apply(
        lambda col: ["font-weight: bold" if best.get(col.name) == i else "" for i in col.index]))

st.subheader("Image by image")
per_image = first.per_image
f1, f2, f3 = st.columns([3, 2, 2])
class_options = list(prepared.dataset.class_names) or \
    [c for c in dict.fromkeys(per_image.sort_values("label")["class_name"]) if c]
classes = f1.multiselect("Classes", class_options, key="compare_classes", placeholder="All classes")
hue_range = f2.slider("Mean hue", 0.0, 1.0, (0.0, 1.0), step=0.01, key="compare_hue")
metric_names = [m for m in METRICS if m != "colorfulness_gt"]
metric = f3.selectbox("Metric (captions and sorting)", metric_names, index=metric_names.index("auc_ab"),
                      key="compare_metric")

s1, s2, s3, s4 = st.columns([2, 2, 2, 1])
sort = s1.selectbox("Sort by", ["order", "metric", "disagreement"], key="compare_sort", format_func={
    "order": "data set order", "metric": "metric of a model", "disagreement": "disagreement of two models"}.get)
key = None
apart, apart_label = None, ""
if sort == "metric":
    sort_model = s2.selectbox("Model", specs, format_func=labels.get, key="compare_sort_model")
    key = results[sort_model].per_image[metric].to_numpy()
elif sort == "disagreement":
    model_a = s2.selectbox("Model A", specs, format_func=labels.get, key="compare_model_a")
    model_b = s3.selectbox("Model B", specs, index=min(1, len(specs) - 1), format_func=labels.get,
                           key="compare_model_b")
    key = apart = compare.disagreement(results[model_a].predictions, results[model_b].predictions)
    apart_label = "Δab"
    st.caption(f"Disagreement (Δab): mean per-pixel a,b distance (Lab units) between {titles_of[model_a]}'s and "
               f"{titles_of[model_b]}'s predictions; shown under each input and in the table.")
higher = HIGHER_IS_BETTER.get(metric, True)
descending = s4.radio("Order", ["descending", "ascending"], key="compare_order", disabled=sort == "order",
                      help=f"Higher {metric} is {'better' if higher else 'worse'}") == "descending"

rows = compare.select_rows(per_image, classes, hue_range, key, descending)
n_pages = compare.page_count(len(rows))
if st.session_state.get("compare_page", 1) > n_pages:
    st.session_state["compare_page"] = n_pages
p1, p2 = st.columns([1, 5])
page_no = int(p1.number_input("Page", min_value=1, max_value=n_pages, value=1, step=1, key="compare_page"))
shown = compare.page_of(rows, page_no)
p2.caption(f"{len(rows)} of {len(per_image)} images match · page {page_no} of {n_pages}")
if len(shown) == 0:
    st.info("No image matches these filters: widen the hue range or choose other classes.", icon=":material/info:")
    st.stop()

grid = compare.render_rows(images, [results[s].predictions for s in specs], shown)
titles = compare.grid_titles([titles_of[s] for s in specs])
tables = [results[s].per_image for s in specs]
figure = compare.grid_png(grid, titles, captions=compare.grid_captions(per_image, tables, shown, metric, apart,
                                                                        apart_label))
st.image(figure, caption=f"Under each model: its {metric} on that image; under the input: the image's index and "
         "class" + (" and the disagreement (Δab)" if apart is not None else "") + "; under the truth: its mean hue. "
         "Pixels enlarged 4x (nearest-neighbour).")
st.download_button("Download this page as PNG", figure, key="compare_export",
                   file_name=f"compare-{part}-page{page_no}.png", mime="image/png", on_click="ignore",
                   icon=":material/download:")
st.table(compare.page_table(per_image, tables, [titles_of[s] for s in specs], shown, metric, apart, apart_label)
         .style.format(precision=2))
