#!/usr/bin/env bash
# Does the hue-stratified split matter? Trains the same U-Net on the random and on the hue split, for each seed,
# with one budget for all runs. Settings (environment): SEEDS (default "0 1"), WIDTH (16), EPOCHS (5),
# LIMIT (training images; empty = the whole split), PREFIX (run names PREFIX-<split>-s<seed>, default "study").
# Summarise afterwards with: python -m core.study splits --runs runs/PREFIX-*
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # core imports without an install
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
WIDTH=${WIDTH:-16}
EPOCHS=${EPOCHS:-5}
PREFIX=${PREFIX:-study}
PY=.venv/bin/python
limit=(); [ -n "${LIMIT:-}" ] && limit=(--limit "$LIMIT")
mkdir -p runs
source tools/queue.sh
# start after the run named in WAIT_FOR (if any) has finished, so the queues do not crowd the cores (a run not yet
# there is waited for too)
while [ -n "${WAIT_FOR:-}" ] && ! runs_cli wait "$WAIT_FOR" --state completed failed cancelled --interval 30 \
      > /dev/null 2>&1; do
  sleep 30
done
COMMON=(--source "$DATA" --model unet --width "$WIDTH" --epochs "$EPOCHS" "${limit[@]}" --val-limit 1000 --batch-size 128
        --threads 1 --quiet)
for seed in ${SEEDS:-0 1}; do
  for split in random hue; do
    train_run "$PREFIX-$split-s$seed" --split "$split" --seed "$seed"
  done
done
