"""Runs: every run with its settings and best validation figures, filtered, searched, sorted and tagged; the curves
of several runs on shared axes, and their sample grids side by side."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

import boot  # noqa: F401 - first: its note shows while the imports below load
import pandas as pd
import streamlit as st

from core.methods import method_label
from core.run_table import (
    FIGURE_COLUMNS,
    RUN_COLUMNS,
    XAXES,
    all_tags,
    comparison_table,
    curve_names,
    default_curves,
    differing_settings,
    filter_runs,
    nearest_sample,
    overlay_frame,
    phase_starts,
    runs_signature,
    sample_epochs,
    setting_columns,
    smooth_frame,
    sort_runs,
)
from core.runs import STATES, RunDir, default_runs_dir
from core.tags import ARCHIVE, KEEP, TagError, parse_tags, read_tags, set_tags
from dashboard.charts import overlay_figure, run_colours
from dashboard.common import page
from dashboard.display import highlight_columns

VAL_DEFAULT = ("auc_ab", "mae_rgb", "colorfulness_ratio", "accuracy")
MAX_OVERLAY = 8
SAMPLE_COLUMNS = 4

page("Runs", ":material/table_view:")
st.title("Runs")
runs_dir = default_runs_dir()
st.caption(f"Every run in `{runs_dir}` with its settings and best validation figures. Tag runs `{KEEP}` to offer "
           f"them on Home and in the Blind test, `{ARCHIVE}` to hide them here; pick runs to overlay their curves.")


@st.cache_data(show_spinner="Reading the runs…", max_entries=8)
def table_of(folder: str, signature: tuple) -> pd.DataFrame:
    """The comparison table of a runs folder; ``signature`` (``runs_signature``) changes when any run does."""
    return comparison_table(runs_dir=folder)


@st.cache_data(show_spinner=False, max_entries=64)
def curves_of(folder: str, ids: tuple[str, ...], kind: str, x: str, metrics: tuple[str, ...], weight: float,
              signature: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The smoothed overlay frame of some runs and where their phases start."""
    runs = [RunDir(Path(folder) / i) for i in ids]
    frame = smooth_frame(overlay_frame(runs, kind, x, metrics), weight)
    return frame, phase_starts(runs, x)


def save_tags(run_id: str, key: str) -> None:
    """Button callback: store the tags typed for ``run_id``."""
    try:
        stored = set_tags(RunDir(runs_dir / run_id), parse_tags(st.session_state.get(key, "")))
    except (TagError, OSError) as e:
        st.session_state["runs_tag_error"] = f"Tags not saved: {e}"
        return
    st.session_state["runs_tag_saved"] = (run_id, stored)


def toggle_tag(run_id: str, tag: str) -> None:
    """Button callback: add ``tag`` to the run, or take it off when it is there."""
    run = RunDir(runs_dir / run_id)
    current = read_tags(run)
    wanted = [t for t in current if t != tag] if tag in current else [*current, tag]
    try:
        stored = set_tags(run, wanted)
    except (TagError, OSError) as e:
        st.session_state["runs_tag_error"] = f"Tags not saved: {e}"
        return
    st.session_state["runs_tag_saved"] = (run_id, stored)


signature = runs_signature(runs_dir)
table = table_of(str(runs_dir), signature)
if table.empty:
    st.info("No runs yet: start one on the **Train** page, or from a terminal with `python -m core.train --model unet "
            "--source sample --epochs 1 --out runs/my-unet`.", icon=":material/info:")
    st.stop()

# --- filters, search and sorting --------------------------------------------------------------------------------
c1, c2, c3, c4 = st.columns([2, 2, 2, 3])
methods = c1.multiselect("Method", sorted(m for m in table["method"].unique() if m), key="runs_methods",
                         format_func=method_label, placeholder="any method")
states = c2.multiselect("State", [s for s in (*STATES, "unknown") if s in set(table["state"])], key="runs_states",
                        placeholder="any state")
tags = c3.multiselect("Tag", all_tags(table), key="runs_tags", placeholder="any tag")
text = c4.text_input("Search", key="runs_search", placeholder="name or setting, e.g. dcgan width=8",
                     help="every word must appear in the run's name, method, state, tags or `setting=value` pairs")
columns = [*RUN_COLUMNS, *FIGURE_COLUMNS, *setting_columns(table)]
c1, c2, c3, c4 = st.columns([2, 2, 2, 3])
sort_by = c1.selectbox("Sort by", columns, index=columns.index("started"), key="runs_sort")
descending = c2.toggle("Descending", value=True, key="runs_descending")
show_same = c3.toggle("Show shared settings", value=False, key="runs_show_same",
                      help="also the settings that are the same for every run shown")
show_archived = c4.toggle(f"Show runs tagged {ARCHIVE}", value=False, key="runs_show_archived")

shown = sort_runs(filter_runs(table, methods, states, tags, text, show_archived), sort_by, ascending=not descending)
differ = differing_settings(shown)
same = [c for c in setting_columns(shown) if c not in differ]
view = shown[[*RUN_COLUMNS, *FIGURE_COLUMNS, *differ, *(same if show_same else [])]]
config = {
    "wall_s": st.column_config.NumberColumn("wall time (s)", format="%.1f"),
    "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm"),
    "epochs_done": st.column_config.NumberColumn("epochs done", format="%.2f"),
    **{c: st.column_config.NumberColumn(c, format="%.3f") for c in FIGURE_COLUMNS if c != "best_step"},
    **{c: st.column_config.Column(c, help="differs between the runs shown") for c in differ},
}
st.dataframe(highlight_columns(view, differ), hide_index=True, width="stretch", key="runs_table",
             column_config=config)
hidden = f"; {len(same)} settings the same for all are hidden" if same and not show_same else ""
st.caption(f"{len(shown)} of {len(table)} runs. Highlighted: the {len(differ)} settings that differ between them"
           f"{hidden}. Best validation figures: the highest auc_ab and accuracy, the lowest mae_rgb, the "
           "colorfulness_ratio closest to 1 and its value at best.pt's step.")
st.download_button("Download CSV", shown.to_csv(index=False), file_name="runs.csv", mime="text/csv",
                   icon=":material/download:", key="runs_csv", help="the runs shown, with every setting")

# --- tags --------------------------------------------------------------------------------------------------------
st.subheader("Tags")
if error := st.session_state.pop("runs_tag_error", None):
    st.error(error, icon=":material/warning:")
if saved := st.session_state.pop("runs_tag_saved", None):
    st.success(f"Tags of **{saved[0]}**: {', '.join(saved[1]) or 'none'}", icon=":material/sell:")
ids = list(table["run"])
c1, c2, c3, c4, c5 = st.columns([3, 4, 1.2, 1.2, 1.2], vertical_alignment="bottom")
tag_run = c1.selectbox("Run", ids, key="runs_tag_run")
current = read_tags(RunDir(runs_dir / tag_run))
text_key = f"runs_tag_text_{tag_run}_{'_'.join(current)}"  # a new field once the stored tags change
c2.text_input("Tags", value=" ".join(current), key=text_key, placeholder=f"e.g. {KEEP}",
              help="plain words (letters, digits, '_' and '-'), separated by spaces or commas")
c3.button("Save", key="runs_tag_save", on_click=save_tags, args=(tag_run, text_key), icon=":material/save:")
for col, tag in ((c4, KEEP), (c5, ARCHIVE)):
    col.button(f"{'Untag' if tag in current else 'Tag'} {tag}", key=f"runs_tag_{tag}", on_click=toggle_tag,
               args=(tag_run, tag))

# --- curves of several runs -------------------------------------------------------------------------------------
st.subheader("Curves")
picked = st.multiselect("Runs to overlay", ids, key="runs_overlay", max_selections=MAX_OVERLAY,
                        placeholder="pick two or more runs")
if not picked:
    st.info("Pick runs above to draw their losses and validation figures on shared axes.", icon=":material/info:")
    st.stop()
picked_runs = [RunDir(runs_dir / i) for i in picked]
c1, c2 = st.columns([2, 3])
x = c1.radio("x axis", XAXES, horizontal=True, key="runs_x",
             format_func={"step": "step", "epoch": "epoch", "time": "wall time"}.get)
weight = c2.slider("Smoothing", 0.0, 0.99, 0.6, step=0.01, key="runs_smoothing",
                   help="TensorBoard's exponential moving average, along each phase of each curve; 0: none")
losses, figures = curve_names(picked_runs, "loss"), curve_names(picked_runs, "val")
c1, c2 = st.columns(2)  # the pickers start afresh when the runs picked log other curves
loss_pick = c1.multiselect("Losses", losses, default=default_curves(picked_runs, "loss"),
                           key=f"runs_losses:{','.join(losses)}")
val_pick = c2.multiselect("Validation figures", figures, default=default_curves(picked_runs, "val",
                          preferred=VAL_DEFAULT), key=f"runs_val_metrics:{','.join(figures)}")
for kind, names, title, key in (("loss", loss_pick, "Training losses", "runs_loss_chart"),
                                ("val", val_pick, "Validation", "runs_val_chart")):
    if not names:
        continue
    frame, starts = curves_of(str(runs_dir), tuple(picked), kind, x, tuple(names), float(weight), signature)
    fig = overlay_figure(frame, starts, x, title, runs=picked)
    if fig is None:
        st.info(f"No {title.lower()} logged yet for these runs on this axis.", icon=":material/info:")
    else:
        st.plotly_chart(fig, width="stretch", key=key)
st.caption("Dashed lines: where a run's next phase begins (NoGAN: critic, then GAN), in the run's colour. "
           "Smoothed curves are drawn over the logged values (faint).")

# --- sample grids ---------------------------------------------------------------------------------------------
st.subheader("Samples")
epochs = sample_epochs(picked_runs)
if not epochs:
    st.info("These runs have no sample grids (classifiers make none).", icon=":material/info:")
    st.stop()
epoch = epochs[-1] if len(epochs) == 1 else st.select_slider(
    "Epoch", epochs, value=epochs[-1], key="runs_sample_epoch", format_func=lambda e: f"{e:.3g}",
    help="each run shows its grid nearest to this epoch")
colours = run_colours(picked)
for start in range(0, len(picked_runs), SAMPLE_COLUMNS):
    for col, run in zip(st.columns(SAMPLE_COLUMNS), picked_runs[start : start + SAMPLE_COLUMNS]):
        with col:
            sample = nearest_sample(run, epoch)
            st.markdown(f"<span style='color:{colours[run.id]}'>■</span> **{run.id}**", unsafe_allow_html=True)
            if sample is None:
                st.caption("no sample grid")
            else:
                st.image(str(sample.path), caption=f"{sample.path.stem} (epoch {sample.epoch:.3g})")
st.caption("Each grid: gray input | prediction | truth for the run's fixed validation images.")
