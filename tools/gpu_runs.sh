# Sourced by tools/train_gpu.sh and tools/train_gpu_dcgan.sh after tools/queue.sh: the end of a GPU session.
# Needs PY, PREFIX, PACK_OUT and DEVICE (default cuda).
stamp() { echo "[$(date +%T)] $*"; }

report_status() {  # RUN: its state and message, as they are now
  stamp "$(runs_cli wait "$1" --timeout 0)"
}

pick_runs() {  # RUN...: core.study pick on each (side by side) into RUN/pick.json; none when no generator passes
  local run
  for run in "$@"; do
    ( $PY -m core.study pick --run "$run" --device "${DEVICE:-cuda}" > "$run/pick.json" 2> "$run/pick.log" \
      || rm -f "$run/pick.json"; stamp "$run: $(head -c 400 "$run/pick.json" 2>/dev/null)" ) &
  done
  wait
}

pack_runs() {  # NAME RUN...: the runs (picked generator or best.pt, halved) and their logs as PACK_OUT/NAME.tgz.NN
  local name=$1 run; shift
  local dir="runs/$PREFIX-packed-$name"
  rm -rf "$dir"
  $PY tools/gpu_pack.py --out "$dir" "$@"
  for run in "$@"; do cp "$run.log" "$dir/" 2>/dev/null; done
  tar czf - -C "$dir" . | split -b 15m -d - "$PACK_OUT/$name.tgz."
  ls -la "$PACK_OUT"
}
