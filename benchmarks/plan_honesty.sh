#!/usr/bin/env bash
# Budget honesty of 'medtl plan': for each budget, plan DATA, train the plan's recipe and
# print the predicted against the measured fit time (RUN/run.json plan_check). Needs a
# quiet machine (nothing else running): the probe and the fit are both timed.
# Usage: bash benchmarks/plan_honesty.sh [OUT]      (default results/plan_honesty)
#   DATA=folder (default ../shared/data/busi/Dataset_BUSI_with_GT); BUDGETS="5m 10m 20m";
#   TASK=segmentation; MEDTL=medtl; EXTRA="train.threads=2" (applied to training only)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$ROOT/../shared/data/busi/Dataset_BUSI_with_GT}
OUT=${1:-results/plan_honesty}
M=${MEDTL:-medtl}
mkdir -p "$OUT"
for b in ${BUDGETS:-5m 10m 20m}; do
  $M plan "$DATA" --task "${TASK:-segmentation}" --budget "$b" --folds 0 --out "$OUT/plan-$b.yaml" \
    > "$OUT/plan-$b.txt"
  # shellcheck disable=SC2086
  $M train -c "$OUT/plan-$b.yaml" output.dir="$OUT/runs" output.name="plan-$b" ${EXTRA:-} \
    --no-progress > "$OUT/train-$b.txt" 2>&1
done
python3 - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

rows = []
for run in sorted(Path(sys.argv[1], "runs").iterdir()):
    facts = json.loads((run / "run.json").read_text())
    c = facts.get("plan_check") or {}
    rows.append(f"| {run.name} | {c.get('predicted_s')} | {c.get('measured_s')} | {c.get('ratio')} "
                f"| {len(facts.get('epochs') or [])} | {(facts.get('time_budget') or {}).get('stopped')} |")
print("| run | predicted fit s | measured fit s | measured/predicted | epochs | stopped by max_time |")
print("| --- | --- | --- | --- | --- | --- |")
print("\n".join(rows))
EOF
