#!/usr/bin/env bash
# GPU check (about 5 minutes on one GPU): the suite's GPU-marked tests, a BUSI recipe at
# 256 px for a few epochs in fp32 and in bf16, DDP on 2 GPUs when there are 2, and the
# inference throughput; every result in one JSON file.
# Usage: bash benchmarks/gpu_check.sh [OUT.json]     (default gpu_check.json)
#   BUSI=path/to/Dataset_BUSI_with_GT (default ../shared/data/busi/...; phantoms when absent)
#   PYTHON=python3 (an interpreter with medtl's dependencies); EPOCHS=3
# On a machine without a CUDA GPU it prints one line and exits 1.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT_JSON=${1:-gpu_check.json}
PY=${PYTHON:-python3}
EPOCHS=${EPOCHS:-3}
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False); nothing run" >&2
  exit 1
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/medtl-gpu-check.XXXXXX")
BUSI=${BUSI:-$ROOT/../shared/data/busi/Dataset_BUSI_with_GT}
DATA_KIND=busi
if [ ! -d "$BUSI" ]; then  # no BUSI here: 256 px phantoms in its place (said in the JSON)
  BUSI="$WORK/phantoms"
  DATA_KIND=phantoms
  "$PY" -m medtl synth "$BUSI" --n 300 --size 256 > /dev/null
fi
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
cd "$ROOT"

# 1. the suite's tests marked gpu
set +e
timeout 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests > "$WORK/pytest.txt" 2>&1
PYTEST_RC=$?
set -e

# 2. the BUSI recipe at 256 px in fp32 and bf16 (train.max_time caps each at 75 s)
RECIPE=(data.root="$BUSI" data.image_size=256 train.epochs="$EPOCHS" train.batch_size=16
  model.encoder=efficientnet-lite0 data.augment=light train.patience=0 train.max_time=75s
  output.dir="$WORK/runs" --no-progress)
for p in 32 bf16-mixed; do
  set +e
  timeout 150 "$PY" -m medtl train "${RECIPE[@]}" train.precision=$p output.name="busi-$p" \
    > "$WORK/train-$p.txt" 2>&1
  echo $? > "$WORK/train-$p.rc"
  set -e
done

# 3. DDP on 2 GPUs (1 epoch) when there are 2
if [ "$NGPU" -ge 2 ]; then
  set +e
  timeout 150 "$PY" -m medtl train "${RECIPE[@]}" train.epochs=1 train.devices=2 \
    train.strategy=ddp train.precision=bf16-mixed output.name=busi-ddp > "$WORK/train-ddp.txt" 2>&1
  echo $? > "$WORK/train-ddp.rc"
  set -e
fi

# 4. inference throughput on the GPU and JSON of everything
"$PY" - "$WORK" "$OUT_JSON" "$PYTEST_RC" "$DATA_KIND" "$NGPU" <<'EOF'
import json, sys
from pathlib import Path

work, out, pytest_rc, kind, ngpu = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
import torch
from medtl.comparison.throughput import throughput

result = {
    "gpu": torch.cuda.get_device_name(0), "n_gpus": ngpu, "torch": torch.__version__,
    "bf16_supported": torch.cuda.is_bf16_supported(), "data": kind,
    "pytest_gpu": {"rc": pytest_rc, "tail": (work / "pytest.txt").read_text()[-600:]},
    "runs": {},
}
for name in ("32", "bf16-mixed", "ddp"):
    rc_file = work / f"train-{name}.rc"
    if not rc_file.is_file():
        continue
    run = work / "runs" / f"busi-{name}"
    entry = {"rc": int(rc_file.read_text()), "log_tail": (work / f"train-{name}.txt").read_text()[-400:]}
    if (run / "run.json").is_file():
        facts = json.loads((run / "run.json").read_text())
        entry.update({k: facts.get(k) for k in ("device", "train_seconds", "best_score", "time_budget")})
        entry["epoch_seconds"] = [e["seconds"] for e in facts.get("epochs") or []]
    if (run / "model.pt").is_file() and name != "ddp":
        entry["inference"] = throughput(run, min_s=2.0, device="cuda")
    result["runs"][name] = entry
Path(out).write_text(json.dumps(result, indent=2))
print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
for name, e in result["runs"].items():
    print(name, e.get("rc"), e.get("train_seconds"), e.get("epoch_seconds"), e.get("best_score"),
          (e.get("inference") or {}).get("infer_img_per_s"))
print(out)
EOF
