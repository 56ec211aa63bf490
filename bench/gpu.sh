#!/usr/bin/env bash
# One GPU: the step benchmarks at batch 64 and at the largest batch that fits, and the
# paper config's stages timed on fold 0 (capped steps, full per-step cost), in ~10 min
# on one H200. Needs the project installed with its GPU extra (pip install -e '.[gpu]');
# nothing is downloaded. Figures go to $OUT_FILE (default bench-gpu-<date>.txt), one
# JSON line per measurement; paste them into MEASUREMENTS.md with the commit.
#
#   timeout 600 bash bench/gpu.sh [OUT_FILE]
#
# Stage timing runs each launcher on the phantom with --config.num_steps capped (GAN 1000
# iterations, each 10-class classifier stage 1000 steps; generation makes the paper's full
# 18,000 patches per sign); a line gives the wall seconds including start-up and
# compilation, so per-step figures are upper bounds. Expected: ~4-5 min of benchmarks
# (9 processes), the dataset built on the CPUs meanwhile, ~1 min per stage; stages that
# would start after the budget are logged as skipped. Every command is bounded by `timeout`, and no new
# measurement starts after BUDGET_S seconds.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-python}
OUT_FILE=${1:-bench-gpu-$(date -u +%Y%m%d-%H%M).txt}
SCRATCH=${SCRATCH:-$(mktemp -d)}
export JAX_PLATFORMS=cuda TF_CPP_MIN_LOG_LEVEL=3
# The default 75 % preallocation is kept: the largest batch is what fits next to it.
: > "$OUT_FILE"
log() { echo "$1" | tee -a "$OUT_FILE"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
BUDGET_S=${BUDGET_S:-570}  # stop starting new measurements after this many seconds

log "{\"gpu_sh\": \"start\", \"date\": \"$(date -u +%FT%TZ)\", \"commit\": \"$(git rev-parse --short HEAD 2>/dev/null)\"}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | \
  sed 's/^/# gpu: /' | tee -a "$OUT_FILE"
$PY -c 'import jax; print("# jax", jax.__version__, jax.devices())' | tee -a "$OUT_FILE" || exit 1

# The phantom dataset (CPU work) is built while the GPU runs the benchmarks.
DATA="$SCRATCH/data"
( t=$(now); JAX_PLATFORMS=cpu timeout 400 $PY launch/make_dataset.py --source=phantom \
    --data_dir="$DATA" >"$SCRATCH/data.log" 2>&1 && since "$t" > "$SCRATCH/data.s" ) &
DATASET_PID=$!

# 1. Step benchmarks: batch 64, then larger batches (x8, x4) until one fails (out of memory).
bench() {  # bench SCRIPT BATCH STEPS -> logs the JSON line; nonzero on failure
  local line
  (( SECONDS < BUDGET_S )) || return 1
  line=$(timeout 120 $PY "bench/$1" --batch "$2" --steps "$3" 2>/dev/null | grep '^{' | tail -1)
  [ -n "$line" ] && log "$line"
}
for spec in "bench_classifier.py 20 512 4096" "bench_cvaegan.py 10 512 2048" \
            "bench_generate.py 20 4096 16384"; do
  set -- $spec
  script=$1 steps=$2
  shift 2
  bench "$script" 64 "$steps" || log "{\"failed\": \"$script\", \"batch\": 64}"
  largest=64
  for batch in "$@"; do
    if bench "$script" "$batch" "$steps"; then largest=$batch; else break; fi
  done
  log "{\"largest_batch_that_ran\": \"$script\", \"batch\": $largest, \"tried\": \"64 $*\"}"
done

# 2. The paper config's stages on fold 0 (capped steps), on the phantom built meanwhile.
wait "$DATASET_PID" || { log '{"failed": "make_dataset", "log": "'"$SCRATCH/data.log"'"}'; exit 1; }
log "{\"stage\": \"make_dataset phantom (CPU, beside the benchmarks)\", \"wall_s\": $(cat "$SCRATCH/data.s")}"
stage() {  # stage NAME STEPS LAUNCHER ARGS...
  local name=$1 steps=$2 t
  shift 2
  (( SECONDS < BUDGET_S )) || { log "{\"stage\": \"$name\", \"skipped\": \"over budget\"}"; return; }
  t=$(now)
  if timeout 240 $PY "$@" --config.data_dir="$DATA" --config.fold=0 >"$SCRATCH/$name.log" 2>&1; then
    log "{\"stage\": \"$name\", \"steps\": $steps, \"wall_s\": $(since "$t")}"
  else
    log "{\"stage\": \"$name\", \"failed\": true, \"log_tail\": \"$(tail -c 300 "$SCRATCH/$name.log" | tr '"\n' "' ")\"}"
  fi
}
W="$SCRATCH/fold0"
stage gan 1000 launch/train_gan.py --config=configs/train_gan.py:paper --workdir="$W/gan" \
  --config.num_steps=1000
stage generate 18000 launch/generate.py --config=configs/generate.py:paper \
  --workdir="$W/generate" --config.gan_workdir="$W/gan"
C="launch/train_classifier.py --config=configs/train_classifier.py:paper --config.num_steps=1000"
stage pretrain_ten 1000 $C --workdir="$W/pretrain" --config.mode=pretrain \
  --config.generated_dir="$W/generate"
stage finetune_ten 1000 $C --workdir="$W/finetune" --config.mode=finetune \
  --config.init_from="$W/pretrain"
stage scratch_ten 1000 $C --workdir="$W/scratch" --config.mode=scratch
stage augment_ten 1000 $C --workdir="$W/augment" --config.mode=augment
log "{\"gpu_sh\": \"done\", \"out\": \"$OUT_FILE\", \"scratch\": \"$SCRATCH\"}"
