"""Training jobs as the dashboard sees them: the arguments of a new run, the runs table, curves, safe deletion.

Everything here reads and writes the run directories of ``core.runs``; nothing keeps state in memory, so a job
stays visible after a page reload or a dashboard restart.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import pandas as pd

from core.config import ConfigError, Option, TrainConfig
from core.methods import get_method, method_names
from core.runs import ACTIVE, RunDir, default_runs_dir

VAL_METRICS = ("auc_ab", "colorfulness_ratio", "val_loss", "accuracy")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
RUNS_COLUMNS = ("run", "state", "progress", "eta", "method", "split", "started", "best_metric", "best_value")
STEP_META = ("type", "step", "epoch", "phase", "time")
PHASE_COLOURS = ("rgba(99,110,250,0.08)", "rgba(239,85,59,0.10)", "rgba(0,204,150,0.10)", "rgba(171,99,250,0.10)")


class JobError(ValueError):
    """A job request or action that cannot be carried out; the message says what to do."""


# --- a new run ---------------------------------------------------------------------------------------
def default_run_name(method: str, now: datetime | None = None) -> str:
    """``<method>-<YYYYmmdd-HHMMSS>``."""
    return f"{method}-{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}"


def method_default_lr(method: str) -> float:
    """The learning rate a method uses when none is given."""
    return float(get_method(method).default_lr)


def parse_lr(text: str | float | None) -> float | None:
    """A learning rate from a form field: blank means the method's default (None)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        lr = float(text)
    except ValueError:
        raise JobError(f"learning rate {text!r} is not a number; write e.g. 2e-4, or leave it blank") from None
    if not math.isfinite(lr) or lr <= 0:
        raise JobError(f"learning rate must be a positive number, not {text!r}")
    return lr


@dataclass
class TrainForm:
    """The values of the Train page's form (0 for a limit means no limit; blank name means a default one);
    ``options`` holds the chosen method's own settings by name (``Method.options``), as the form shows them."""

    method: str = "unet"
    source: str = "sample"
    split: str = "hue"
    epochs: int = 5
    width: int = 32
    batch_size: int = 128
    lr: str = ""
    lr_decay_epochs: float = 0.0
    limit: int = 0
    val_limit: int = 0
    seed: int = 0
    device: str = "auto"
    name: str = ""
    options: dict[str, object] = field(default_factory=dict)


def method_form_options(method: str) -> list[Option]:
    """The options the Train form shows for ``method``: its own, as the registry declares them."""
    return list(get_method(method).options)


def build_train_args(form: TrainForm, runs_dir: str | Path | None = None, now: datetime | None = None,
                     ) -> dict[str, object]:
    """The ``core.train`` options for a form, with ``out`` a new directory in ``runs_dir``; checks every value."""
    if form.method not in method_names():
        raise JobError(f"unknown method {form.method!r}; choose one of {', '.join(method_names())}")
    if form.split not in ("hue", "random"):
        raise JobError(f"unknown split {form.split!r}; choose hue or random")
    if form.device not in ("auto", "cpu", "cuda"):
        raise JobError(f"unknown device {form.device!r}; choose auto, cpu or cuda")
    source = form.source.strip()
    if not source:
        raise JobError("the data source is empty; write sample, cifar10, or a folder/archive path")
    for label, value, low in (("epochs", form.epochs, 1), ("width", form.width, 1), ("batch size", form.batch_size, 1),
                              ("image limit", form.limit, 0), ("validation limit", form.val_limit, 0),
                              ("seed", form.seed, 0)):
        if int(value) < low:
            raise JobError(f"{label} must be at least {low}, not {value}")
    lr = parse_lr(form.lr)
    if float(form.lr_decay_epochs) < 0:
        raise JobError(f"learning-rate decay epochs must not be negative, not {form.lr_decay_epochs}")
    own = {o.name: o for o in method_form_options(form.method)}
    unknown = sorted(set(form.options) - set(own))
    if unknown:
        raise JobError(f"{unknown[0]!r} is not an option of {form.method}")
    method_args: dict[str, object] = {}
    for name, value in form.options.items():
        try:
            method_args[name] = own[name].check(value)
        except ConfigError as e:
            raise JobError(f"{own[name].title}: {e}") from None
    root = Path(runs_dir) if runs_dir else default_runs_dir()
    name = form.name.strip()
    if not name:  # a default name never collides: a second run in the same second gets a suffix
        base = name = default_run_name(form.method, now)
        for i in range(2, 1000):
            if not (root / name).exists():
                break
            name = f"{base}-{i}"
    if not NAME_PATTERN.match(name):
        raise JobError(f"run name {name!r} may hold only letters, digits, '.', '_' and '-' (no spaces or '/')")
    out = root / name
    if out.exists():
        raise JobError(f"a run named {name!r} already exists in {root}; choose another name")
    args: dict[str, object] = {
        "model": form.method, "source": source, "split": form.split, "epochs": int(form.epochs),
        "width": int(form.width), "batch_size": int(form.batch_size), "lr": lr,
        "lr_decay_epochs": float(form.lr_decay_epochs),
        "limit": int(form.limit) or None, "val_limit": int(form.val_limit) or None, "seed": int(form.seed),
        "device": form.device,
    }
    return args | method_args | {"out": str(out), "quiet": True}


def resume_args(run: RunDir) -> dict[str, object]:
    """The options that continue a cancelled or failed run from its last checkpoint."""
    state = run.live_status().get("state")
    if state not in ("cancelled", "failed"):
        raise JobError(f"only a cancelled or failed run can be resumed; {run.id} is {state or 'unknown'}")
    if not run.exists():
        raise JobError(f"{run.id} stopped before it saved its configuration; start a new run instead")
    return {"out": str(run.path), "resume": True, "quiet": True}


# --- listing runs ------------------------------------------------------------------------------------
def find_runs(runs_dir: str | Path | None = None) -> list[RunDir]:
    """Run directories (with a config or a status: a job just started has only the status), newest first."""
    root = Path(runs_dir) if runs_dir else default_runs_dir()
    if not root.is_dir():
        return []
    runs = [RunDir(p) for p in root.iterdir() if p.is_dir() and ((p / "config.json").is_file()
                                                                or (p / "status.json").is_file())]
    return sorted(runs, key=_started, reverse=True)


def _started(run: RunDir) -> float:
    started = run.status().get("started")
    if isinstance(started, (int, float)):
        return float(started)
    for f in (run.config, run.status_file):
        if f.is_file():
            return f.stat().st_mtime
    return 0.0


def run_config(run: RunDir) -> dict:
    """The run's options: config.json, else those of the command that started it (a job not yet reporting)."""
    if run.config.is_file():
        try:
            return TrainConfig.load(run.config).to_dict()
        except (OSError, ValueError, TypeError):
            pass
    return command_options(run.status().get("command") or [])


def command_options(cmd: Sequence[str]) -> dict[str, object]:
    """``--key value`` pairs of a ``core.train`` command as a dict (bare switches become True)."""
    out: dict[str, object] = {}
    items = list(cmd)
    for i, item in enumerate(items):
        if isinstance(item, str) and item.startswith("--"):
            nxt = items[i + 1] if i + 1 < len(items) else None
            value: object = True if nxt is None or str(nxt).startswith("--") else nxt
            out[item[2:].replace("-", "_")] = value
    return out


@lru_cache(maxsize=256)
def _read_metrics(path: str, _mtime_ns: int, _size: int) -> tuple[dict, ...]:
    return tuple(RunDir(Path(path)).metrics())


def run_metrics(run: RunDir) -> list[dict]:
    """metrics.jsonl records, re-read only when the file changed."""
    try:
        st = run.metrics_file.stat()
    except OSError:
        return []
    return list(_read_metrics(str(run.path), st.st_mtime_ns, st.st_size))


def key_metric(method: str) -> str:
    """The validation figure that summarises a run: accuracy for the classifier, AuC of ab for colorizers."""
    try:
        return get_method(method).key_metric
    except KeyError:
        return "auc_ab"


def best_validation(records: Sequence[Mapping], metric: str) -> float | None:
    """The highest value of ``metric`` over the validation records (None before the first validation)."""
    values = [float(r[metric]) for r in records if r.get("type") == "val" and _finite(r.get(metric))]
    return max(values) if values else None


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def progress_fraction(status: Mapping) -> float:
    """Share of the run's steps done, 0..1 (1 for a completed run)."""
    if status.get("state") == "completed":
        return 1.0
    step, total = status.get("step"), status.get("total_steps")
    if _finite(step) and _finite(total) and float(total) > 0:
        return max(0.0, min(1.0, float(step) / float(total)))
    return 0.0


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


def run_row(run: RunDir) -> dict[str, object]:
    """One row of the runs table."""
    status = run.live_status()
    cfg = run_config(run)
    method = str(cfg.get("model") or status.get("model") or "")
    metric = key_metric(method)
    best = best_validation(run_metrics(run), metric) if method else None
    started = status.get("started")
    state = status.get("state") or ("unknown" if run.exists() else "starting")
    return {
        "run": run.id, "state": state, "progress": round(100.0 * progress_fraction(status), 1),
        "eta": format_duration(status.get("eta_s")) if state in ACTIVE else "",
        "method": method, "split": str(cfg.get("split") or ""),
        "started": datetime.fromtimestamp(float(started)) if _finite(started) else None,
        "best_metric": metric if best is not None else "", "best_value": best,
    }


def runs_table(runs: Sequence[RunDir] | None = None, runs_dir: str | Path | None = None) -> pd.DataFrame:
    """The runs table: state, progress %, ETA, method, split, started time and best validation figure."""
    runs = find_runs(runs_dir) if runs is None else runs
    return pd.DataFrame([run_row(r) for r in runs], columns=list(RUNS_COLUMNS))


def is_active(status: Mapping) -> bool:
    return status.get("state") in ACTIVE


# --- curves ------------------------------------------------------------------------------------------
def loss_frame(records: Sequence[Mapping]) -> pd.DataFrame:
    """Step records in long form: step, epoch, phase, loss, value."""
    rows = [{"step": int(r["step"]), "epoch": float(r.get("epoch", math.nan)), "phase": str(r.get("phase", "")),
             "loss": k, "value": float(v)}
            for r in records if r.get("type") == "step" and "step" in r
            for k, v in r.items() if k not in STEP_META and _finite(v)]
    return pd.DataFrame(rows, columns=["step", "epoch", "phase", "loss", "value"])


def val_frame(records: Sequence[Mapping], metrics: Sequence[str] = VAL_METRICS) -> pd.DataFrame:
    """Validation records in long form: step, epoch, phase, metric, value (only ``metrics``)."""
    rows = [{"step": int(r["step"]), "epoch": float(r.get("epoch", math.nan)), "phase": str(r.get("phase", "")),
             "metric": k, "value": float(r[k])}
            for r in records if r.get("type") == "val" and "step" in r
            for k in metrics if _finite(r.get(k))]
    return pd.DataFrame(rows, columns=["step", "epoch", "phase", "metric", "value"])


def phase_spans(records: Sequence[Mapping]) -> list[dict[str, object]]:
    """Stretches of one phase as ``{"phase", "start", "end"}`` in steps (a phase starts where the last ended)."""
    spans: list[dict[str, object]] = []
    for r in sorted((r for r in records if "step" in r and r.get("phase")), key=lambda r: int(r["step"])):
        step, phase = int(r["step"]), str(r["phase"])
        if spans and spans[-1]["phase"] == phase:
            spans[-1]["end"] = max(int(spans[-1]["end"]), step)
        else:
            start = int(spans[-1]["end"]) if spans else 0
            spans.append({"phase": phase, "start": start, "end": step})
    return spans


def _mark_phases(fig, spans: Sequence[Mapping]) -> None:
    if len(spans) < 2:
        return
    for i, span in enumerate(spans):
        fig.add_vrect(x0=span["start"], x1=span["end"], fillcolor=PHASE_COLOURS[i % len(PHASE_COLOURS)],
                      line_width=0, layer="below", row="all", col="all")
        if i:
            fig.add_vline(x=span["start"], line_dash="dash", line_color="grey", row="all", col="all")
        fig.add_annotation(x=(float(span["start"]) + float(span["end"])) / 2, y=1.0, xref="x", yref="paper",
                           text=f"<b>{span['phase']}</b>", showarrow=False, yanchor="bottom")


def _facet_figure(frame: pd.DataFrame, facet: str, title: str, spans: Sequence[Mapping], markers: bool):
    import plotly.express as px

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


def loss_figure(records: Sequence[Mapping]):
    """Plotly curves of every logged loss against the step, one panel per loss, phases shaded (None: no records)."""
    frame = loss_frame(records)
    few = frame.empty or frame.groupby("loss").size().max() < 30  # short runs: show the points themselves
    return _facet_figure(frame, "loss", "Training losses", phase_spans(records), markers=bool(few))


def val_figure(records: Sequence[Mapping], metrics: Sequence[str] = VAL_METRICS):
    """Plotly curves of the validation figures against the step, one panel per figure (None: no records)."""
    return _facet_figure(val_frame(records, metrics), "metric", "Validation", phase_spans(records), markers=True)


# --- status and deletion -----------------------------------------------------------------------------
def status_fields(status: Mapping) -> dict[str, str]:
    """The selected run's status as short display strings: state, phase, epoch, step, images/s, ETA."""
    spe = status.get("steps_per_epoch")
    total = status.get("total_steps")
    epoch = status.get("epoch")
    epochs = float(total) / float(spe) if _finite(total) and _finite(spe) and float(spe) > 0 else None
    step = status.get("step")
    return {
        "state": str(status.get("state") or "unknown"),
        "phase": str(status.get("phase") or "—"),
        "epoch": (f"{float(epoch):.2f}" if _finite(epoch) else "—") + (f" / {epochs:.4g}" if epochs else ""),
        "step": (str(int(step)) if _finite(step) else "—") + (f" / {int(total)}" if _finite(total) else ""),
        "images/s": f"{float(status['images_per_s']):,.0f}" if _finite(status.get("images_per_s")) else "—",
        "ETA": format_duration(status.get("eta_s")) if is_active(status) else "—",
    }


def delete_run(run: RunDir, runs_dir: str | Path | None = None) -> None:
    """Delete a run directory; refuses an active run and anything that is not a run directly in ``runs_dir``."""
    root = (Path(runs_dir) if runs_dir else default_runs_dir()).resolve()
    path = run.path.resolve()
    if path.parent != root:
        raise JobError(f"{run.path} is not a run in {root}; nothing deleted")
    if not (run.config.is_file() or run.status_file.is_file()):
        raise JobError(f"{run.path} is not a run directory (no config.json or status.json); nothing deleted")
    status = run.live_status()
    if is_active(status):
        raise JobError(f"{run.id} is {status['state']}; cancel it and wait for it to stop before deleting")
    shutil.rmtree(path)


def wait_for_state(run: RunDir, states: Sequence[str], timeout: float = 30.0) -> dict:
    """Poll the run's live status until its state is one of ``states`` or ``timeout`` seconds pass."""
    end = time.time() + timeout
    status = run.live_status()
    while status.get("state") not in states and time.time() < end:
        time.sleep(0.2)
        status = run.live_status()
    return status
