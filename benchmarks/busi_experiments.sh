#!/usr/bin/env bash
# Real-data experiments of docs/results.md on BUSI (2 CPU cores). Each step writes its
# results as it finishes; re-running skips finished comparison cells.
# Usage: bash benchmarks/busi_experiments.sh [OUT]   (default results/busi)
set -euo pipefail
BUSI=${BUSI:-$(cd "$(dirname "$0")/.." && pwd)/../shared/data/busi/Dataset_BUSI_with_GT}
OUT=${1:-results/busi}
M=${MEDTL:-medtl}
mkdir -p "$OUT"
SIZE=${SIZE:-96}
EPOCHS=${EPOCHS:-10}
stamp() { date -u +%FT%TZ; }

# 2. multitask: segmentation + benign/malignant/normal on one grouped split
echo "$(stamp) multitask start" >> "$OUT/timeline.txt"
/usr/bin/time -v $M train -c configs/busi_multitask.yaml data.root="$BUSI" data.image_size=$SIZE \
  train.epochs=$EPOCHS output.dir="$OUT" output.name=multitask --no-progress 2> "$OUT/multitask.time" | tail -1
$M evaluate "$OUT/multitask" --split test > "$OUT/multitask.eval.txt" 2>&1
echo "$(stamp) multitask done" >> "$OUT/timeline.txt"

# 3. what the audit changes: the same segmentation recipe on a naive split vs the grouped split
for g in false true; do
  /usr/bin/time -v $M train -c configs/busi_seg.yaml data.root="$BUSI" data.image_size=$SIZE \
    train.epochs=$EPOCHS data.group_duplicates=$g output.dir="$OUT" output.name=seg_group_$g --no-progress \
    2> "$OUT/seg_group_$g.time" | tail -1
  $M evaluate "$OUT/seg_group_$g" --split test > "$OUT/seg_group_$g.eval.txt" 2>&1
  echo "$(stamp) seg group_duplicates=$g done" >> "$OUT/timeline.txt"
done

# 1. lesion segmentation, 5-fold grouped CV: pretrained fine-tuned vs frozen vs two-stage vs
#    the same encoder from random init (paired: every cell trains on the same folds); every
#    image in the folds (--test-fraction 0), as it ran before medtl 0.2
FOLDS=${FOLDS:-5}
$M compare -c configs/busi_seg.yaml data.root="$BUSI" data.image_size=$SIZE train.epochs=$EPOCHS \
  --cell model.strategy=finetune --cell model.strategy=frozen --cell model.strategy=two_stage \
  --cell 'model.strategy=finetune model.weights=none' \
  --folds $FOLDS --test-fraction 0 --out "$OUT/seg_cv$FOLDS" --no-progress > "$OUT/seg_cv$FOLDS.txt" 2>&1
echo "$(stamp) seg cv$FOLDS done" >> "$OUT/timeline.txt"

# 4. the recipe as written (configs/busi_seg.yaml: 128 px, 25 epochs, fine-tuned), 5-fold CV on
#    the images left after a grouped, stratified test split (data.test_fraction, default 0.2)
#    that no fold sees; then the fold ensemble and the CV-chosen post-processing on that test split
#    (SIZE/EPOCHS do not apply here: the recipe's own values are the point)
/usr/bin/time -v $M compare -c configs/busi_seg.yaml data.root="$BUSI" --cell model.strategy=finetune \
  --folds $FOLDS --out "$OUT/seg_test_cv$FOLDS" --no-progress > "$OUT/seg_test_cv$FOLDS.txt" 2> "$OUT/seg_test_cv$FOLDS.time"
echo "$(stamp) seg test + cv$FOLDS done" >> "$OUT/timeline.txt"
