#!/usr/bin/env bash
# Ships the runs of tools/train_shipped.sh and regenerates the study's figures and tables in docs/:
# weights-only files and model cards in checkpoints/, the test leaderboard, the comparison figure, NoGAN's
# inflection plot, the colour/accuracy trade-off (with the runs of tools/gan_tradeoff.sh when present) and the
# split study (runs/$STUDY-*). Settings (environment): DATA, PREFIX (ship), STUDY (study), NOTE (for the cards).
set -eu
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
PREFIX=${PREFIX:-ship}
STUDY=${STUDY:-study}
NOTE=${NOTE:-}
PY=.venv/bin/python
for name in classifier unet; do
  $PY -m core.export --run "runs/$PREFIX-$name" --name "$name" --source "$DATA" --note "$NOTE"
done
# the GANs ship the checkpoint core.study pick names (the most colourful kept generator still clearly better
# than gray on validation), or best.pt when none passes the rule
for name in dcgan nogan; do
  if pick=$($PY -m core.study pick --run "runs/$PREFIX-$name"); then
    read -r path why < <(echo "$pick" | $PY -c "import json, sys; p = json.load(sys.stdin); print(p['path'], \
      f\"step {p['step']}: auc_ab gain {p['auc_ab_gain'][0]:+.2f} +- {p['auc_ab_gain'][1]:.2f}, mae_rgb gain \
{p['mae_rgb_gain'][0]:+.2f} +- {p['mae_rgb_gain'][1]:.2f}\")")
    $PY -m core.export --run "runs/$PREFIX-$name" --name "$name" --source "$DATA" --note "$NOTE" --checkpoint "$path" \
      --selection "by rule (python -m core.study pick): the most colourful kept generator of the run whose \
per-image gains over gray in auc_ab and mae_rgb on the run's validation images both exceed two standard errors ($why)"
  else
    $PY -m core.export --run "runs/$PREFIX-$name" --name "$name" --source "$DATA" --note "$NOTE"
  fi
done
$PY -m core.evaluate --leaderboard checkpoints/unet.pt checkpoints/dcgan.pt checkpoints/nogan.pt --source "$DATA" \
  --part test --json docs/leaderboard.json --csv docs/leaderboard.csv
$PY -m core.study figure --source "$DATA" --out docs/comparison.png
$PY -m core.study inflection --run "runs/$PREFIX-nogan" --out docs/nogan_inflection.png \
  --chosen-step "$($PY -c "import json; print(json.load(open('checkpoints/nogan.json'))['best_step'])")" > docs/nogan_inflection.json
$PY -m core.study tradeoff --runs "runs/$PREFIX-unet" "runs/$PREFIX-dcgan" "runs/$PREFIX-nogan" \
  $(ls -d runs/gan-*/ 2>/dev/null | sed 's:/$::') --scale-run "runs/$PREFIX-unet" \
  --out docs/tradeoff.png --json docs/tradeoff.json
if compgen -G "runs/$STUDY-*/config.json" > /dev/null; then
  $PY -m core.study splits --source "$DATA" --runs $(ls -d runs/$STUDY-*/ | sed 's:/$::') --json docs/split_study.json
fi
