"""Data & splits: hue histograms of train against validation for the random and the hue split, class counts,
the grayscale images dropped, and the images of any hue range."""

import boot  # noqa: F401 - first: its note shows while the imports below load
import streamlit as st
from common import guarded, load_prepared, page, source_picker

from core.data import PreparedData
from core.explore import class_counts_table, enlarged, hue_histogram_frame, indices_in_hue_range, split_overview
from core.splits import HUE_BINS, SPLIT_KINDS
from dashboard.charts import HISTOGRAM_CONFIG, hue_histogram_figure, ks_title, selected_hue_range

GALLERY_LIMIT = 30
DROPPED_LIMIT = 40
SCALE = 3


page("Data & splits", ":material/bar_chart:")
st.title("Data & splits")
source = source_picker()
with st.sidebar:
    st.subheader("Split")
    val_fraction = st.slider("Validation fraction", 0.05, 0.5, 0.1, 0.05, key="val_fraction",
                             help="Share of the (colour) training images held out for validation")
    seed = int(st.number_input("Seed", min_value=0, max_value=10_000, value=0, step=1, key="seed",
                               help="Random split: the permutation; hue split: which offset goes to validation"))
    hue_method = st.radio("Mean hue", ("circular", "arithmetic"), key="hue_method", horizontal=True,
                          help="circular: saturation-weighted circular mean (reds stay red); "
                               "arithmetic: plain mean of HSV hue")

preps: dict[str, PreparedData] = {}
for kind in SPLIT_KINDS:
    p = guarded(load_prepared, source, kind, float(val_fraction), seed, hue_method,
                what=f"Could not prepare source {source!r} (pick another in the sidebar)")
    if p is None:
        st.stop()
    preps[kind] = p
summaries = {kind: p.summary() for kind, p in preps.items()}
first = summaries[SPLIT_KINDS[0]]
st.caption(f"Source **{first['source']}** ({first['name']}): {first['n_total']:,} training-part images, "
           f"{first['n_grayscale_dropped']:,} grayscale dropped (no pixel with |a| or |b| above "
           f"{first['gray_threshold']}), {first['n_test']:,} test images; validation fraction {val_fraction}, "
           f"seed {seed}, {hue_method} mean hue.")
st.dataframe(split_overview(summaries).style.format({"ks_hue": "{:.4f}", "ks_pvalue": "{:.3g}"}), width="stretch")

st.subheader("Hue of train against validation")
st.caption("Share of each part per mean-hue bin (36 bins), every bar in its hue; validation hatched. A low KS "
           "statistic means train and validation have the same hue distribution. Click a bar "
           "to see the images of its hue range below, or choose **Box Select** in the chart's toolbar and drag over "
           "bars.")
events = {}
for col, kind in zip(st.columns(len(SPLIT_KINDS)), SPLIT_KINDS):
    p = preps[kind]
    frame = hue_histogram_frame({"train": p.subset_hues("train"), "val": p.subset_hues("val")}, HUE_BINS)
    fig = hue_histogram_figure(frame, ks_title(kind, summaries[kind]))
    with col:
        events[kind] = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box"),
                                       key=f"hist_{kind}", width="stretch", config=HISTOGRAM_CONFIG)

# A new selection on a chart drives the hue-range controls below (which also work on their own).
st.session_state.setdefault("hue_range", (0.0, 1.0))
st.session_state.setdefault("gallery_split", "hue")
for kind, event in events.items():
    picked = selected_hue_range(event, HUE_BINS)
    if picked is not None and picked != st.session_state.get(f"_picked_{kind}"):
        st.session_state["hue_range"] = (round(picked[0], 4), round(picked[1], 4))
        st.session_state["gallery_split"] = kind
    st.session_state[f"_picked_{kind}"] = picked

st.subheader("Images by hue")
c1, c2 = st.columns([3, 1])
with c1:
    lo, hi = st.slider("Hue range", 0.0, 1.0, step=1.0 / HUE_BINS, key="hue_range", format="%.3f",
                       help="Also set by selecting bars on a histogram")
with c2:
    gallery_kind = st.radio("Split", SPLIT_KINDS, key="gallery_split", horizontal=True)
gp = preps[gallery_kind]
for col, part in zip(st.columns(2), ("train", "val")):
    hues = gp.subset_hues(part)
    idx = indices_in_hue_range(hues, lo, hi)
    shown = indices_in_hue_range(hues, lo, hi, limit=GALLERY_LIMIT)  # a fixed draw over the whole range
    source_idx = getattr(gp.split, part)[shown]
    with col:
        some = f", {len(shown)} of them across the range, by hue" if len(idx) > len(shown) else ""
        st.markdown(f"**{part}** ({gallery_kind} split): {len(idx):,} images with hue in [{lo:.3f}, {hi:.3f}]{some}")
        if len(shown):
            st.image(enlarged(gp.images(part)[shown], SCALE),
                     caption=[f"#{s} · {h:.2f}" for s, h in zip(source_idx, hues[shown])])
        else:
            st.info("No images in this hue range.")

st.subheader("Class counts")
st.dataframe(class_counts_table(summaries), width="stretch")

st.subheader("Grayscale images dropped")
dropped = preps[SPLIT_KINDS[0]].split.dropped
st.markdown(f"**{len(dropped):,}** images of the training part have no colour and are left out of both splits"
            + (f"; the first {min(len(dropped), DROPPED_LIMIT)}:" if len(dropped) else "."))
if len(dropped):
    first_dropped = dropped[:DROPPED_LIMIT]
    images = preps[SPLIT_KINDS[0]].dataset.parts["train"].images[first_dropped]
    st.image(enlarged(images, SCALE), caption=[f"#{i}" for i in first_dropped])
