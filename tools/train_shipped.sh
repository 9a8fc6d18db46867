#!/usr/bin/env bash
# Trains the four models on the full CIFAR-10 JPEG archive (hue split, grayscale dropped) on a CPU, as two
# queues of one thread each: classifier -> NoGAN, and U-Net -> DCGAN, at a small width (16 by default). The shipped
# U-Net trained by the command its card records (checkpoints/unet.json); the shipped DCGAN,
# NoGAN and classifier come from tools/train_gpu.sh and tools/train_gpu_dcgan.sh (one GPU).
# Runs go to runs/$PREFIX-<name> (PREFIX defaults to "ship"); progress: python -m core.runs list, console output in
# runs/<run>.log.
# NoGAN runs its three phases in one run: 6 generator epochs (feature loss, learning rate decayed over the last 3),
# a quarter epoch of critic, then 3 epochs of GAN phase with a pix2pix-style L1 anchor (--gan-l1-weight).
# A queue skips a run that already completed and resumes one that was interrupted (tools/queue.sh), so the script
# can be restarted.
# Settings (environment): DATA, WIDTH (16), PREFIX (ship), UNET_EPOCHS (10), DCGAN_EPOCHS (14), NOGAN_EPOCHS (6).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # core imports without an install
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
WIDTH=${WIDTH:-16}
PREFIX=${PREFIX:-ship}
PY=.venv/bin/python
COMMON=(--source "$DATA" --split hue --seed 0 --threads 1 --val-limit 2000 --quiet)
source tools/queue.sh
run() { local name=$1; shift; train_run "$PREFIX-$name" "$@"; }
mkdir -p runs
(
  features=runs/$PREFIX-classifier/checkpoints/best.pt
  run classifier --model classifier --width 16 --epochs 3
  run nogan --model nogan --width "$WIDTH" --disc-width "$WIDTH" --epochs "${NOGAN_EPOCHS:-6}" \
      --lr-decay-epochs "$(( ${NOGAN_EPOCHS:-6} / 2 ))" --critic-epochs 0.25 --gan-fraction 3 --gan-checkpoints 45 \
      --gan-lr 5e-5 --gan-l1-weight 1000 --feature-net "$features"
) &
(
  run unet --model unet --width "$WIDTH" --epochs "${UNET_EPOCHS:-10}"
  run dcgan --model dcgan --width "$WIDTH" --disc-width "$WIDTH" --epochs "${DCGAN_EPOCHS:-14}" \
      --lr-decay-epochs "$(( ${DCGAN_EPOCHS:-14} / 2 ))" --l1-weight 1000
) &
wait
