#!/usr/bin/env bash
# Issue 17's claims grid on one GPU machine, in one device call (< 10 min wall):
# build the photo set from the carried pool (skipped while the machine keeps it), run the
# grid's recipes x seeds as parallel training processes (OMP_NUM_THREADS=2 each), score each
# run's test predictions overall and per subset, and leave the raw rows under OUT_DIR.
#
#   python benchmarks/device_bundle.py --photos-pool POOL --no-text-data   # here, once
#   # device call (carry: ["device"]):
#   bash benchmarks/gpu_claims.sh $OUT/claims [GRID] [claims.py run options...]
#
# e.g. `bash benchmarks/gpu_claims.sh $OUT/claims benchmarks/claims_photos.yaml --only '*_ner*'`.
# OUT_DIR receives rows.jsonl, posts.jsonl.gz, failures.jsonl, driver.log, data_summary.json,
# logs.tar.gz and gpu.log (nvidia-smi samples): seven files, one folder down, as the device
# tool brings back. A later call adds `--skip-done results/claims_photos` (the rows of an
# earlier call, copied into the tree) to run only what is missing.
set -u
OUT=${1:?usage: gpu_claims.sh OUT_DIR [GRID] [claims.py run options...]}
GRID=${2:-benchmarks/claims_photos.yaml}
shift $(( $# >= 2 ? 2 : 1 ))
mkdir -p "$OUT"
[ -f device/env.sh ] && source device/env.sh
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.log" 2>&1
( while sleep 15; do nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used \
    --format=csv,noheader >> "$OUT/gpu.log" 2>/dev/null || break; done ) &
MON=$!
python3 benchmarks/claims.py run "$GRID" --out "$OUT" --parallel "${PARALLEL:-8}" \
  --threads "${THREADS:-2}" --deadline "${DEADLINE:-540}" "$@"
RC=$?
kill "$MON" 2>/dev/null
exit $RC
