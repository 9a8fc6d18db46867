"""Blind test: the colorization Turing test. Which of the two pictures is real? Answers are tallied per model."""

from __future__ import annotations

import boot  # noqa: F401 - first: its note shows while the imports below load
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from common import (
    active_source,
    get_colorizer,
    guarded,
    list_models,
    load_prepared,
    model_label,
    no_models_message,
    page,
    source_picker,
)
from display import hidden_runs_note

from core.blind_test import (
    BlindTestFileError,
    Trial,
    arrange,
    is_fooled,
    load_tallies,
    make_trial,
    record_answer,
    reset,
    tally_file,
    trial_pair,
)
from core.figures import enlarge
from core.progress import silent
from core.tags import featured_models

RANDOM = "__random__"
SCALE = 8  # 32 x 32 -> 256 x 256, nearest-neighbour

page("Blind test", ":material/visibility_off:")
source_picker()
source = active_source()
path = tally_file()


@st.cache_data(show_spinner="Colorizing…", max_entries=512)
def pair(model_path: str, model_name: str, source: str, part: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(real, colorized) versions of one image of ``part`` of ``source``."""
    image = load_prepared(source, progress=silent).images(part)[index]  # loaded already: nothing to show
    return trial_pair(get_colorizer(model_path, model_name), image)


def _answer(side: str) -> None:
    """Button callback: record the answer to the trial on screen, then let the next run draw a new one."""
    trial: Trial | None = st.session_state.get("bt_trial")
    if trial is None:
        return
    fooled = is_fooled(trial, side)
    try:
        record_answer(path, trial.model, fooled)
    except (BlindTestFileError, OSError) as e:
        st.session_state["bt_error"] = f"Your answer was not saved: {e}"
        return
    st.session_state["bt_feedback"] = (fooled, trial.model, trial.real_side)
    del st.session_state["bt_trial"]


def _reset() -> None:
    """Confirmed reset: forget every answer."""
    st.session_state["bt_confirm_reset"] = False
    try:
        reset(path)
    except OSError as e:
        st.session_state["bt_error"] = f"Could not reset the tallies: {e}"
        return
    st.session_state["bt_feedback"] = "reset"


def _confirm(value: bool) -> None:
    st.session_state["bt_confirm_reset"] = value


def trial_section() -> None:
    """The current pair of pictures and the two answer buttons (or the empty state)."""
    every_model = list_models()
    if not every_model:
        no_models_message()
        return
    show_all = st.toggle("Show all runs", key="bt_show_all_runs",
                         help="every completed run, not only the shipped models and the runs tagged keep")
    models = featured_models(every_model, show_all)
    if note := hidden_runs_note(len(every_model) - len(models)):
        st.caption(note)
    if not models:
        return
    by_name = {m.name: m for m in models}
    if st.session_state.get("bt_model") not in (RANDOM, *by_name):  # a model the toggle just hid
        st.session_state.pop("bt_model", None)
    choice = st.selectbox("Model", [RANDOM, *by_name], key="bt_model",
                          format_func=lambda n: "Random (any model, hidden until you answer)" if n == RANDOM
                          else model_label(by_name[n]))
    pool = list(by_name) if choice == RANDOM else [choice]
    prepared = guarded(load_prepared, source, what="Could not load the data")
    if prepared is None:
        return
    part = "test" if "test" in prepared.dataset.parts else "val"
    n_images = len(prepared.images(part))
    if n_images == 0:
        st.warning(f"{source} has no {part} images to show.")
        return

    context = (source, part, n_images)
    trial: Trial | None = st.session_state.get("bt_trial")
    if trial is None or trial.model not in pool or st.session_state.get("bt_context") != context:
        rng = st.session_state.setdefault("bt_rng", np.random.default_rng())
        trial = make_trial(rng, n_images, pool)
        st.session_state["bt_trial"] = trial
        st.session_state["bt_context"] = context
    entry = by_name[trial.model]
    images = guarded(pair, entry.path, entry.name, source, part, trial.image_index,
                     what=f"Could not colorize with {entry.name}")
    if images is None:
        del st.session_state["bt_trial"]
        return
    left, right = arrange(trial, *images)
    st.markdown("**Which picture is the real one?**")
    col_l, col_r, _ = st.columns([1, 1, 2])
    with col_l:
        st.image(enlarge(left, SCALE), width=SCALE * left.shape[1])
        st.button("Left is real", icon=":material/arrow_back:", key="bt_left", on_click=_answer, args=("left",),
                  width="stretch")
    with col_r:
        st.image(enlarge(right, SCALE), width=SCALE * right.shape[1])
        st.button("Right is real", icon=":material/arrow_forward:", key="bt_right", on_click=_answer, args=("right",),
                  width="stretch")
    shown = "a hidden model" if choice == RANDOM else f"`{trial.model}`"
    st.caption(f"{part.capitalize()} image {trial.image_index} of {source}, colorized by {shown}; "
               f"enlarged {SCALE}x with nearest-neighbour.")


def tally_section() -> None:
    """Counts per model with the fooled rate and its 95% Wilson interval, as a table and a chart; reset."""
    st.subheader("Tallies")
    tallies = guarded(load_tallies, path, what="Could not read the blind-test answers")
    if tallies is not None and tallies.empty:
        st.info("No answers yet: pick the real picture above to start the tally.", icon=":material/info:")
    elif tallies is not None:
        shown = tallies.assign(**{c: tallies[c] * 100 for c in ("fooled_rate", "ci_low", "ci_high")})
        pct = {c: st.column_config.NumberColumn(label, format="%.1f%%") for c, label in
               (("fooled_rate", "fooled rate"), ("ci_low", "95% CI low"), ("ci_high", "95% CI high"))}
        st.dataframe(shown, hide_index=True, key="bt_tally_table", column_config=pct)
        fig = go.Figure(go.Bar(
            x=shown["model"], y=shown["fooled_rate"], marker_color="#d9480f",
            error_y={"type": "data", "array": shown["ci_high"] - shown["fooled_rate"],
                     "arrayminus": shown["fooled_rate"] - shown["ci_low"]},
            customdata=np.stack([shown["fooled"], shown["trials"]], axis=1),
            hovertemplate="%{x}: fooled %{customdata[0]} of %{customdata[1]} (%{y:.1f}%)<extra></extra>"))
        fig.add_hline(y=50, line_dash="dash", line_color="gray", annotation_text="50%: indistinguishable")
        fig.update_layout(yaxis={"title": "fooled rate (%)", "range": [0, 100]}, xaxis_title="model",
                          title="How often people took the colorization for the real picture (95% Wilson CI)")
        st.plotly_chart(fig, key="bt_tally_chart")
    st.caption(f"Answers are kept in `{path}` (env `COLORIZE_BLIND_TEST_FILE`), shared by every session. "
               "A perfect colorizer fools people 50% of the time: they can only guess.")

    if not st.session_state.get("bt_confirm_reset"):
        st.button("Reset tallies…", key="bt_reset", on_click=_confirm, args=(True,))
        return
    total = int(pd.to_numeric(tallies["trials"]).sum()) if tallies is not None and not tallies.empty else 0
    st.warning(f"Delete all {total:,} answers of every model? This cannot be undone.", icon=":material/warning:")
    yes, no, _ = st.columns([1, 1, 3])
    yes.button("Yes, delete all answers", key="bt_reset_yes", type="primary", on_click=_reset)
    no.button("Cancel", key="bt_reset_no", on_click=_confirm, args=(False,))


st.title("Blind test")
st.caption("The colorization Turing test of Zhang et al. (2016) and Nazeri et al. (2018): one picture is a real "
           "test image, the other a model's colorization of its grayscale version, in random order. Click the one "
           "you think is real.")

if error := st.session_state.pop("bt_error", None):
    st.error(error, icon=":material/warning:")
feedback = st.session_state.pop("bt_feedback", None)
if feedback == "reset":
    st.success("All answers deleted.", icon=":material/delete:")
elif feedback is not None:
    fooled, model, real_side = feedback
    if fooled:
        st.warning(f"Fooled! The real picture was on the {real_side}; the other was colorized by `{model}`.",
                   icon=":material/theater_comedy:")
    else:
        st.success(f"Correct: the real picture was on the {real_side}; `{model}` did not fool you.",
                   icon=":material/check_circle:")

trial_section()
tally_section()
