# Sourced by the training scripts in tools/: `train_run NAME ARGS...` trains runs/NAME with `python -m core.train
# ARGS... "${COMMON[@]}"`, console output to runs/NAME.log. It waits for another process still training that run,
# skips a run that already completed and resumes one that was interrupted, so a script can be restarted.
# `runs_cli ARGS...` is `python -m core.runs ARGS...` on runs/ (list, status, wait, cancel; see core/runs.py).
# Needs PY (the python) and COMMON (an array of options shared by the script's runs).
runs_cli() { $PY -m core.runs --runs-dir runs "$@"; }

train_run() {
  local name=$1; shift
  # a run already there: wait while it is still going, and skip it when it completed
  if [ -d "runs/$name" ] && runs_cli wait "$name" --state completed --interval 30 > /dev/null; then return 0; fi
  local resume=(); [ -f "runs/$name/config.json" ] && resume=(--resume)
  mkdir -p runs
  $PY -m core.train "$@" "${COMMON[@]}" --out "runs/$name" "${resume[@]}" >> "runs/$name.log" 2>&1
}
