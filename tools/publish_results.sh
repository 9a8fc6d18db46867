#!/usr/bin/env bash
# Ships the runs of tools/train_shipped.sh and regenerates the study's figures and tables in docs/:
# weights-only files and model cards in checkpoints/, the test leaderboard, the comparison figure, NoGAN's
# inflection plot and the split study (runs/$STUDY-*). Settings (environment): DATA, PREFIX (ship), STUDY (study),
# NOTE (free text for the model cards).
set -eu
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data/cifar10-jpeg.tar.gz}
PREFIX=${PREFIX:-ship}
STUDY=${STUDY:-study}
NOTE=${NOTE:-}
PY=.venv/bin/python
for name in classifier unet dcgan nogan; do
  $PY -m core.export --run "runs/$PREFIX-$name" --name "$name" --source "$DATA" --note "$NOTE"
done
$PY -m core.evaluate --leaderboard checkpoints/unet.pt checkpoints/dcgan.pt checkpoints/nogan.pt --source "$DATA" \
  --part test --json docs/leaderboard.json --csv docs/leaderboard.csv
$PY -m core.study figure --source "$DATA" --out docs/comparison.png
$PY -m core.study inflection --run "runs/$PREFIX-nogan" --out docs/nogan_inflection.png > docs/nogan_inflection.json
if compgen -G "runs/$STUDY-*/config.json" > /dev/null; then
  $PY -m core.study splits --source "$DATA" --runs $(ls -d runs/$STUDY-*/ | sed 's:/$::') --json docs/split_study.json
fi
