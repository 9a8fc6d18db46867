"""Train: start a training job (a separate process), follow every run's progress, cancel, resume or delete runs."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

import boot  # noqa: F401 - first: its note shows while the imports below load
import streamlit as st

from core.config import Option
from core.jobs import (
    MAX_PROCESSES,
    TrainForm,
    build_train_args,
    default_run_name,
    method_default_lr,
    method_form_options,
    resume_args,
)
from core.methods import get_method, method_label, method_names
from core.runs import (
    ACTIVE,
    RunDir,
    cancel_job,
    default_runs_dir,
    delete_run,
    find_runs,
    is_active,
    launch_process,
    run_metrics,
    run_state,
    runs_table,
    start_job,
)
from dashboard.charts import loss_figure, val_figure
from dashboard.common import active_source, guarded, page
from dashboard.display import runs_display, status_fields

page("Train", ":material/model_training:")
st.title("Train")
st.caption("Training runs as separate processes: they keep going when this tab closes or the dashboard restarts, "
           f"and everything shown here is read from the run folders in `{default_runs_dir()}`.")

LAUNCHER = launch_process  # replaced through st.session_state["_launcher"] (tests)


def start(form: TrainForm) -> None:
    """Start a job for the form's values and select it."""
    args = build_train_args(form, default_runs_dir())
    launcher = st.session_state.get("_launcher", LAUNCHER)
    run, cmd, pid = start_job(args, launcher=launcher)
    st.session_state["train_started"] = (run.id, " ".join(cmd[1:]), pid)
    st.query_params["run"] = run.id


def option_widget(column, opt: Option, method: str) -> object:
    """A form widget for one of the method's own options, from its declaration in the registry."""
    key = f"train_opt_{method}_{opt.name}"
    if opt.type is bool:
        return column.checkbox(opt.title, value=bool(opt.default), key=key, help=opt.help)
    if opt.list_of or opt.type is str:
        default = " ".join(map(str, opt.default)) if opt.list_of else str(opt.default)
        return column.text_input(opt.title, value=default, key=key, help=opt.help)
    low = opt.min if opt.min is not None else None
    if opt.type is int:
        return column.number_input(opt.title, None if low is None else int(low),
                                   None if opt.max is None else int(opt.max), int(opt.default), key=key, help=opt.help)
    small = abs(float(opt.default)) < 1e-2 and float(opt.default) != 0
    return column.number_input(opt.title, None if low is None else float(low),
                               None if opt.max is None else float(opt.max), float(opt.default),
                               format="%.1e" if small else "%g", key=key, help=opt.help)


# --- the form ----------------------------------------------------------------------------------------
with st.expander("Start a new run", expanded=not find_runs(default_runs_dir())):
    names = method_names()
    method = st.segmented_control("Method", names, default="unet", key="train_method",
                                  format_func=method_label,
                                  help="; ".join(f"{method_label(n)}: {get_method(n).help}" for n in names))
    method = method or "unet"
    st.caption(get_method(method).help)
    d = TrainForm()
    with st.form("train_form"):
        c1, c2, c3, c4 = st.columns(4)
        source = c1.text_input("Data source", value=active_source(), key="train_source",
                               help="sample, cifar10, or a folder/archive path")
        split = c2.radio("Split", ("hue", "random"), key="train_split", horizontal=True,
                         help="hue: every k-th image in hue order goes to validation, so both parts share one hue "
                         "distribution; random: a random share")
        epochs = c3.number_input(get_method(method).epochs_label, 1, 10_000, d.epochs, key="train_epochs")
        device = c4.selectbox("Device", ("auto", "cpu", "cuda"), key="train_device")
        c1, c2, c3, c4 = st.columns(4)
        width = c1.number_input("Width", 4, 512, d.width, step=4, key="train_width", help="base channel width")
        batch_size = c2.number_input("Batch size", 1, 8192, d.batch_size, key="train_batch_size")
        lr = c3.text_input("Learning rate", key="train_lr", placeholder=f"{method_default_lr(method):g} (default)",
                           help="blank: the method's default")
        decay = c4.number_input("LR decay (epochs)", 0.0, 10_000.0, d.lr_decay_epochs, key="train_lr_decay",
                                help="fall linearly to zero over the last N epochs (pix2pix's schedule); 0: constant")
        c1, c2, c3, c4 = st.columns(4)
        limit = c1.number_input("Image limit", 0, 10_000_000, 0, step=256, key="train_limit",
                                help="use at most this many training images (a random draw with the seed); 0: all")
        val_limit = c2.number_input("Validation limit", 0, 10_000_000, 0, step=64, key="train_val_limit",
                                    help="validate on at most this many images (a random draw); 0: all")
        seed = c3.number_input("Seed", 0, 2**31 - 1, d.seed, key="train_seed")
        processes = c4.number_input("Processes", 1, MAX_PROCESSES, d.processes, key="train_processes",
                                    help="data-parallel training processes on this machine (torchrun with "
                                    "DistributedDataParallel): each takes batch size / processes images of every "
                                    "step; on a CPU they share its cores, on CUDA each takes a GPU")
        own = method_form_options(method)
        if own:
            st.caption(f"{method_label(method)} options")
            options = {}
            for i in range(0, len(own), 4):
                for column, opt in zip(st.columns(4), own[i : i + 4]):
                    options[opt.name] = option_widget(column, opt, method)
        else:
            options = {}
        name = st.text_input("Run name", key="train_name", placeholder=default_run_name(method) + "  (default)",
                             help="letters, digits, '.', '_' and '-'; blank: <method>-<date>-<time>")
        if st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:"):
            form = TrainForm(method=method, source=source, split=split, epochs=int(epochs), width=int(width),
                             batch_size=int(batch_size), lr=lr, lr_decay_epochs=float(decay), limit=int(limit),
                             val_limit=int(val_limit), seed=int(seed), device=device, name=name,
                             processes=int(processes), options=options)
            guarded(start, form, what="Could not start the run")
    if started := st.session_state.pop("train_started", None):
        st.success(f"Started **{started[0]}** (process {started[2]}): `{started[1]}`", icon=":material/check_circle:")


# --- the runs table ----------------------------------------------------------------------------------
runs = find_runs(default_runs_dir())
if not runs:
    st.info("No runs yet. Start one with the form above; it appears here within a couple of seconds.",
            icon=":material/info:")
    st.stop()


def snapshot(runs_now: list[RunDir]) -> dict[str, dict]:
    """Every run's live status, read once: the table, the run picker and the run panel all show this moment."""
    return {r.id: r.live_status() for r in runs_now}


def any_active(runs_now: list[RunDir], statuses: dict[str, dict]) -> bool:
    """Whether a run is starting or running, as the runs table lists its state."""
    return any(run_state(r, statuses[r.id]) in ACTIVE for r in runs_now)


def _select_run() -> None:
    st.query_params["run"] = st.session_state["train_run"]


def pick_run(ids: list[str], states: dict[str, str]) -> str:
    """The run picker, following ``?run=`` (a run named there that does not exist falls back to the newest)."""
    wanted = st.query_params.get("run")
    if wanted in ids:
        st.session_state["train_run"] = wanted
    elif st.session_state.get("train_run") not in ids:
        if wanted:
            st.warning(f"Run `{wanted}` from the address was not found; showing the newest run.",
                       icon=":material/warning:")
        st.session_state["train_run"] = ids[0]
    selected = st.selectbox("Run", ids, key="train_run", on_change=_select_run,
                            format_func=lambda i: f"{i} ({states.get(i, 'starting')})")
    if st.query_params.get("run") != selected:
        st.query_params["run"] = selected
    return selected


# --- the selected run --------------------------------------------------------------------------------
def _confirm_delete(run_id: str | None) -> None:
    st.session_state["train_confirm_delete"] = run_id


def actions(run: RunDir, status: dict) -> None:
    """Cancel, resume and delete (with a confirmation step) for the selected run."""
    active = is_active(status)
    b1, b2, b3, _ = st.columns([1, 1, 1, 4])
    if b1.button("Cancel", icon=":material/stop:", disabled=not active, key="train_cancel",
                 help="stop the job; it saves last.pt and can be resumed"):
        if cancel_job(run):
            st.toast(f"Cancelling {run.id}…")
        else:
            st.warning("The job's process is not running any more.", icon=":material/warning:")
    if b2.button("Resume", icon=":material/replay:", disabled=status.get("state") not in ("cancelled", "failed"),
                 key="train_resume",
                 help="continue a cancelled or failed run from its last checkpoint"):
        if guarded(lambda: start_job(resume_args(run), launcher=st.session_state.get("_launcher", LAUNCHER)),
                   what="Could not resume") is not None:
            st.rerun()
    b3.button("Delete", icon=":material/delete:", disabled=active, key="train_delete", on_click=_confirm_delete,
              args=(run.id,),
              help="remove the run folder (cancel a running job first)")
    if st.session_state.get("train_confirm_delete") == run.id:
        st.warning(f"Delete run **{run.id}** and all its files (checkpoints, samples, logs)? This cannot be undone.",
                   icon=":material/warning:")
        y, n, _ = st.columns([1, 1, 5])
        if y.button("Yes, delete", type="primary", key="train_delete_yes"):
            st.session_state.pop("train_confirm_delete", None)
            guarded(delete_run, run, default_runs_dir(), what="Not deleted")
            if not run.path.exists():
                st.session_state.pop("train_run", None)
                st.query_params.pop("run", None)
                st.rerun()
        n.button("Keep it", key="train_delete_no", on_click=_confirm_delete, args=(None,))


def panel(run: RunDir, status: dict) -> None:
    """Status, curves, latest sample and log tail of one run, from the status the runs table shows."""
    fields = status_fields(status)
    items = list(fields.items())
    for start in range(0, len(items), 3):  # rows of three, so long values (states, ETAs) are not cut off
        for col, (label, value) in zip(st.columns(3), items[start : start + 3]):
            col.metric(label, value)
    if is_active(status) and status.get("total_steps"):
        st.progress(min(1.0, float(status.get("step") or 0) / float(status["total_steps"])))
    message = str(status.get("message") or "")
    if status.get("state") == "failed":
        st.error(f"The run failed: {message}. Fix the cause, then resume it or start a new run.",
                 icon=":material/error:")
    elif message:
        st.caption(message)
    if status.get("note"):
        st.caption(status["note"])
    actions(run, status)

    records = run_metrics(run)
    left, right = st.columns(2)
    with left:
        fig = loss_figure(records)
        if fig is None:
            st.info("No losses logged yet.")
        else:
            st.plotly_chart(fig, width="stretch", key="train_losses")
    with right:
        fig = val_figure(records)
        if fig is None:
            st.info("No validation yet: it runs at the end of every epoch.")
        else:
            st.plotly_chart(fig, width="stretch", key="train_val")
    left, right = st.columns(2)
    with left:
        sample = run.latest_sample()
        if sample is not None:
            st.image(str(sample), caption=f"Latest validation samples: {sample.stem} (gray | predicted | truth)")
        else:
            st.info("No sample grid yet." if status.get("model") != "classifier" else "Classifiers make no samples.")
    with right:
        st.code(run.log_tail(40) or "(no log output yet)", language="text")


def live(was_active: bool) -> None:
    """The runs table, the run picker and the selected run's panel, all from one reading of every status
    (re-read every few seconds while a job is active)."""
    runs_now = find_runs(default_runs_dir())
    statuses = snapshot(runs_now)
    table = runs_table(runs_now, statuses=statuses)
    if any_active(runs_now, statuses) != was_active:
        st.rerun()  # a job started or the last one ended: refresh the page (buttons, refresh interval)
    st.subheader("Runs")
    if not runs_now:
        st.info("No runs left. Start one with the form above.", icon=":material/info:")
        return
    st.dataframe(runs_display(table, statuses), hide_index=True, width="stretch", column_config={
        "progress": st.column_config.ProgressColumn("progress", format="%.0f%%", min_value=0, max_value=100),
        "eta": "ETA", "started": st.column_config.DatetimeColumn("started", format="YYYY-MM-DD HH:mm:ss"),
        "best_metric": "best validation", "best_value": st.column_config.NumberColumn("best value", format="%.3f"),
    })
    selected = pick_run(list(table["run"]), dict(zip(table["run"], table["state"])))
    st.subheader(f"Run {selected}")
    panel(RunDir(default_runs_dir() / selected), statuses[selected])


active = any_active(runs, snapshot(runs))
st.fragment(live, run_every=3 if active else None)(active)
