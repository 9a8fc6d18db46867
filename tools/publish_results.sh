#!/usr/bin/env bash
# Ships the chosen runs and regenerates the study's figures and tables in docs/: weights-only files and model
# cards in checkpoints/, the test leaderboard, the comparison figure, NoGAN's inflection plot, the colour/accuracy
# trade-off (over TRADEOFF_RUNS) and the split study (runs/$STUDY-*).
# The shipped runs: the U-Net of tools/train_shipped.sh (CPU), the classifier and NoGAN of tools/train_gpu.sh and
# the DCGAN of tools/train_gpu_dcgan.sh (both on one GPU). Settings (environment): DATA, UNET_RUN, CLASSIFIER_RUN,
# DCGAN_RUN, NOGAN_RUN, TRADEOFF_RUNS, STUDY (study), NOTE (for the cards), EXPORT (1; 0 keeps checkpoints/ as is).
set -eu
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # core imports without an install
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
UNET_RUN=${UNET_RUN:-runs/ship-unet}
CLASSIFIER_RUN=${CLASSIFIER_RUN:-runs/gpu-classifier}
DCGAN_RUN=${DCGAN_RUN:-runs/gpu-dcgan-init-l1000}
NOGAN_RUN=${NOGAN_RUN:-runs/gpu-nogan-l300}
TRADEOFF_RUNS=${TRADEOFF_RUNS:-$UNET_RUN runs/gpu-dcgan runs/gpu-dcgan-l300 runs/gpu-dcgan-init-l100 \
runs/gpu-dcgan-init-l300 $DCGAN_RUN runs/gpu-nogan $NOGAN_RUN}
STUDY=${STUDY:-study}
NOTE=${NOTE:-}
PY=.venv/bin/python
[ "${EXPORT:-1}" = 1 ] && for spec in "classifier $CLASSIFIER_RUN" "unet $UNET_RUN"; do
  read -r name run <<< "$spec"
  $PY -m core.export --run "$run" --name "$name" --source "$DATA" --note "$NOTE"
done
# the GANs ship the checkpoint core.study pick names (the most colourful kept generator still clearly better
# than gray on validation), or best.pt when none passes the rule
[ "${EXPORT:-1}" = 1 ] && for spec in "dcgan $DCGAN_RUN" "nogan $NOGAN_RUN"; do
  read -r name run <<< "$spec"
  # a run packed by tools/gpu_pack.py keeps only its picked generator, and the pick it was chosen by in pick.json
  if pick=$(cat "$run/pick.json" 2>/dev/null || $PY -m core.study pick --run "$run"); then
    read -r path why < <(echo "$pick" | $PY -c "import json, sys; p = json.load(sys.stdin); print(p['path'], \
      f\"step {p['step']}: auc_ab gain {p['auc_ab_gain'][0]:+.2f} +- {p['auc_ab_gain'][1]:.2f}, mae_rgb gain \
{p['mae_rgb_gain'][0]:+.2f} +- {p['mae_rgb_gain'][1]:.2f}\")")
    $PY -m core.export --run "$run" --name "$name" --source "$DATA" --note "$NOTE" --checkpoint "$path" \
      --selection "by rule (python -m core.study pick): the most colourful kept generator of the run whose \
per-image gains over gray in auc_ab and mae_rgb on the run's validation images both exceed two standard errors ($why)"
  else
    $PY -m core.export --run "$run" --name "$name" --source "$DATA" --note "$NOTE"
  fi
done
$PY -m core.evaluate --leaderboard checkpoints/unet.pt checkpoints/dcgan.pt checkpoints/nogan.pt --source "$DATA" \
  --part test --json docs/leaderboard.json --csv docs/leaderboard.csv
$PY -m core.study figure --source "$DATA" --out docs/comparison.png
$PY -m core.study inflection --run "$NOGAN_RUN" --out docs/nogan_inflection.png \
  --chosen-step "$($PY -c "import json; print(json.load(open('checkpoints/nogan.json'))['best_step'])")" > docs/nogan_inflection.json
$PY -m core.study tradeoff --runs $TRADEOFF_RUNS --scale-run "$UNET_RUN" \
  --out docs/tradeoff.png --json docs/tradeoff.json
if compgen -G "runs/$STUDY-*/config.json" > /dev/null; then
  $PY -m core.study splits --source "$DATA" --runs $(ls -d runs/$STUDY-*/ | sed 's:/$::') --json docs/split_study.json
fi
