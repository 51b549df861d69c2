#!/usr/bin/env bash
# Zero-shot ablations, Twitter leave-one-type-out, the bf16 check and the end-to-end MNRE
# evaluation on one GPU, as parallel jobs (the embedded encoders leave the GPU mostly idle, so
# several small runs share it; wall seconds per run are therefore upper bounds).
#
#   source device/env.sh            # on the GPU machine (python benchmarks/device_bundle.py here)
#   bash benchmarks/gpu_zero_shot.sh OUT_DIR [TIME_LIMIT_S]
#
# Every job appends one JSON row per finished run to OUT_DIR/<job>/runs.jsonl (quality.py),
# so a job cut by the time limit keeps the runs it finished.
set -u
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MKL_NUM_THREADS=${MKL_NUM_THREADS:-2}  # no oversubscription
OUT=${1:?usage: gpu_zero_shot.sh OUT_DIR [TIME_LIMIT_S]}
LIM=${2:-560}
PY=${PYTHON:-python3}
Q="$PY benchmarks/quality.py"
C="--set trainer.progress=false --set trainer.deterministic=false --set trainer.eval_batch_size=128"
# the settings of the MG-VMoE MNRE rows (fp32, 3 epochs, batch 32, lr 3e-5)
ZS="$C --set trainer.max_epochs=3 --set trainer.batch_size=32 --set trainer.lr=3e-5 --set trainer.precision=32-true"
LOTO="$C --set trainer.max_epochs=3 --set trainer.batch_size=32"
T17="$C --set trainer.max_epochs=3 --set trainer.batch_size=32 --set trainer.lr=5e-5 --set trainer.head_lr=5e-5"
RE="$C --set trainer.max_epochs=2 --set trainer.batch_size=32 --set trainer.lr=5e-5 --set trainer.head_lr=5e-5"
mkdir -p "$OUT"
job() {  # job NAME CMD...: run in the background under the time limit, log to OUT/NAME.log
  local name=$1; shift
  ( timeout -s KILL "$LIM" bash -c "$*" > "$OUT/$name.log" 2>&1; echo "rc=$?" >> "$OUT/$name.log" ) &
}

# MNRE zero-shot (5 relation splits): the three ablation rows beside MG-VMoE
job mnre_full "$Q configs/mg_vmoe_mnre.yaml --seeds 0 1 2 3 4 --zero-shot-folds $ZS --out $OUT/zs_mnre_full --runs runs/zs"
job mnre_label_sim "$Q configs/label_sim_mnre.yaml --seeds 0 1 2 3 4 --zero-shot-folds $ZS --out $OUT/zs_mnre --runs runs/zs"
job mnre_single_vib "$Q configs/mg_vmoe_mnre.yaml --seeds 0 1 2 3 4 --zero-shot-folds $ZS --set model.num_experts=1 --suffix _single_vib --out $OUT/zs_mnre_single_vib --runs runs/zs"
job mnre_no_vat "$Q configs/mg_vmoe_mnre.yaml --seeds 0 1 2 3 4 --zero-shot-folds $ZS --set model.vat=off --suffix _no_vat --out $OUT/zs_mnre_no_vat --runs runs/zs"
# synthetic typing (3 folds, config settings); the first job generates the set, the second waits
job syn_a "$Q configs/label_sim_synthetic_typing.yaml configs/mg_vmoe_synthetic_typing.yaml --seeds 0 1 2 --zero-shot-folds $C --out $OUT/zs_syn --runs runs/zs && true"
job syn_b "until [ -s $OUT/zs_syn/runs.jsonl ]; do sleep 5; done; $Q configs/mg_vmoe_synthetic_typing.yaml --seeds 0 1 2 --zero-shot-folds $C --set model.num_experts=1 --suffix _single_vib --out $OUT/zs_syn_single_vib --runs runs/zs; $Q configs/mg_vmoe_synthetic_typing.yaml --seeds 0 1 2 --zero-shot-folds $C --set model.vat=off --suffix _no_vat --out $OUT/zs_syn_no_vat --runs runs/zs"
# Twitter leave-one-type-out typing (generalised: all 4 types are candidates)
job loto15_mg "$Q configs/mg_vmoe_twitter2015_typing.yaml --seeds 0 --held-out PER LOC ORG OTHER $LOTO --out $OUT/loto15 --runs runs/zs"
job loto15_ls "$Q configs/label_sim_twitter2015_typing.yaml --seeds 0 --held-out PER LOC ORG OTHER $LOTO --out $OUT/loto15_label_sim --runs runs/zs"
job loto17_mg "$Q configs/mg_vmoe_twitter2017_typing.yaml --seeds 0 --held-out PER LOC ORG MISC $LOTO --out $OUT/loto17 --runs runs/zs"
job loto17_ls "$Q configs/label_sim_twitter2017_typing.yaml --seeds 0 --held-out PER LOC ORG MISC $LOTO --out $OUT/loto17_label_sim --runs runs/zs"
# bf16 (precision=auto) check against the fp32 rows of results/gpu_twitter2017.jsonl, and the
# NER model of the end-to-end evaluation (seed 0)
job bf16_t17 "$Q configs/text_twitter2017.yaml --seeds 0 1 2 $T17 --out $OUT/bf16_twitter2017 --runs runs/e2e"
# end-to-end MNRE: text RE model, then raw post -> NER (Twitter-2017) -> RE on MNRE test
job e2e "$Q configs/text_mnre.yaml --seeds 0 $RE --out $OUT/e2e_re --runs runs/e2e && until [ -f runs/e2e/text_twitter2017/seed0/model/model.safetensors ]; do sleep 5; done && $PY benchmarks/e2e_mnre.py --ner runs/e2e/text_twitter2017/seed0/model --re runs/e2e/text_mnre/seed0/model --device cuda --output $OUT/e2e_mnre.json && $PY benchmarks/e2e_mnre.py --ner runs/e2e/text_twitter2017/seed0/model --re runs/e2e/text_mnre/seed0/model --device cuda --no-type-constraints --output $OUT/e2e_mnre_no_constraints.json"
wait
echo "all jobs done"
