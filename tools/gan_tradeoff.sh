#!/usr/bin/env bash
# How the GANs trade colour for accuracy: the extra runs behind the README's trade-off figure, all on the shipped
# runs' data and validation images (run tools/train_shipped.sh first, for its classifier). One queue, one thread per
# run; a finished run is skipped and an interrupted one resumed (tools/queue.sh).
#   gan-nogan-base    NoGAN as DeOldify's recipe has it: 3 generator epochs, critic, GAN phase at feature weight 1
#                     (learning rate 2e-5); the two NoGAN runs below start from its phase-1 generator (--init)
#   gan-nogan-fw10    NoGAN GAN phase at feature weight 10 (learning rate 2e-5)
#   gan-nogan-l1000   NoGAN GAN phase with an L1 anchor of 1000 (learning rate 5e-5), 1.5 epochs
#   gan-dcgan-l100    DCGAN with pix2pix's L1 weight of 100, 10 epochs (the weight of Nazeri et al.)
#   gan-dcgan-l1000   DCGAN with an L1 weight of 1000, 10 epochs
# Plot afterwards with: python -m core.study tradeoff --runs runs/ship-unet runs/ship-* runs/gan-* ...
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # core imports without an install
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
PREFIX=${PREFIX:-ship}
PY=.venv/bin/python
COMMON=(--source "$DATA" --split hue --seed 0 --threads 1 --val-limit 2000 --quiet --width 16 --disc-width 16)
features=runs/$PREFIX-classifier/checkpoints/best.pt
source tools/queue.sh
train_run gan-nogan-base --model nogan --epochs 3 --critic-epochs 0.25 --gan-fraction 1.5 --gan-checkpoints 30 \
  --gan-lr 2e-5 --feature-net "$features"
NOGAN=(--model nogan --epochs 0 --init "$(ls runs/gan-nogan-base/checkpoints/critic/step_*.pt | tail -n 1)"
       --critic-epochs 0.25 --feature-net "$features")
train_run gan-nogan-fw10 "${NOGAN[@]}" --gan-fraction 1.5 --gan-checkpoints 30 --gan-lr 2e-5 --feature-weight 10
train_run gan-nogan-l1000 "${NOGAN[@]}" --gan-fraction 1.5 --gan-checkpoints 30 --gan-lr 5e-5 --gan-l1-weight 1000
train_run gan-dcgan-l100 --model dcgan --epochs 10 --lr-decay-epochs 5 --l1-weight 100
train_run gan-dcgan-l1000 --model dcgan --epochs 10 --lr-decay-epochs 5 --l1-weight 1000
