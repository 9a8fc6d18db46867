#!/usr/bin/env bash
# Does the hue-stratified split matter? Trains the same U-Net on the random and on the hue split, four seeds
# each, with one budget for all eight (width 16, 2 epochs over the first 5,000 training images of the split).
# Summarise afterwards with: python -m core.study splits --runs runs/split-*
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
PY=.venv/bin/python
mkdir -p runs
renice -n -5 $$ >/dev/null 2>&1 || true
# start after the run named in WAIT_FOR (if any) has finished, so the queues do not crowd the cores
while [ -n "${WAIT_FOR:-}" ] && ! grep -qE '"state": "(completed|failed|cancelled)"' "runs/$WAIT_FOR/status.json" 2>/dev/null; do
  sleep 30
done
for seed in ${SEEDS:-0 1 2 3}; do
  for split in random hue; do
    name=split-$split-s$seed
    grep -q '"state": "completed"' "runs/$name/status.json" 2>/dev/null && continue
    resume=(); [ -f "runs/$name/config.json" ] && resume=(--resume)
    $PY -m core.train --model unet --width 16 --epochs 2 --limit 5000 --val-limit 1000 --batch-size 128 \
      --source "$DATA" --split "$split" --seed "$seed" --threads 1 --quiet --out "runs/$name" "${resume[@]}" \
      >> "runs/$name.log" 2>&1
  done
done
