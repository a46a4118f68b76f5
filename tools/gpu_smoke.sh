#!/usr/bin/env bash
# GPU smoke test of GRPO training: a few `mgfrec fit` steps on one CUDA GPU with Lightning's plain GPU
# strategy, DeepSpeed ZeRO stage 2 (then resumed from its checkpoint folder) and ZeRO stage 3, after a
# GPU `mgfrec sft` warm start, on the built-in synthetic data set. Each stage has its own time limit and
# log; a failing stage is recorded and the next one still runs. The end is a summary table.
#
#   tools/gpu_smoke.sh OUT [EMBEDDING_MODEL]
#
# OUT gets summary.txt, all.log (each stage's tail) and smoke.tgz (every stage's log, metrics.csv, run.json). EMBEDDING_MODEL is
# embedding.model (default: the bundled MiniLM; a local folder works where that package is absent).
# Needs: a CUDA GPU, mgfrec installed, deepspeed importable. Results of a run are in docs/gpu.md.
set -u
OUT=${1:?usage: tools/gpu_smoke.sh OUT [EMBEDDING_MODEL]}
EMB=${2:-bundled:all-MiniLM-L6-v2}
WORK=${SMOKE_WORK:-/tmp/mgfrec-gpu-smoke}
DEVICE=${SMOKE_DEVICE:-cuda}  # SMOKE_DEVICE=cpu: a dry run of the script on the CPU (DeepSpeed as deepspeed_stage_N_cpu)
DS=$([ "$DEVICE" = cpu ] && echo _cpu)
if [ "$DEVICE" = cpu ]; then  # every stage shrunk and given 4x its time: the GPU sizes never got past sft on 2 cores
  SFT_SIZE=(--epochs 1 --max-train-samples 32 --valid-samples 8)
  BATCH=2 VALID=4 LIMIT=20 SCALE=4
else
  SFT_SIZE=(--epochs 3 --max-train-samples 600 --valid-samples 64)
  BATCH=8 VALID=32 LIMIT=200 SCALE=1
fi
rm -rf "$WORK" && mkdir -p "$WORK" && WORK=$(cd "$WORK" && pwd) || { echo "error: cannot create $WORK" >&2; exit 2; }
# OUT as an absolute path: the archive is written from inside $WORK (`tools/gpu_smoke.sh runs/gpu-smoke` wrote none)
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || { echo "error: cannot create OUT folder $OUT" >&2; exit 2; }
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
# PYTHONFAULTHANDLER + `timeout -s ABRT`: a stage that runs out of time dumps every thread's Python stack into
# its log (how to see where a stall waits, e.g. DeepSpeed stage 3, docs/gpu.md)
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 PYTHONFAULTHANDLER=1

cat >"$WORK/gpu.yaml" <<EOF
embedding:
  model: $EMB
  device: $DEVICE
trainer:
  accelerator: $([ "$DEVICE" = cpu ] && echo cpu || echo gpu)
  devices: 1
  global_batch_size: $BATCH
  micro_batch_size: 16
  val_check_interval: 2
EOF
COMMON=(--config "$WORK/gpu.yaml")

stage() {  # stage NAME SECONDS command...
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS rc
  if [ -n "${SMOKE_ONLY:-}" ] && [[ " $SMOKE_ONLY " != *" $name "* ]]; then return 0; fi  # SMOKE_ONLY="env sft ..."
  echo "== $name: $*" | tee -a "$OUT/all.log"
  timeout -s ABRT -k 10 "$((limit * SCALE))" "$@" >"$WORK/$name.log" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then tail -n 25 "$WORK/$name.log"; else tail -n 120 "$WORK/$name.log"; fi >>"$OUT/all.log"
  printf '%-16s rc=%-4s %5ss  %s\n' "$name" "$rc" "$((SECONDS - t0))" "$*" | tee -a "$SUMMARY"
  return 0
}

PY=${PYTHON:-python3}
stage env 60 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $PY -c '
import torch, lightning, transformers
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))
print(\"lightning\", lightning.__version__, \"transformers\", transformers.__version__)
import deepspeed; print(\"deepspeed\", deepspeed.__version__)'"
[ -f "$WORK/env.log" ] && cat "$WORK/env.log" >>"$SUMMARY"  # absent when SMOKE_ONLY leaves the env stage out

D="$WORK/data"
stage prepare 120 mgfrec data prepare synthetic --out "$D" "${COMMON[@]}"
# recall: last-title, as every fit stage after it reads sft's (a SASRec fit took most of sft's 126 s of 150 on an H200)
stage sft 150 mgfrec sft --data "$D" --out "$WORK/sft" "${COMMON[@]}" "${SFT_SIZE[@]}" --batch-size 16 \
  --recall-model last-title --no-progress
stage fit-gpu 120 mgfrec fit --data "$D" --init "$WORK/sft" --out "$WORK/fit-gpu" "${COMMON[@]}" \
  --strategy auto --max-steps 4 --valid-samples "$VALID" --no-progress
stage fit-ds2 150 mgfrec fit --data "$D" --init "$WORK/sft" --out "$WORK/fit-ds2" "${COMMON[@]}" \
  --strategy deepspeed_stage_2$DS --max-steps 4 --valid-samples "$VALID" --no-progress
stage fit-ds2-resume 120 mgfrec fit --data "$D" --init "$WORK/sft" --out "$WORK/fit-ds2" "${COMMON[@]}" \
  --strategy deepspeed_stage_2$DS --max-steps 6 --valid-samples "$VALID" --no-progress --resume
stage fit-ds3 120 mgfrec fit --data "$D" --init "$WORK/sft" --out "$WORK/fit-ds3" "${COMMON[@]}" \
  --strategy deepspeed_stage_3$DS --max-steps 3 --valid-samples "$VALID" --no-progress
stage fit-ds2-small 240 mgfrec fit --data "$D" --out "$WORK/fit-ds2-small" "${COMMON[@]}" \
  --strategy deepspeed_stage_2$DS --max-steps 3 --valid-samples "$((VALID / 2))" --no-progress --recall-model last-title \
  --set policy.model=preset:small --set trainer.precision=bf16-mixed
stage evaluate 90 mgfrec evaluate "$WORK/fit-ds2" --split test --limit "$LIMIT" "${COMMON[@]}" --json

"$PY" - "$WORK" >>"$SUMMARY" 2>&1 <<'EOF'
import csv, sys
from pathlib import Path
for run in sorted(p for p in Path(sys.argv[1]).glob("fit-*") if p.is_dir()):  # not the stages' fit-*.log
    path = run / "metrics.csv"
    if not path.is_file():
        print(f"{run.name}: no metrics.csv")
        continue
    for row in csv.DictReader(path.open()):
        keys = ("step", "reward/mean", "format_valid", "kl", "grad_norm", "time/rollout", "time/train", "time/step",
                "memory/gpu_peak_gib", "valid/ndcg_full")
        def show(value):  # 4 significant digits, exponent kept (a KL of 4e-06 must not read as 4.2)
            try:
                return f"{float(value):.4g}"
            except ValueError:
                return value
        print(run.name, " ".join(f"{k}={show(row.get(k, ''))}" for k in keys))
EOF
nvidia-smi --query-gpu=memory.used --format=csv >>"$SUMMARY" 2>&1
(cd "$WORK" && find . \( -name '*.log' -o -name metrics.csv -o -name run.json -o -name sft_metrics.csv -o -name 'agent_test.json' \) -print0 |
  tar --null -czf "$OUT/smoke.tgz" -T -)
cat "$SUMMARY"
