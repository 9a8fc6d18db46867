"""The dashboard's plotly figures: training curves with their phases marked, and hue histograms with the hue range
picked on one. ``core`` hands over the data (long tables, phase spans); this module draws it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.runs import VAL_METRICS, loss_frame, phase_spans, val_frame
from core.splits import HUE_BINS

PHASE_COLOURS = ("rgba(99,110,250,0.08)", "rgba(239,85,59,0.10)", "rgba(0,204,150,0.10)", "rgba(171,99,250,0.10)")
PART_PATTERNS = {"train": "", "val": "/", "test": "."}


# --- training curves ---------------------------------------------------------------------------------
def _mark_phases(fig: go.Figure, spans: Sequence[Mapping]) -> None:
    """Shade each phase and name it above the panels (nothing for a single phase)."""
    if len(spans) < 2:
        return
    for i, span in enumerate(spans):
        fig.add_vrect(x0=span["start"], x1=span["end"], fillcolor=PHASE_COLOURS[i % len(PHASE_COLOURS)],
                      line_width=0, layer="below", row="all", col="all")
        if i:
            fig.add_vline(x=span["start"], line_dash="dash", line_color="grey", row="all", col="all")
        fig.add_annotation(x=(float(span["start"]) + float(span["end"])) / 2, y=1.0, xref="x", yref="paper",
                           text=f"<b>{span['phase']}</b>", showarrow=False, yanchor="bottom")


def _facet_figure(frame: pd.DataFrame, facet: str, title: str, spans: Sequence[Mapping],
                  markers: bool) -> go.Figure | None:
    """Lines of ``value`` against the step, one panel per value of ``facet``, phases shaded (None: no rows)."""
    if frame.empty:
        return None
    n = max(1, frame[facet].nunique())
    fig = px.line(frame, x="step", y="value", color=facet, facet_row=facet, markers=markers,
                  hover_data={"epoch": ":.2f", "phase": True}, height=max(260, 170 * n + 60))
    fig.update_yaxes(matches=None, title_text="")
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_layout(title=title, showlegend=False, margin={"t": 70, "r": 110})
    _mark_phases(fig, spans)
    return fig


def loss_figure(records: Sequence[Mapping]) -> go.Figure | None:
    """Curves of every logged loss against the step, one panel per loss, phases shaded (None: no records)."""
    frame = loss_frame(records)
    few = frame.empty or frame.groupby("loss").size().max() < 30  # short runs: show the points themselves
    return _facet_figure(frame, "loss", "Training losses", phase_spans(records), markers=bool(few))


def val_figure(records: Sequence[Mapping], metrics: Sequence[str] = VAL_METRICS) -> go.Figure | None:
    """Curves of the validation figures against the step, one panel per figure (None: no records)."""
    return _facet_figure(val_frame(records, metrics), "metric", "Validation", phase_spans(records), markers=True)


# --- several runs on shared axes (the Runs page) -----------------------------------------------------------------
RUN_COLOURS = px.colors.qualitative.Plotly
X_TITLES = {"step": "step", "epoch": "epoch", "time": "wall time (s)"}


def run_colours(runs: Sequence[str]) -> dict[str, str]:
    """One colour per run, in the order given (the same in every figure of a page)."""
    return {run: RUN_COLOURS[i % len(RUN_COLOURS)] for i, run in enumerate(runs)}


def overlay_figure(frame: pd.DataFrame, starts: pd.DataFrame, x: str = "step", title: str = "",
                   runs: Sequence[str] | None = None) -> go.Figure | None:
    """Curves of several runs (``core.run_table.overlay_frame``, maybe smoothed), one panel per metric on a shared
    x axis, a colour per run; the logged values faint behind smoothed ones; a dashed line in the run's colour
    where each of its phases after the first begins (``core.run_table.phase_starts``). None: no rows."""
    if frame.empty:
        return None
    order = list(runs) if runs is not None else list(dict.fromkeys(frame["run"]))
    colours = run_colours(order)
    metrics = list(dict.fromkeys(frame["metric"]))
    fig = make_subplots(rows=len(metrics), cols=1, shared_xaxes=True, subplot_titles=metrics,
                        vertical_spacing=min(0.08, 0.3 / max(1, len(metrics))))
    smoothed = bool((frame["value"] != frame["raw"]).any())
    shown_in_legend: set[str] = set()
    for row, metric in enumerate(metrics, start=1):
        for run in order:
            curve = frame[(frame["metric"] == metric) & (frame["run"] == run)]
            if curve.empty:
                continue
            colour = colours.get(run, "grey")
            mode = "lines+markers" if len(curve) < 30 else "lines"
            xs = curve["x"].tolist()  # plain lists: the page's figure data stays readable JSON
            if smoothed:
                fig.add_scatter(x=xs, y=curve["raw"].tolist(), mode=mode, name=run, legendgroup=run, showlegend=False,
                                opacity=0.25, line={"color": colour}, hoverinfo="skip", row=row, col=1)
            fig.add_scatter(
                x=xs, y=curve["value"].tolist(), mode=mode, name=run, legendgroup=run, line={"color": colour},
                showlegend=run not in shown_in_legend, row=row, col=1,
                customdata=curve[["step", "epoch", "phase", "raw"]].values.tolist(),
                hovertemplate=f"{run}<br>{metric} %{{y:.4g}} (logged %{{customdata[3]:.4g}})<br>step "
                              "%{customdata[0]}, epoch %{customdata[1]:.2f}, phase %{customdata[2]}<extra></extra>")
            shown_in_legend.add(run)
    for mark in starts.itertuples(index=False):
        if mark.run not in colours:
            continue
        for row in range(1, len(metrics) + 1):
            fig.add_vline(x=float(mark.x), line_dash="dash", line_width=1.2, line_color=colours[mark.run],
                          row=row, col=1)
        fig.add_annotation(x=float(mark.x), y=1.0, xref="x", yref="paper", yanchor="bottom", yshift=18,
                           showarrow=False, text=mark.phase, font={"color": colours[mark.run], "size": 11})
    fig.update_xaxes(title_text=X_TITLES.get(x, x), row=len(metrics), col=1)
    fig.update_layout(title=title, height=max(300, 210 * len(metrics) + 100), margin={"t": 95},
                      legend={"orientation": "h", "y": -0.12 if len(metrics) < 3 else -0.05, "x": 0},
                      hovermode="closest")
    return fig


# --- hue histograms ----------------------------------------------------------------------------------
def hue_histogram_figure(frame: pd.DataFrame, title: str = "", height: int = 340) -> go.Figure:
    """Grouped bars of each part's hue shares, every bar in its own hue; parts told apart by fill pattern."""
    fig = go.Figure()
    width = float(frame["hue_hi"].iloc[0] - frame["hue_lo"].iloc[0]) if len(frame) else 1.0 / HUE_BINS
    for part, group in frame.groupby("part", sort=False):
        fig.add_bar(
            x=group["hue_mid"], y=group["share"], name=str(part), width=width * 0.45,
            marker={"color": list(group["colour"]), "line": {"color": "#333333", "width": 0.6},
                    "pattern": {"shape": PART_PATTERNS.get(str(part), "x"), "fgcolor": "#333333", "size": 5}},
            customdata=np.stack([group["count"], group["hue_lo"], group["hue_hi"]], axis=1),
            hovertemplate=f"{part}<br>hue %{{customdata[1]:.3f}}–%{{customdata[2]:.3f}}<br>"
                          "%{customdata[0]} images (%{y:.1f}%)<extra></extra>",
        )
    fig.update_layout(
        # No drag mode of its own: Streamlit then lets a click select a bar, and the
        # toolbar's Box Select drags a range (in box mode Streamlit turns click-selection off).
        title={"text": title}, barmode="group", bargap=0.05, height=height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right"},
        xaxis={"title": "mean hue", "range": [0.0, 1.0], "fixedrange": True},
        yaxis={"title": "share of part (%)", "fixedrange": True},
    )
    return fig


HISTOGRAM_CONFIG = {"displayModeBar": True, "modeBarButtonsToRemove": ["zoom2d", "pan2d", "zoomIn2d", "zoomOut2d",
                                                                      "autoScale2d", "resetScale2d", "lasso2d"]}


def ks_title(kind: str, summary: Mapping[str, Any]) -> str:
    """A histogram title: the split kind with its train-vs-validation KS statistic."""
    ks = summary.get("ks_hue", float("nan"))
    ks_text = "n/a" if ks is None or not np.isfinite(ks) else f"{ks:.4f}"
    return f"{kind.capitalize()} split — hue KS {ks_text} (train vs val)"


def selected_hue_range(event: Any, bins: int = HUE_BINS) -> tuple[float, float] | None:
    """The hue range picked on a hue histogram (a Streamlit plotly selection event), or None when nothing is.

    Selected bars (points) give the span of their bins; a box with no bar inside gives its own x range.
    """
    selection = _get(event, "selection")
    if selection is None:
        return None
    width = 1.0 / bins
    xs = [float(p["x"]) for p in (_get(selection, "points") or []) if _get(p, "x") is not None]
    if xs:
        lo = np.floor(min(xs) / width + 1e-9) * width
        hi = np.floor(max(xs) / width + 1e-9) * width + width
        return float(np.clip(lo, 0.0, 1.0)), float(np.clip(hi, 0.0, 1.0))
    box_xs = [float(x) for box in (_get(selection, "box") or []) for x in (_get(box, "x") or [])]
    if len(box_xs) >= 2:
        lo, hi = float(np.clip(min(box_xs), 0.0, 1.0)), float(np.clip(max(box_xs), 0.0, 1.0))
        if hi > lo:
            return lo, hi
    return None


def _get(obj: Any, key: str) -> Any:
    """``obj[key]`` for dicts and Streamlit's attribute dicts alike; None when missing."""
    if obj is None:
        return None
    try:
        return obj[key]
    except (KeyError, TypeError, AttributeError):
        return getattr(obj, key, None)


# --- leaderboard groups ------------------------------------------------------------------------------
def group_bars(frame: pd.DataFrame, y: str, title: str, order: Sequence[str], x_title: str,
               zero_line: bool = False, y_range: tuple[float, float] | None = None, y_title: str = "") -> alt.Chart:
    """Grouped bars of ``core.explore.group_table`` rows: one colour per model (in ``order``), groups along x;
    ``zero_line`` draws the baseline's level, ``y_range`` zooms the axis (bars clipped to it).

    Vega-Lite (Altair, which Streamlit bundles) rather than plotly: the Leaderboard is often the first page a
    visitor opens, and this chart's first render in a new tab is the cheaper of the two."""
    models = [m for m in order if m in set(frame["model"])]
    groups = list(dict.fromkeys(frame["group"]))
    colours = run_colours(models)
    scale = alt.Scale(domain=list(y_range), zero=False) if y_range is not None else alt.Scale(zero=True)
    bars = alt.Chart(frame[["model", "group", "n_images", y]]).mark_bar(clip=True).encode(
        x=alt.X("group:N", sort=groups, title=x_title, axis=alt.Axis(labelAngle=-30)),
        xOffset=alt.XOffset("model:N", sort=models),
        y=alt.Y(f"{y}:Q", title=y_title or y, scale=scale),
        color=alt.Color("model:N", sort=models, legend=alt.Legend(title=None, orient="top"),
                        scale=alt.Scale(domain=models, range=[colours[m] for m in models])),
        tooltip=["model:N", alt.Tooltip("group:N", title=x_title), alt.Tooltip(f"{y}:Q", format=".3f"),
                 "n_images:Q"])
    chart = bars
    if zero_line:
        chart = bars + alt.Chart(pd.DataFrame({"zero": [0.0]})).mark_rule(color="#333333", strokeWidth=1.5).encode(
            y="zero:Q")
    return chart.properties(title=title, height=380)
