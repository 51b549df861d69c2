#!/usr/bin/env bash
# Issue 20 on one GPU: CRF decoding (sequential vs vectorised), then benchmarks/speed.py twice,
# each run in a fresh process, and the comparison of the two (agree within 15 %?).
#
#   python benchmarks/device_bundle.py          # here: builds device/ (carried to the GPU)
#   bash benchmarks/gpu_speed.sh OUT_DIR [TIME_LIMIT_S]   # on the GPU machine, repo root
#
# Writes OUT_DIR/crf_decode_h200.json, speed_gpu_h200_run1.json, speed_gpu_h200_run2.json,
# speed_gpu_h200_compare.json and the logs; commit the JSON files under results/speed/.
set -u
OUT=${1:?usage: gpu_speed.sh OUT_DIR [TIME_LIMIT_S]}
LIM=${2:-520}
PY=${PYTHON:-python3}
# shellcheck disable=SC1091
source device/env.sh
# one intra-op thread: the GPU rows are bound by the host thread that launches the kernels, and
# idle OpenMP threads spinning beside it (4 before) are one suspect for two runs disagreeing
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
mkdir -p "$OUT"
nvidia-smi > "$OUT/nvidia_smi.txt" 2>&1
# SM clock, utilisation and memory every 2 s, to set against the rows' times (a slow first run
# on a fresh machine was left unexplained without them)
( while sleep 2; do nvidia-smi --query-gpu=timestamp,clocks.sm,utilization.gpu,memory.used \
    --format=csv,noheader >> "$OUT/gpu_samples.log" 2>/dev/null || break; done ) &
MON=$!
timeout 30 $PY -m pytest -q -p no:cacheprovider tests/test_crf.py -k cuda > "$OUT/test_crf_cuda.log" 2>&1
echo "test_crf cuda rc=$?"
# the CUDA-only tests of the picture paths: batched preprocess and nvJPEG decode vs the CPU
timeout 120 $PY -m pytest -q -p no:cacheprovider tests/test_device_pixels.py tests/test_image_batch.py \
  > "$OUT/test_pictures_cuda.log" 2>&1
echo "test pictures rc=$?"; tail -n 3 "$OUT/test_pictures_cuda.log"
timeout 30 $PY benchmarks/crf_speed.py --device cuda --output "$OUT/crf_decode_h200.json" \
  > "$OUT/crf_decode.log" 2>&1
echo "crf_speed rc=$?"; grep "^B=" "$OUT/crf_decode.log"
# the target rows only (reference loops, cached-feature sweep, the API with new JPEG pictures
# decoded by Pillow and, image_decode=device, by nvJPEG; add
# --cuda-graphs for the CRF-graph rows, ~90 s a run more), so
# that two runs fit one 10-minute call; add "train cache pipeline" to --sections for the rest
timeout -s TERM "$LIM" $PY benchmarks/speed.py --device cuda --no-wait --precision bf16 \
  --sections reference sweep inference --synthetic-size 1400 --batch-size 16 \
  --sweep 256 1024 --workers 4 --max-warmup 15 --api-models text mmib --api-batch 256 \
  --api-jpeg --api-image-decode host device --api-device-batch 256 1024 \
  --profile-steps 3 --repeat 2 --output "$OUT/speed_gpu_h200.json" > "$OUT/speed.log" 2>&1
echo "speed rc=$?"
grep -v "^\[speed\] \|Warning\|warn(" "$OUT/speed.log" | tail -n 80
kill "$MON" 2>/dev/null
