#!/usr/bin/env bash
# Issue 21 on a multi-GPU machine: benchmarks/ddp_scaling.py (1, 2 [, 4] processes one after
# the other) per recipe and variant.
#
#   python benchmarks/device_bundle.py --data-dir ../shared/data    # here: encoders + text files
#   # (photos: python benchmarks/device_bundle.py --photos-pool POOL --no-text-data; 64 MiB
#   #  do not hold both, so Twitter-2015 and the photo benchmark go in separate sessions/calls)
#   bash benchmarks/gpu_ddp_scaling.sh OUT_DIR GPUS RECIPE [VARIANT ...]
#
# RECIPE: twitter2015 (configs/mmib_twitter2015.yaml) or photos (configs/mmib_photos_ner.yaml,
# the set built from device/photos_pool into runs/photos-data first, kept while the machine
# stays warm). VARIANT (default: paper levers):
#   paper   the recipe's per-device batch, lr as in the recipe, DDP defaults
#   levers  per-device batch 32, lr x world size, static_graph, 4 loader workers per rank
# Writes OUT_DIR/<recipe>_<variant>_x<GPUS>.json and .log; commit the JSON under results/ddp/.
set -u
OUT=${1:?usage: gpu_ddp_scaling.sh OUT_DIR GPUS RECIPE [VARIANT ...]}
GPUS=${2:?GPUS: 2 or 4}
RECIPE=${3:?RECIPE: twitter2015 or photos}
shift 3
VARIANTS=${*:-paper levers}
PY=${PYTHON:-python3}
# shellcheck disable=SC1091
source device/env.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} PYTHONUNBUFFERED=1
mkdir -p "$OUT"
nvidia-smi -L > "$OUT/gpus.txt" 2>&1
COMMON=(--epochs "${EPOCHS:-2}" --timeout "${RUN_TIMEOUT:-240}" --set trainer.deterministic=false
        --set trainer.eval_batch_size=128)
case $RECIPE in
  twitter2015) CONFIG=configs/mmib_twitter2015.yaml ;;
  photos)
    CONFIG=configs/mmib_photos_ner.yaml
    [ -f runs/photos-data/summary.json ] || $PY -m mmie data photos runs/photos-data \
      --pool device/photos_pool --size default --seed 0 > "$OUT/photos_build.log" 2>&1 \
      || { echo "photo set build failed"; tail -20 "$OUT/photos_build.log"; exit 1; }
    COMMON+=(--set data.data_dir=runs/photos-data) ;;
  *) echo "unknown recipe $RECIPE"; exit 2 ;;
esac
for V in $VARIANTS; do
  case $V in
    paper) EXTRA=() ;;
    levers) EXTRA=(--lr-scale --set trainer.batch_size=32 --set trainer.static_graph=true
                   --set trainer.num_workers=4) ;;
    *) echo "unknown variant $V"; exit 2 ;;
  esac
  $PY benchmarks/ddp_scaling.py --config "$CONFIG" --gpus "$GPUS" "${COMMON[@]}" "${EXTRA[@]}" \
    --work-dir "/tmp/ddp_scaling/$RECIPE-$V" --out "$OUT/${RECIPE}_${V}_x$GPUS.json" \
    > "$OUT/${RECIPE}_${V}_x$GPUS.log" 2>&1
  echo "$RECIPE $V rc=$?"; tail -5 "$OUT/${RECIPE}_${V}_x$GPUS.log"
done
