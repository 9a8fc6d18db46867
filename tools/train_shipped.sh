#!/usr/bin/env bash
# Trains the shipped models on the full CIFAR-10 JPEG archive (hue split, grayscale dropped), on CPU,
# as two queues of one thread each. Progress: runs/ship-*/status.json; console output: runs/ship-*.log.
# A queue skips a run that already completed, so the script can be restarted.
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
WIDTH=${WIDTH:-16}
PY=.venv/bin/python
COMMON=(--source "$DATA" --split hue --seed 0 --threads 1 --val-limit 1000 --quiet)
run() {
  local name=$1; shift
  # another process may still be training this run: wait for it rather than start a second one
  while pid=$(grep -o '"pid": [0-9]*' "runs/$name/status.json" 2>/dev/null | grep -o '[0-9]*') \
        && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do sleep 30; done
  if grep -q '"state": "completed"' "runs/$name/status.json" 2>/dev/null; then return 0; fi
  local resume=(); [ -f "runs/$name/config.json" ] && resume=(--resume)
  $PY -m core.train "$@" "${COMMON[@]}" --out "runs/$name" "${resume[@]}" >> "runs/$name.log" 2>&1
}
mkdir -p runs
renice -n -5 $$ >/dev/null 2>&1 || true  # training is the long pole: ahead of interactive work
(
  run ship-classifier --model classifier --width 16 --epochs 2
  run ship-nogan --model nogan --width "$WIDTH" --disc-width "$WIDTH" --epochs 2 --critic-epochs 0.25 --gan-fraction 0.1 \
      --gan-checkpoints 10 --feature-net runs/ship-classifier/checkpoints/best.pt
) &
(
  run ship-dcgan --model dcgan --width "$WIDTH" --disc-width "$WIDTH" --epochs 2
  run ship-unet --model unet --width "$WIDTH" --epochs 3
) &
wait
