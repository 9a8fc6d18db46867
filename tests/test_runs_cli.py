"""``python -m core.runs``: list, status, wait and cancel from a shell, with its exit codes (2 for bad input)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core.runs import RunDir
from tests.run_util import make_run

ROOT = Path(__file__).resolve().parents[1]

# A stand-in for a training job: it holds the run's lock and records itself in status.json as a running run, then
# sleeps until SIGTERM, which it notes in a file before ending the run as cancelled (as core.train does).
FAKE_JOB = textwrap.dedent("""
    import json, os, signal, sys, time
    from pathlib import Path

    from core.runlock import RunLock

    run = Path(sys.argv[1])
    lock = RunLock(run).acquire()  # as the trainer does, for its whole life

    def write(**status):
        tmp = run / "status.tmp"
        tmp.write_text(json.dumps(status | {"pid": os.getpid(), "heartbeat": time.time(), "started": 1.0}))
        tmp.replace(run / "status.json")

    def stop(signum, frame):
        (run / "signal.txt").write_text(str(signum))
        write(state="cancelled", message="cancelled at step 3")
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    write(state="running", step=3, total_steps=12, model="unet", message="step 3/12")
    end = time.time() + 60
    while time.time() < end:
        time.sleep(0.05)
""")


def cli(*args: str, runs_dir: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m core.runs ARGS`` (with ``--runs-dir`` first when given) from the project root."""
    extra = ["--runs-dir", str(runs_dir)] if runs_dir is not None else []
    return subprocess.run([sys.executable, "-m", "core.runs", *extra, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=os.environ | (env or {}))


def start_fake_job(runs_dir: Path, name: str) -> subprocess.Popen:
    """A sleeping child recorded as a running run ``name`` (returns once its status is written)."""
    path = runs_dir / name
    path.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", FAKE_JOB, str(path)], cwd=ROOT)
    deadline = time.time() + 30
    while not (path / "status.json").is_file():
        assert proc.poll() is None and time.time() < deadline, "the fake job did not start"
        time.sleep(0.05)
    return proc


def assert_one_error_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    """Three runs written by hand: completed (nogan), cancelled (classifier) and one that only has a status."""
    root = tmp_path / "runs"
    make_run(root, "done", model="nogan", started=300.0, message="completed 7 steps",
             records=[{"type": "val", "step": 7, "auc_ab": 85.0}])
    make_run(root, "stopped", model="classifier", state="cancelled", step=5, total_steps=20, started=200.0)
    bare = RunDir(root / "bare-job")
    bare.path.mkdir()
    bare.write_status(state="failed", message="the data source was not found", started=100.0)
    (root / "not-a-run").mkdir()
    return root


# --- list --------------------------------------------------------------------------------------------
def test_list_shows_a_table_newest_first(runs_dir):
    result = cli("list", runs_dir=runs_dir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["run", "state", "progress", "method"]
    assert [line.split() for line in lines[1:]] == [["done", "completed", "100%", "nogan"],
                                                   ["stopped", "cancelled", "25%", "classifier"],
                                                   ["bare-job", "failed", "0%"]]


def test_list_json_prefix_active_and_runs_dir_after_the_command(runs_dir):
    result = cli("list", "--json", "--runs-dir", str(runs_dir))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["run"] for r in rows] == ["done", "stopped", "bare-job"]
    assert rows[0] | {"started": None} == {"run": "done", "state": "completed", "progress": 100.0, "eta_s": None,
                                           "method": "nogan", "split": "random", "started": None,
                                           "best_metric": "auc_ab", "best_value": 85.0}
    assert isinstance(rows[0]["started"], str)
    only = cli("list", "st", "--json", runs_dir=runs_dir)
    assert [r["run"] for r in json.loads(only.stdout)] == ["stopped"]
    active = cli("list", "--active", runs_dir=runs_dir)
    assert active.returncode == 0 and active.stdout == "" and "no active runs" in active.stderr


def test_list_uses_the_runs_folder_of_the_environment(runs_dir, tmp_path):
    result = cli("list", "--json", env={"COLORIZE_RUNS_DIR": str(runs_dir)})
    assert [r["run"] for r in json.loads(result.stdout)] == ["done", "stopped", "bare-job"]
    empty = cli("list", runs_dir=tmp_path / "missing")
    assert empty.returncode == 0 and empty.stdout == "" and "no runs in" in empty.stderr


# --- status ------------------------------------------------------------------------------------------
def test_status_prints_the_live_status(runs_dir):
    result = cli("status", "done", runs_dir=runs_dir)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["state"] == "completed" and status["message"] == "completed 7 steps"
    by_path = cli("status", str(runs_dir / "stopped"), runs_dir=runs_dir / "elsewhere")
    assert json.loads(by_path.stdout)["state"] == "cancelled"
    gone = RunDir(runs_dir / "gone")  # marked running, but its process has ended
    gone.path.mkdir()
    gone.status_file.write_text(json.dumps({"state": "running", "pid": 999_999, "heartbeat": time.time() - 60}))
    assert json.loads(cli("status", "gone", runs_dir=runs_dir).stdout)["state"] == "failed"


# --- wait --------------------------------------------------------------------------------------------
def test_wait_for_runs_that_have_ended(runs_dir):
    result = cli("wait", "done", runs_dir=runs_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done: completed (completed 7 steps)"
    assert cli("wait", "done", "stopped", runs_dir=runs_dir).returncode == 1  # one was cancelled
    both = cli("wait", "done", "stopped", "--state", "completed", "cancelled", "--timeout", "5", runs_dir=runs_dir)
    assert both.returncode == 0 and len(both.stdout.splitlines()) == 2
    failed = cli("wait", "bare-job", "--state", "failed", runs_dir=runs_dir)
    assert failed.returncode == 0 and "the data source was not found" in failed.stdout


def test_wait_follows_a_run_until_it_ends_and_gives_up_at_the_timeout(runs_dir):
    busy = make_run(runs_dir, "busy", state="running", message="step 1/4")
    busy.write_status(pid=os.getpid())  # alive for as long as the test runs
    at_once = cli("wait", "busy", "--timeout", "0", runs_dir=runs_dir)
    assert at_once.returncode == 1 and at_once.stdout.strip() == "busy: running (step 1/4)"
    proc = subprocess.Popen([sys.executable, "-m", "core.runs", "--runs-dir", str(runs_dir), "wait", "busy", "done",
                             "--interval", "0.1", "--timeout", "60"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)
        assert proc.poll() is None  # still waiting for busy
        busy.write_status(state="completed", message="completed 4 steps")
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert out.splitlines() == ["done: completed (completed 7 steps)", "busy: completed (completed 4 steps)"]


# --- cancel ------------------------------------------------------------------------------------------
def test_cancel_by_prefix_and_by_name_sends_sigterm_to_active_runs_only(runs_dir):
    jobs = {name: start_fake_job(runs_dir, name) for name in ("grp-a", "solo", "solo-2")}
    make_run(runs_dir, "grp-b")  # completed: nothing to stop
    try:
        result = cli("cancel", "grp-", runs_dir=runs_dir)
        assert result.returncode == 0, result.stderr
        assert "grp-a" in result.stdout and "grp-b" not in result.stdout and "solo" not in result.stdout
        assert jobs["grp-a"].wait(timeout=30) == 0
        assert (runs_dir / "grp-a" / "signal.txt").read_text() == "15"  # SIGTERM
        assert RunDir(runs_dir / "grp-a").live_status()["state"] == "cancelled"

        exact = cli("cancel", "solo", runs_dir=runs_dir)  # a run of that name: only that one
        assert exact.returncode == 0 and "solo-2" not in exact.stdout
        assert jobs["solo"].wait(timeout=30) == 0
        assert jobs["solo-2"].poll() is None and not (runs_dir / "solo-2" / "signal.txt").exists()

        again = cli("cancel", "grp-", runs_dir=runs_dir)
        assert again.returncode == 0 and "nothing to cancel" in again.stdout
    finally:
        for proc in jobs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


# --- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,words", [
    (("status", "no-such-run"), ("no run", "no-such-run")),
    (("wait", "done", "no-such-run"), ("no run", "no-such-run")),
    (("status", "not-a-run"), ("no run", "not-a-run")),
    (("cancel", "no-such"), ("no run named or starting with", "no-such")),
    (("wait", "done", "--interval", "0"), ("--interval",)),
])
def test_bad_input_exits_2_with_one_line(runs_dir, args, words):
    result = cli(*args, runs_dir=runs_dir)
    assert_one_error_line(result, *words)
    assert result.stdout == ""


@pytest.mark.parametrize("args", [(), ("wait",), ("wait", "done", "--timeout", "-1"), ("wait", "done", "--state", "x"),
                                  ("remove", "done")])
def test_bad_arguments_exit_2_with_one_line(runs_dir, args):
    result = cli(*args, runs_dir=runs_dir)
    assert_one_error_line(result, "error: ", "python -m core.runs", "--help")  # not argparse's usage block
    assert "usage:" not in result.stderr


# --- the shell scripts in tools/ ---------------------------------------------------------------------
def test_queue_skips_completed_runs_resumes_stopped_ones_and_reports_states(runs_dir, tmp_path):
    """tools/queue.sh's train_run and tools/gpu_runs.sh's report_status, with core.train replaced by a recorder."""
    work = runs_dir.parent
    fake_py = tmp_path / "py"
    fake_py.write_text(f"""#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "core.train" ]; then shift 2; echo "$*" >> calls.txt; exit 0; fi
PYTHONPATH={ROOT} exec {sys.executable} "$@"
""")
    fake_py.chmod(0o755)
    script = f"""
        set -u
        PY={fake_py}; COMMON=(--quiet); PREFIX=x; PACK_OUT=pack
        source {ROOT}/tools/queue.sh
        source {ROOT}/tools/gpu_runs.sh
        train_run done --model nogan
        train_run stopped --model classifier
        train_run fresh --model unet
        report_status runs/done
        report_status runs/bare-job
    """
    result = subprocess.run(["bash", "-c", script], cwd=work, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (work / "calls.txt").read_text().splitlines() == [
        "--model classifier --quiet --out runs/stopped --resume", "--model unet --quiet --out runs/fresh"]
    lines = result.stdout.splitlines()
    assert lines[0].endswith("] runs/done: completed (completed 7 steps)")
    assert lines[1].endswith("] runs/bare-job: failed (the data source was not found)")


def test_a_reader_that_closes_early_gets_no_error(tmp_path):
    """``python -m core.runs list | head -1`` over many runs: the command stops quietly when the pipe closes."""
    for i in range(400):
        make_run(tmp_path, f"run-{i:03d}-" + "x" * 60)
    shell = f"{sys.executable} -m core.runs list --runs-dir {tmp_path} | head -n 1"
    result = subprocess.run(["bash", "-c", shell], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["run", "state", "progress", "method"]
    assert result.stderr == ""
