#!/usr/bin/env bash
# The GPU checks of the trainer (issue 6), as one script for a lent GPU machine.
#
# That machine has its own PyTorch (not the venv's 2.13.0) and no Rust toolchain, so the
# binaries travel from here, stripped and xz-compressed, in the git-ignored folder .dev/,
# with a copy of the seed's token code (.dev/seed/token); bf-train then runs against the
# machine's libtorch through LD_LIBRARY_PATH. Prepare on the build machine:
#
#   mkdir -p .dev/seed && cp -r ../shared/seed/token .dev/seed/
#   for b in bf-train bf-eval bf-pipeline bf-fixtures; do
#     cp target/release/$b /tmp/$b && strip /tmp/$b && xz -c /tmp/$b > .dev/$b.xz; done
#
# and run `bash bench/gpu_check.sh` there. It prints, and writes under $OUT:
#   1. bf-train's CUDA self-check;
#   2. bench/bench_train.py on CUDA (the configuration: sequence_length 256, full
#      and router channel stages, batches 1, 8 and 32) beside the seed's PyTorch loop;
#   3. two longer token-model runs at the seed's sizes on the demo's fixture dataset, without
#      and with --history_dropout, each evaluated by bf-eval (teacher-forced and free-running
#      r, their shuffled-EEG controls, ridge): the question the CPU runs could not settle.
# Knobs: SKIP_BENCH=1, SKIP_TRAIN=1, BENCH_SECONDS, TRAIN_SECONDS, TRAIN_STEPS,
# HISTORY_DROPOUTS ("0 0.5"), EXTRA_TRAIN (more bf-train flags, e.g. "--decoder_eeg mixed"),
# OURS_EXTRA (bf-train flags of the second speed table; default the issue-18 levers).
set -uo pipefail
OUT=${OUT:-/tmp/bf-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
TL=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH=$TL
python3 -c 'import torch; print("machine torch", torch.__version__, torch.cuda.get_device_name(0))'
B=/tmp/bfbin
mkdir -p $B
for f in .dev/*.xz; do
  n=$(basename "$f" .xz)
  xz -dc "$f" > $B/$n && chmod +x $B/$n
done
$B/bf-train --self-check --device cuda || { echo "bf-train cannot use CUDA with this machine's libtorch"; exit 3; }
mkdir -p ../shared && cp -r .dev/seed ../shared/

D=/tmp/bfdata
mkdir -p $D
(cd $D && $B/bf-fixtures --out ds000117-fixture > /dev/null && $B/bf-pipeline --quiet ingest ds000117-fixture \
  && $B/bf-pipeline --quiet tokenize) || exit 4
S=$D/ds000117-fixture/derivatives/brainformer/shards

echo "== speed"
[ -z "${SKIP_BENCH:-}" ] && timeout "${BENCH_SECONDS:-150}" python3 bench/bench_train.py --device cuda --bin $B --shards $S --seq 256 \
  --batch 1,8,32 --steps 10 | tee "$OUT/bench.txt"
# Issue 18's levers on our side (fused AdamW, chunked cross-entropy, bf16 autocast), same run.
[ -z "${SKIP_BENCH:-}" ] && timeout "${BENCH_SECONDS:-150}" python3 bench/bench_train.py --device cuda --bin $B --shards $S --seq 256 \
  --batch 1,8,32 --steps 10 --ours_extra="${OURS_EXTRA:---fused_adamw --loss_chunk 65536 --precision bf16}" | tee "$OUT/bench-levers.txt"

[ -n "${SKIP_TRAIN:-}" ] && exit 0
echo "== training runs"
TRAIN="--d_model 64 --n_heads 4 --n_layers 1 --d_ff 256 --sequence_length 64 --batch_size 32 --lr 1e-3 \
  --warmup_steps 100 --max_steps ${TRAIN_STEPS:-3000} --eval_interval 250 --eval_batches 16 --device cuda --quiet \
  ${EXTRA_TRAIN:-}"
for hd in ${HISTORY_DROPOUTS:-0 0.5}; do
  timeout "${TRAIN_SECONDS:-100}" $B/bf-train --shards $S --out /tmp/run-hd$hd $TRAIN --history_dropout $hd --overwrite
  echo "bf-train history_dropout $hd exit $?"
  tail -n 1 /tmp/run-hd$hd/metrics.jsonl
  timeout 45 $B/bf-eval --checkpoint /tmp/run-hd$hd/best --shards $S --out /tmp/eval-hd$hd --device cuda \
    --max-windows 64 --free-windows 16 --ridge-windows 400
  cp /tmp/eval-hd$hd/metrics.json "$OUT/metrics-hd$hd.json"
done
(cd /tmp && tar czf "$OUT/runs.tgz" run-hd*/best run-hd*/metrics.jsonl 2> /dev/null)
ls -la "$OUT"
