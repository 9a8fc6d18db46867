#!/usr/bin/env bash
# DCGAN candidates that start from a trained U-Net's generator (pix2pix losses, fresh discriminator, low learning
# rate), validated 8 times an epoch so that core.study pick has many generators to choose from; run after
# tools/train_gpu.sh (its runs/$PREFIX-unet). Packs like tools/train_gpu.sh.
# Settings (environment): DATA, PREFIX (gpu), WIDTH (32), EPOCHS (6), L1_WEIGHTS ("100 300 1000"), THREADS (2),
# DEVICE (cuda), INIT (runs/$PREFIX-unet/checkpoints/best.pt), PACK_OUT (runs/$PREFIX-pack).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # core imports without an install
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
PREFIX=${PREFIX:-gpu}
WIDTH=${WIDTH:-32}
EPOCHS=${EPOCHS:-6}
PY=${PY:-python3}
INIT=${INIT:-runs/$PREFIX-unet/checkpoints/best.pt}
PACK_OUT=${PACK_OUT:-runs/$PREFIX-pack}
COMMON=(--source "$DATA" --split hue --seed 0 --threads "${THREADS:-2}" --device "${DEVICE:-cuda}" --quiet
        --val-limit 2000)
source tools/queue.sh
source tools/gpu_runs.sh
mkdir -p runs "$PACK_OUT"
$PY -m core.data --source "$DATA" --split hue --seed 0 > /dev/null || exit 1
names=()
for l1 in ${L1_WEIGHTS:-100 300 1000}; do
  names+=("runs/$PREFIX-dcgan-init-l$l1")
  train_run "$PREFIX-dcgan-init-l$l1" --model dcgan --init "$INIT" --width "$WIDTH" --disc-width "$WIDTH" \
    --epochs "$EPOCHS" --lr 5e-5 --l1-weight "$l1" --val-per-epoch 8 &
done
wait
for run in "${names[@]}"; do report_status "$run"; done
pick_runs "${names[@]}"
pack_runs dcgan "${names[@]}"
stamp "done"
