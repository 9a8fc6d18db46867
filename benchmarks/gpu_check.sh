#!/usr/bin/env bash
# One prepared check of training and evaluation speed on one GPU, in under 5 minutes, with nothing from the
# network. Prints the device; for every registered method at width 64, batch 256, in the precision a run chooses
# (bf16 autocast on CUDA): img/s and the time of one epoch of 45,000 images; the evaluation time of the test set
# for the shipped models; peak GPU memory; the targets (on an H100/H200: U-Net epoch < 5 s, DCGAN epoch < 10 s);
# with more than one GPU, a 2-process DDP smoke run.
#   benchmarks/gpu_check.sh [ARCHIVE] [benchmarks/gpu_check.py options, e.g. --tiny]
# ARCHIVE: the CIFAR-10 JPEG archive (default: the first of ../shared/data/cifar10-jpeg.tar.gz,
# shared/data/cifar10-jpeg.tar.gz and data/cifar10-jpeg.tar.gz; a copy inside the repository travels with it),
# or `sample` for the bundled sample. Settings (environment): PY (python3), TORCHRUN (PY -m torch.distributed.run).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # core and benchmarks import without an install
PY=${PY:-python3}
start=$(date +%s)
ARCHIVE=""
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
  ARCHIVE=$1
  shift
fi
if [ -z "$ARCHIVE" ]; then
  for candidate in ../shared/data/cifar10-jpeg.tar.gz shared/data/cifar10-jpeg.tar.gz data/cifar10-jpeg.tar.gz; do
    if [ -f "$candidate" ]; then
      ARCHIVE=$candidate
      break
    fi
  done
fi
SOURCE=()
if [ -n "$ARCHIVE" ]; then
  SOURCE=(--source "$ARCHIVE")
fi
$PY -m benchmarks.gpu_check ${SOURCE[@]+"${SOURCE[@]}"} "$@" || exit $?

GPUS=$($PY -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
if [ "${GPUS:-0}" -gt 1 ]; then
  DDP_OUT=$(mktemp -d)
  echo "DDP smoke run: 2 processes, ${DDP_OUT}/run"
  ${TORCHRUN:-$PY -m torch.distributed.run} --standalone --nproc_per_node=2 -m core.train --model unet --source "${ARCHIVE:-sample}" --epochs 1 --limit 8192 --val-limit 512 --width 64 --batch-size 256 --quiet --out "$DDP_OUT/run" && echo "DDP smoke run: completed" || echo "DDP smoke run: FAILED"
else
  echo "DDP smoke run: skipped (${GPUS:-0} GPU(s); it needs 2)"
fi
echo "total wall time: $(( $(date +%s) - start )) s (limit 300 s)"
