# Sourced by the training scripts in tools/: `train_run NAME ARGS...` trains runs/NAME with `python -m core.train
# ARGS... "${COMMON[@]}"`, console output to runs/NAME.log. It waits for another process still training that run,
# skips a run that already completed and resumes one that was interrupted, so a script can be restarted.
# Needs PY (the python) and COMMON (an array of options shared by the script's runs).
train_run() {
  local name=$1; shift
  while pid=$(grep -o '"pid": [0-9]*' "runs/$name/status.json" 2>/dev/null | grep -o '[0-9]*') \
        && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do sleep 30; done
  if grep -q '"state": "completed"' "runs/$name/status.json" 2>/dev/null; then return 0; fi
  local resume=(); [ -f "runs/$name/config.json" ] && resume=(--resume)
  mkdir -p runs
  $PY -m core.train "$@" "${COMMON[@]}" --out "runs/$name" "${resume[@]}" >> "runs/$name.log" 2>&1
}
