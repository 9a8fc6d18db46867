#!/usr/bin/env bash
# Trains the shipped models' candidates on one CUDA GPU at width 32, sized to a time budget, and packs them for
# export elsewhere: core.export then writes the weights and cards (each card keeps the machine the run trained on).
#   1. short calibration runs, side by side as the real ones will be, measure seconds per step of each method;
#      tools/gpu_plan.py turns them into epoch counts that fit BUDGET_S (within fixed bounds);
#   2. six runs side by side: classifier -> NoGAN (GAN-phase L1 anchor 1000 and 300), U-Net, DCGAN (L1 weight 1000
#      and 300); runs still going after BUDGET_S + GRACE_S are stopped (SIGTERM: they save and end cancelled);
#   3. python -m core.study pick (on the GPU) names each GAN run's checkpoint; tools/gpu_pack.py keeps only that
#      generator (or best.pt), halved, and PACK_OUT receives runs.tgz.NN parts of at most 15 MiB.
# Settings (environment): DATA, PREFIX (gpu), WIDTH (32), BUDGET_S (300), GRACE_S (45), THREADS (2), DEVICE (cuda),
# PACK_OUT (where the parts go; default: runs/$PREFIX-pack).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # core imports without an install
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
PREFIX=${PREFIX:-gpu}
WIDTH=${WIDTH:-32}
BUDGET_S=${BUDGET_S:-300}
GRACE_S=${GRACE_S:-45}
PY=${PY:-python3}
PACK_OUT=${PACK_OUT:-runs/$PREFIX-pack}
COMMON=(--source "$DATA" --split hue --seed 0 --threads "${THREADS:-2}" --device "${DEVICE:-cuda}" --quiet)
source tools/queue.sh
source tools/gpu_runs.sh
mkdir -p runs "$PACK_OUT"
rm -f "runs/$PREFIX-stop"

stamp "preparing data"
$PY -m core.data --source "$DATA" --split hue --seed 0 || exit 1

stamp "calibration"
CAL=(--limit "${CAL_LIMIT:-6400}" --epochs 2 --val-limit 256 --log-every 5 --width "$WIDTH" --disc-width "$WIDTH")
train_run "$PREFIX-cal-unet" --model unet "${CAL[@]}" &
train_run "$PREFIX-cal-dcgan" --model dcgan --l1-weight 1000 "${CAL[@]}" &
train_run "$PREFIX-cal-dcgan2" --model dcgan --l1-weight 300 "${CAL[@]}" &
for i in 1 2; do
  train_run "$PREFIX-cal-nogan$i" --model nogan "${CAL[@]}" --critic-epochs 0.5 --gan-fraction 2 --gan-checkpoints 2 \
    --feature-net checkpoints/classifier.pt &
done
wait
plan=$($PY tools/gpu_plan.py --budget "$BUDGET_S" --source "$DATA" --unet "runs/$PREFIX-cal-unet" \
  --dcgan "runs/$PREFIX-cal-dcgan" --nogan "runs/$PREFIX-cal-nogan1") || { tail -n 20 runs/$PREFIX-cal-*.log; exit 1; }
eval "$plan"
stamp "plan: $(echo $plan)"

COMMON+=(--val-limit 2000)
stamp "training"
features=runs/$PREFIX-classifier/checkpoints/best.pt
nogan() {
  [ -e "runs/$PREFIX-stop" ] && return 0  # the budget ran out while the classifier trained
  train_run "$PREFIX-$1" --model nogan --width "$WIDTH" --disc-width "$WIDTH" --epochs "$NOGAN_EPOCHS" \
    --lr-decay-epochs "$(( NOGAN_EPOCHS / 2 ))" --critic-epochs 0.25 --gan-fraction "$GAN_EPOCHS" --gan-checkpoints 45 \
    --gan-lr 5e-5 --gan-l1-weight "$2" --feature-net "$features"
}
(
  train_run "$PREFIX-classifier" --model classifier --width "$WIDTH" --epochs "$CLASSIFIER_EPOCHS" \
    --lr-decay-epochs "$(( CLASSIFIER_EPOCHS / 2 ))"
  nogan nogan 1000 & nogan nogan-l300 300 & wait
) &
train_run "$PREFIX-unet" --model unet --width "$WIDTH" --epochs "$UNET_EPOCHS" --lr-decay-epochs "$(( UNET_EPOCHS / 2 ))" &
for l1 in 1000 300; do
  name=dcgan; [ "$l1" = 1000 ] || name=dcgan-l$l1
  train_run "$PREFIX-$name" --model dcgan --width "$WIDTH" --disc-width "$WIDTH" --epochs "$DCGAN_EPOCHS" \
    --lr-decay-epochs "$(( DCGAN_EPOCHS / 2 ))" --l1-weight "$l1" &
done
deadline=$(( SECONDS + BUDGET_S + GRACE_S ))
# going on while this script's queues run, or any runs/$PREFIX-* run is still active (started elsewhere)
while jobs -r | grep -q . || [ -n "$(runs_cli list "$PREFIX-" --active 2> /dev/null)" ]; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    stamp "budget spent: stopping the runs still going"
    touch "runs/$PREFIX-stop"
    runs_cli cancel "$PREFIX-"
    sleep 20
    break
  fi
  sleep 5
done
runs=$(ls -d runs/$PREFIX-*/ | grep -v -e "-cal-" -e "-pack" | sed 's:/$::')
for run in $runs; do report_status "$run"; done
stamp "picking"
pick_runs $(echo "$runs" | grep -e "-dcgan" -e "-nogan")
stamp "packing"
pack_runs runs $runs
stamp "done"
