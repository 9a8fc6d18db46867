"""The dashboard's display text: durations, a run's status as short fields, the runs table as shown, method names.

``core`` returns numbers and states; the pages show them through these."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
from pandas.io.formats.style import Styler

from core.runs import is_active, state_label


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def format_duration(seconds: float | None) -> str:
    """``1h 02m``, ``3m 20s``, ``45s``; blank for no value."""
    if not _finite(seconds):
        return ""
    s = max(0, int(round(float(seconds))))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def eta_text(status: Mapping) -> str:
    """The ETA as shown: ``preparing data`` until the job has loaded its data, ``measuring`` until it has timed
    its first steps, then the duration; ``—`` for a job that is not active."""
    if not is_active(status):
        return "—"
    if status.get("state") == "starting" or status.get("phase") == "data":
        return "preparing data"
    if not _finite(status.get("eta_s")):
        return "measuring"
    return format_duration(status.get("eta_s"))


def status_fields(status: Mapping) -> dict[str, str]:
    """The selected run's status as short display strings: state, phase, epoch, step, images/s, ETA."""
    spe = status.get("steps_per_epoch")
    total = status.get("total_steps")
    epoch = status.get("epoch")
    epochs = float(total) / float(spe) if _finite(total) and _finite(spe) and float(spe) > 0 else None
    step = status.get("step")
    return {
        "state": state_label(status),
        "phase": str(status.get("phase") or "—"),
        "epoch": (f"{float(epoch):.2f}" if _finite(epoch) else "—") + (f" / {epochs:.4g}" if epochs else ""),
        "step": (str(int(step)) if _finite(step) else "—") + (f" / {int(total)}" if _finite(total) else ""),
        "images/s": f"{float(status['images_per_s']):,.0f}" if _finite(status.get("images_per_s")) else "—",
        "ETA": eta_text(status),
    }


def hidden_runs_note(n_hidden: int) -> str:
    """What Home and the Blind test say about the completed runs they leave out (blank when none are)."""
    if n_hidden <= 0:
        return ""
    runs = "1 completed run is" if n_hidden == 1 else f"{n_hidden} completed runs are"
    return (f"{runs} not shown: only shipped models and runs tagged `keep` are, unless **Show all runs** is on "
            "(tag runs on the **Runs** page).")


DIFFERS_STYLE = "background-color: rgba(255, 196, 0, 0.22)"


def highlight_columns(frame: pd.DataFrame, columns: Sequence[str], style: str = DIFFERS_STYLE) -> Styler:
    """``frame`` as a Styler with every cell of ``columns`` highlighted (the Runs page's differing settings)."""
    styler = frame.style
    shown = [c for c in columns if c in frame.columns]
    if shown:
        styler = styler.map(lambda _: style, subset=shown)
    return styler


def runs_display(table: pd.DataFrame, statuses: Mapping[str, Mapping] | None = None) -> pd.DataFrame:
    """``core.runs.runs_table`` as the Train page shows it: the ETA as text (``eta``; blank when not running),
    worded as the run panel words it (:func:`eta_text`) when the statuses the table was built from are given."""
    shown = table.copy()
    if statuses is None:
        etas = [format_duration(s) for s in table["eta_s"]]
    else:
        etas = [eta_text(statuses[r]).replace("—", "") if r in statuses else format_duration(s)
                for r, s in zip(table["run"], table["eta_s"])]
    shown.insert(shown.columns.get_loc("eta_s"), "eta", etas)
    return shown.drop(columns="eta_s")
