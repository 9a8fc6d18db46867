"""The Runs page's data: every run with its settings and best validation figures, the settings that differ,
filters and text search, curves of several runs in one long table (x: step, epoch or wall time; TensorBoard's
smoothing), where their phases start, and their sample grids by epoch.

Everything is read from the run folders (``core.runs``) and tags (``core.tags``) and returned as plain data;
the dashboard lays it out and draws it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from core.config import Option, common_options
from core.runs import (
    STEP_META,
    RunDir,
    default_runs_dir,
    find_runs,
    run_config,
    run_metrics,
    run_state,
)
from core.tags import ARCHIVE, TAGS_NAME, read_tags

RUN_COLUMNS = ("run", "state", "method", "tags", "steps", "total_steps", "epochs_done", "wall_s", "started")
# (column, validation figure, how the best is chosen): the highest, the lowest, or the one closest to 1
FIGURES = (
    ("best_auc_ab", "auc_ab", "max"),
    ("lowest_mae_rgb", "mae_rgb", "min"),
    ("ratio_nearest_1", "colorfulness_ratio", "near_one"),
    ("best_accuracy", "accuracy", "max"),
)
FIGURE_COLUMNS = (*(c for c, _, _ in FIGURES), "ratio_at_best", "best_step")
XAXES = ("step", "epoch", "time")
KINDS = ("loss", "val")
OVERLAY_COLUMNS = ("run", "metric", "x", "value", "raw", "step", "epoch", "time_s", "phase")
VAL_META = (*STEP_META, "score")
SAMPLE_NAME = re.compile(r"^(?:epoch_(?P<epoch>\d+)|(?P<phase>.+)_step_(?P<step>\d+))\.png$")


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def tag_list(cell: object) -> list[str]:
    """The tags of a table cell (``"archive, keep"``) as a list."""
    return [t for t in str(cell or "").split(", ") if t]


# --- one run's row ---------------------------------------------------------------------------------------------
def _options() -> dict[str, Option]:
    """Every known option by name: the common settings and each method's own."""
    from core.methods import all_options

    return {o.name: o for o in common_options()} | {name: opt for name, (opt, _) in all_options().items()}


def _setting_value(value: object, option: Option | None) -> object:
    """A setting as a table cell: the option's type where it is known (command-line strings of a job that has not
    saved its config yet), lists joined with spaces."""
    if option is not None and isinstance(value, str):
        try:
            value = option.check(value)
        except ValueError:
            pass
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return value


def run_start(run: RunDir, records: Sequence[Mapping] | None = None) -> float | None:
    """When the run started (Unix time): its status's ``started``, or its first record's time when that is earlier
    (a resumed job restarts the clock of its status)."""
    records = run_metrics(run) if records is None else records
    times = [float(r["time"]) for r in records if _finite(r.get("time"))]
    started = run.status().get("started")
    candidates = [float(started)] if _finite(started) else []
    if times:
        candidates.append(min(times))
    return min(candidates) if candidates else None


def _wall_s(status: Mapping, records: Sequence[Mapping], start: float | None) -> float | None:
    """Seconds from the start to the end (``finished``), else to the last heart-beat or record."""
    if start is None:
        return None
    ends = [float(status[k]) for k in ("finished", "heartbeat") if _finite(status.get(k))]
    end = ends[0] if ends else None
    times = [float(r["time"]) for r in records if _finite(r.get("time"))]
    if end is None and times:
        end = max(times)
    return max(0.0, end - start) if end is not None else None


def best_figures(records: Sequence[Mapping], best_step: object = None) -> dict[str, float | None]:
    """The best validation figures of a run: highest auc_ab and accuracy, lowest mae_rgb, colorfulness_ratio closest
    to 1 and its value at ``best_step`` (the step of best.pt)."""
    vals = [r for r in records if r.get("type") == "val"]
    out: dict[str, float | None] = {}
    for column, metric, how in FIGURES:
        values = [float(r[metric]) for r in vals if _finite(r.get(metric))]
        if not values:
            out[column] = None
        elif how == "max":
            out[column] = max(values)
        elif how == "min":
            out[column] = min(values)
        else:
            out[column] = min(values, key=lambda v: abs(v - 1.0))
    at_best = [r for r in vals if _finite(best_step) and int(r.get("step", -1)) == int(best_step)]
    ratio = at_best[-1].get("colorfulness_ratio") if at_best else None
    out["ratio_at_best"] = float(ratio) if _finite(ratio) else None
    out["best_step"] = int(best_step) if _finite(best_step) and int(best_step) >= 0 else None
    return out


def run_summary(run: RunDir, options: Mapping[str, Option] | None = None) -> dict[str, object]:
    """One row of the comparison table: the run's state, method, tags, progress, wall time, best validation figures
    and every setting of its config (``model`` is the ``method`` column)."""
    options = _options() if options is None else options
    status = run.live_status()
    records = run_metrics(run)
    cfg = run_config(run)
    start = run_start(run, records)
    started = status.get("started")
    row: dict[str, object] = {
        "run": run.id, "state": run_state(run, status), "method": str(cfg.get("model") or status.get("model") or ""),
        "tags": ", ".join(read_tags(run)),
        "steps": int(status["step"]) if _finite(status.get("step")) else None,
        "total_steps": int(status["total_steps"]) if _finite(status.get("total_steps")) else None,
        "epochs_done": float(status["epoch"]) if _finite(status.get("epoch")) else None,
        "wall_s": _wall_s(status, records, start),
        "started": datetime.fromtimestamp(float(started)) if _finite(started) else None,
    }
    row |= best_figures(records, status.get("best_step"))
    for key, value in cfg.items():
        if key in ("model", "out", "resume", "quiet"):
            continue
        column = key if key not in row else f"setting_{key}"
        row[column] = _setting_value(value, options.get(key))
    return row


def _arrow_safe(column: pd.Series) -> pd.Series:
    """A column of one kind of value (text when its cells mix kinds), so tables convert to Arrow."""
    if column.dtype != object:
        return column
    kinds = {type(v) for v in column if v is not None and not (isinstance(v, float) and math.isnan(v))}
    if len(kinds) <= 1 or kinds <= {int, float}:
        return column
    return column.map(lambda v: None if v is None else str(v))


def comparison_table(runs: Sequence[RunDir] | None = None, runs_dir: str | Path | None = None) -> pd.DataFrame:
    """Every run (newest first) with its state, method, tags, steps, wall time, best validation figures, then its
    settings (the common ones in TrainConfig's order, then the methods' own, as they first appear)."""
    runs = find_runs(runs_dir) if runs is None else runs
    options = _options()
    rows = [run_summary(r, options) for r in runs]
    fixed = [*RUN_COLUMNS, *FIGURE_COLUMNS]
    settings: list[str] = []
    for row in rows:
        settings += [k for k in row if k not in fixed and k not in settings]
    table = pd.DataFrame(rows, columns=[*fixed, *settings])
    counts = ("steps", "total_steps", "best_step")
    numbers = [c for c in (*FIGURE_COLUMNS, "wall_s", "epochs_done") if c not in counts]
    table = table.astype({**{c: "Int64" for c in counts}, **{c: "float64" for c in numbers}})
    return table.apply(_arrow_safe) if len(table) else table


def setting_columns(table: pd.DataFrame) -> list[str]:
    """The columns of a comparison table that hold settings (from config.json)."""
    fixed = {*RUN_COLUMNS, *FIGURE_COLUMNS}
    return [c for c in table.columns if c not in fixed]


def _cell_key(value: object) -> str:
    """A setting's value for telling values apart (missing values are all alike)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value)


def differing_settings(table: pd.DataFrame) -> list[str]:
    """The settings whose values are not the same in every row of ``table`` (none for fewer than two rows)."""
    if len(table) < 2:
        return []
    return [c for c in setting_columns(table) if table[c].map(_cell_key).nunique() > 1]


def all_tags(table: pd.DataFrame) -> list[str]:
    """Every tag carried by a run of the table, sorted."""
    return sorted({t for cell in table.get("tags", []) for t in tag_list(cell)})


def _row_text(row: pd.Series, settings: Sequence[str]) -> str:
    """What the text search looks through: the run's name, method, state, tags and ``setting=value`` pairs (the
    settings the run has)."""
    parts = [str(row["run"]), str(row["method"]), str(row["state"]), str(row["tags"])]
    parts += [f"{c}={row[c]}" for c in settings if _cell_key(row[c]) != ""]
    return " ".join(parts).lower()


def filter_runs(table: pd.DataFrame, methods: Iterable[str] = (), states: Iterable[str] = (),
                tags: Iterable[str] = (), text: str = "", show_archived: bool = True) -> pd.DataFrame:
    """The rows of ``table`` whose method and state are among those given (none given: any), that carry one of
    ``tags`` (none given: any), whose name or settings contain every word of ``text`` (case-insensitive;
    ``width=8`` matches a setting), and, unless ``show_archived``, that are not tagged ``archive``."""
    methods, states, tags = set(methods), set(states), set(tags)
    keep = pd.Series(True, index=table.index)
    if methods:
        keep &= table["method"].isin(methods)
    if states:
        keep &= table["state"].isin(states)
    run_tags = table["tags"].map(lambda c: set(tag_list(c)))
    if tags:
        keep &= run_tags.map(lambda t: bool(t & tags))
    if not show_archived:
        keep &= ~run_tags.map(lambda t: ARCHIVE in t)
    words = str(text).lower().split()
    if words:
        settings = setting_columns(table)
        haystack = table.apply(lambda row: _row_text(row, settings), axis=1)
        keep &= haystack.map(lambda h: all(w in h for w in words))
    return table[keep.astype(bool)]


def sort_runs(table: pd.DataFrame, by: str, ascending: bool = True) -> pd.DataFrame:
    """``table`` sorted by one column, missing values last; KeyError for a column it does not have."""
    if by not in table.columns:
        raise KeyError(f"no column {by!r} to sort by")
    column = table[by]
    if column.dtype == object:
        return table.sort_values(by, ascending=ascending, na_position="last",
                                 key=lambda s: s.map(lambda v: None if v is None else str(v).lower()))
    return table.sort_values(by, ascending=ascending, na_position="last", kind="stable")


# --- curves of several runs ------------------------------------------------------------------------------------
def curve_names(runs: Sequence[RunDir], kind: str) -> list[str]:
    """The losses (``kind="loss"``) or validation figures (``"val"``) logged by any of ``runs``, first seen first."""
    record_type = _record_type(kind)
    meta = STEP_META if kind == "loss" else VAL_META
    names: list[str] = []
    for run in runs:
        for r in run_metrics(run):
            if r.get("type") == record_type:
                names += [k for k, v in r.items() if k not in meta and k not in names and _finite(v)]
    return names


def default_curves(runs: Sequence[RunDir], kind: str, n: int = 4, preferred: Sequence[str] = ()) -> list[str]:
    """The curves to draw first: those of ``preferred`` that are logged (at most ``n``), plus the first curve of any
    run that has none of them; without a preferred one logged, up to ``n`` taken from each run in turn (its first,
    then its second, ...), so every run has at least one of its own among them."""
    per_run = [curve_names([r], kind) for r in runs]
    logged = {c for own in per_run for c in own}
    chosen = [p for p in dict.fromkeys(preferred) if p in logged][:n]
    if chosen:
        for own in per_run:
            if own and not set(own) & set(chosen):
                chosen.append(own[0])
        return chosen
    for i in range(max((len(own) for own in per_run), default=0)):
        for own in per_run:
            if len(chosen) < n and i < len(own) and own[i] not in chosen:
                chosen.append(own[i])
    return chosen


def _record_type(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return "step" if kind == "loss" else kind


def _check_x(x: str) -> str:
    if x not in XAXES:
        raise ValueError(f"the x axis must be one of {', '.join(XAXES)}, not {x!r}")
    return x


def _x_value(record: Mapping, x: str, start: float | None) -> float:
    """A record's place on the x axis: its step, its epoch, or seconds since the run's start (NaN when unknown)."""
    if x == "step":
        return float(record["step"])
    if x == "epoch":
        return float(record["epoch"]) if _finite(record.get("epoch")) else math.nan
    t = record.get("time")
    return float(t) - start if _finite(t) and start is not None else math.nan


def overlay_frame(runs: Sequence[RunDir], kind: str = "loss", x: str = "step",
                  metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """The curves of several runs in long form: run, metric, x (the chosen axis), value, raw (= value until
    smoothed), step, epoch, time_s (seconds since the run's start) and phase; only ``metrics`` when given.
    Rows without a place on the chosen axis (no time recorded) are left out."""
    record_type, x = _record_type(kind), _check_x(x)
    meta = STEP_META if kind == "loss" else VAL_META
    wanted = None if metrics is None else set(metrics)
    rows = []
    for run in runs:
        records = run_metrics(run)
        start = run_start(run, records)
        for r in sorted((r for r in records if r.get("type") == record_type and "step" in r),
                        key=lambda r: int(r["step"])):
            place = _x_value(r, x, start)
            if not math.isfinite(place):
                continue
            t = r.get("time")
            base = {"run": run.id, "x": place, "step": int(r["step"]),
                    "epoch": float(r["epoch"]) if _finite(r.get("epoch")) else math.nan,
                    "time_s": float(t) - start if _finite(t) and start is not None else math.nan,
                    "phase": str(r.get("phase", ""))}
            for k, v in r.items():
                if k in meta or not _finite(v) or (wanted is not None and k not in wanted):
                    continue
                rows.append(base | {"metric": k, "value": float(v), "raw": float(v)})
    return pd.DataFrame(rows, columns=list(OVERLAY_COLUMNS))


def ema(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average with weight ``weight`` (0: none, up to but not 1),
    de-biased so the first points are not pulled towards zero; non-finite values pass through unchanged."""
    if not 0.0 <= float(weight) < 1.0:
        raise ValueError(f"the smoothing weight must be at least 0 and below 1, not {weight!r}")
    out, last, n = [], 0.0, 0
    for v in values:
        v = float(v)
        if not math.isfinite(v):
            out.append(v)
            continue
        n += 1
        last = last * weight + (1.0 - weight) * v
        out.append(last / (1.0 - weight**n) if weight > 0 else v)
    return out


def smooth_frame(frame: pd.DataFrame, weight: float) -> pd.DataFrame:
    """An overlay frame with ``value`` smoothed (:func:`ema`) along each curve in the frame's order (by step, as
    :func:`overlay_frame` gives it), separately per run, metric and phase (a new phase's losses measure something
    else); ``raw`` keeps the logged values."""
    out = frame.copy()
    if out.empty or weight == 0:
        ema([], weight)  # checks the weight
        return out
    curves = out.groupby(["run", "metric", "phase"], sort=False)["raw"]
    out["value"] = curves.transform(lambda s: pd.Series(ema(s.tolist(), weight), index=s.index))
    return out


def phase_starts(runs: Sequence[RunDir], x: str = "step") -> pd.DataFrame:
    """Where each run's phases after the first begin (run, phase, x, step): at the last record of the phase before,
    as ``core.runs.phase_spans`` counts it, placed on the chosen axis. No rows for one-phase runs."""
    x = _check_x(x)
    rows = []
    for run in runs:
        records = run_metrics(run)
        start = run_start(run, records)
        ordered = sorted((r for r in records if "step" in r and r.get("phase")), key=lambda r: int(r["step"]))
        for before, after in zip(ordered, ordered[1:]):
            if after["phase"] != before["phase"]:
                place = _x_value(before, x, start)
                if math.isfinite(place):
                    rows.append({"run": run.id, "phase": str(after["phase"]), "x": place, "step": int(before["step"])})
    return pd.DataFrame(rows, columns=["run", "phase", "x", "step"])


# --- sample grids ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sample:
    """One sample grid of a run: its file, the step and epoch it was written at, and its phase."""

    path: Path
    step: int | None
    epoch: float | None
    phase: str


def steps_per_epoch(run: RunDir, records: Sequence[Mapping] | None = None) -> float | None:
    """The run's steps per epoch: from its status, else from a record's step and epoch."""
    spe = run.status().get("steps_per_epoch")
    if _finite(spe) and float(spe) > 0:
        return float(spe)
    for r in run_metrics(run) if records is None else records:
        if _finite(r.get("epoch")) and float(r["epoch"]) > 0 and _finite(r.get("step")):
            return float(r["step"]) / float(r["epoch"])
    return None


def sample_files(run: RunDir) -> list[Sample]:
    """The run's sample grids (``samples/epoch_NNN.png`` and ``samples/<phase>_step_NNNNNN.png``), by epoch."""
    if not run.samples.is_dir():
        return []
    spe = steps_per_epoch(run)
    out = []
    for path in run.samples.glob("*.png"):
        m = SAMPLE_NAME.match(path.name)
        if not m:
            continue
        if m["epoch"] is not None:
            epoch = float(m["epoch"])
            out.append(Sample(path, int(round(epoch * spe)) if spe else None, epoch, "train"))
        else:
            step = int(m["step"])
            out.append(Sample(path, step, step / spe if spe else None, m["phase"]))
    return sorted(out, key=lambda s: (math.inf if s.epoch is None else s.epoch, s.step or 0, s.path.name))


def nearest_sample(run: RunDir, epoch: float) -> Sample | None:
    """The run's sample grid nearest to ``epoch`` (the earlier of two as near); None when it has none."""
    dated = [s for s in sample_files(run) if s.epoch is not None]
    if not dated:
        return None
    return min(dated, key=lambda s: abs(s.epoch - float(epoch)))


def sample_epochs(runs: Sequence[RunDir]) -> list[float]:
    """Every epoch at which one of ``runs`` has a sample grid, sorted."""
    return sorted({s.epoch for run in runs for s in sample_files(run) if s.epoch is not None})


# --- change detection --------------------------------------------------------------------------------------------
def runs_signature(runs_dir: str | Path | None = None) -> tuple:
    """What changes when any run changes (its config, status, metrics or tags): a cache key for the table."""
    out = []
    for run in find_runs(runs_dir or default_runs_dir()):
        stamps = []
        for f in (run.config, run.status_file, run.metrics_file, run.path / TAGS_NAME):
            try:
                st = f.stat()
                stamps.append((st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append(None)
        out.append((run.id, tuple(stamps)))
    return tuple(out)
