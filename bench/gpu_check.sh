#!/usr/bin/env bash
# One GPU check of pip-adapter, about 8 minutes on one GPU; everything it writes goes under $OUT.
#
#   OUT=/somewhere bash bench/gpu_check.sh            # on a machine with a CUDA GPU
#   OUT=/tmp/gc bash bench/gpu_check.sh --dry-run     # the same steps on the CPU in seconds (tiny sizes, Gloo)
#   PYTHON=.venv/bin/python bash bench/gpu_check.sh   # the interpreter to run (default: python on PATH)
#
# Steps (each with a time limit; a failed step is recorded in summary.txt and the others still run):
#   env          torch / CUDA / GPU description (nvidia-smi when present)
#   tests        the CUDA-relevant tests (device-parametrised ones gain CUDA cases on a GPU);
#                dry run: collected only
#   train_fp32   50-iteration quickstart with `torchrun --nproc_per_node=1 ... --launcher pytorch` (NCCL on a GPU)
#   train_bf16   the same with train.amp=bf16
#   efficiency   bench/efficiency.py on CUDA only (parameters, MACs, latency, peak memory)
#   precision    bench/precision.py: fp32 vs bf16 latency and memory, P2F bands, training steps
#   compiled     bench/precision.py --compile, fp32, on the paper's anchor pair (Restormer, PIP_Restormer)
# Results: $OUT/summary.txt, one <step>.log per step, $OUT/efficiency_cuda.md, $OUT/precision*/precision.md,
# $OUT/train_*/ (logs and validation_latest.json of the training runs).
set -u -o pipefail

DRY=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$arg' (expected --dry-run or --help)" >&2; exit 2 ;;
    esac
done

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$PWD/gpu_check_out}
PY=${PYTHON:-python}
if ! "$PY" -c "import torch" > /dev/null 2>&1; then
    echo "gpu_check.sh: '$PY' cannot import torch; set PYTHON to the environment's interpreter (e.g. PYTHON=.venv/bin/python)" >&2
    exit 2
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")   # datasets and checkpoints: not copied to $OUT
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
cd "$REPO"
: > "$OUT/summary.txt"
FAILED=0
T_START=$(date +%s)

step() {  # step NAME LIMIT_SECONDS COMMAND...: run, log to $OUT/NAME.log, record rc and seconds
    local name=$1 limit=$2 start rc
    shift 2
    start=$(date +%s)
    echo "== $name (limit ${limit}s)"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    [ "$rc" -eq 0 ] || FAILED=1
    echo "$name rc=$rc seconds=$(( $(date +%s) - start ))" | tee -a "$OUT/summary.txt"
}

if [ "$DRY" -eq 1 ]; then
    export CUDA_VISIBLE_DEVICES=""
    export OMP_NUM_THREADS=1
    echo "mode: dry run (CPU, tiny sizes, Gloo)" >> "$OUT/summary.txt"
    TEST_ARGS=(--collect-only -q)
    TRAIN_FORCE=(train:total_iter=2 train:scheduler:total_iter=2 train:scheduler:warmup_iter=1
                 datasets:train:gt_size=32 datasets:train:batch_size_per_gpu=2 logger:print_freq=1
                 builtin_data:image_size=64 builtin_data:crop_size=32 builtin_data:crops_per_image=2
                 builtin_data:val_size=32 builtin_data:max_train_images=2 builtin_data:max_val_images=1
                 builtin_data:progress=false)
    EFF_ARGS=(--quick --no-cuda --no-memory --repeats 1 --size 32 --models NAFNet-8 PIP-NAFNet-8)
    PREC_ARGS=(--quick --device cpu --no-memory --repeats 1 --size 32 --models PIP-NAFNet-8)
    COMPILE_ARGS=(--quick --device cpu --compile --compile-backend eager --no-train --no-memory --repeats 1
                  --size 32 --chunk 0 --models NAFNet-8)
    LIMITS=(300 300 300 300 300 300 300)   # guards only: a loaded CPU is slow
else
    echo "mode: GPU" >> "$OUT/summary.txt"
    TEST_ARGS=(-q -x)
    TRAIN_FORCE=(train:total_iter=50 train:scheduler:total_iter=50 train:scheduler:warmup_iter=5
                 logger:print_freq=10 logger:save_checkpoint_freq=50)
    EFF_ARGS=(--no-cpu --repeats 50)
    PREC_ARGS=(--device cuda)
    COMPILE_ARGS=(--device cuda --compile --no-train --no-memory --chunk 0 --precisions fp32
                  --models "PIP_Restormer (release variant)")
    LIMITS=(80 70 55 75 80 85 30)   # tests, 2 trainings, efficiency, precision, compiled, env: 475 s at most
fi

step env "${LIMITS[6]}" "$PY" -c "
import torch, platform
print('python', platform.python_version(), 'torch', torch.__version__, 'cuda', torch.version.cuda)
print('cuda available', torch.cuda.is_available())
if torch.cuda.is_available():
    print('gpu', torch.cuda.get_device_name(0), 'bf16', torch.cuda.is_bf16_supported())
"
if [ "$DRY" -eq 0 ]; then
    command -v nvidia-smi > /dev/null && nvidia-smi >> "$OUT/env.log" 2>&1
    if ! grep -q "cuda available True" "$OUT/env.log"; then
        echo "gpu_check.sh: no CUDA device here; use --dry-run on a CPU" | tee -a "$OUT/summary.txt" >&2
        exit 1
    fi
fi

step tests "${LIMITS[0]}" "$PY" -m pytest "${TEST_ARGS[@]}" -p no:cacheprovider \
    tests/test_precision.py tests/test_bsr_units.py tests/test_restore_export.py tests/test_restore_api.py

for amp in fp32 bf16; do
    mkdir -p "$WORK/train_$amp" "$OUT/train_$amp"
    [ -e "$WORK/train_fp32/datasets" ] && [ "$amp" != fp32 ] && ln -s "$WORK/train_fp32/datasets" "$WORK/train_$amp/"
    limit=${LIMITS[1]}
    [ "$amp" = bf16 ] && limit=${LIMITS[2]}
    step "train_$amp" "$limit" bash -c 'cd "$1" && shift && exec "$@"' _ "$WORK/train_$amp" \
        "$PY" -m torch.distributed.run --nproc_per_node=1 --master_port=$((29400 + RANDOM % 500)) \
        -m pip_adapter.cli.basicsr_cmd train -opt "$REPO/basicsr_options/quickstart.yml" --launcher pytorch \
        --force_yml name=gpu_check_$amp train:amp=$amp "${TRAIN_FORCE[@]}"
    for f in "$WORK/train_$amp"/experiments/gpu_check_$amp/*.log \
             "$WORK/train_$amp"/experiments/gpu_check_$amp/validation_latest.json; do
        [ -f "$f" ] && cp "$f" "$OUT/train_$amp/"
    done
done

step efficiency "${LIMITS[3]}" "$PY" bench/efficiency.py "${EFF_ARGS[@]}" \
    --out "$OUT/efficiency_cuda.md" --json "$OUT/efficiency_cuda.json"
step precision "${LIMITS[4]}" "$PY" bench/precision.py "${PREC_ARGS[@]}" --out-dir "$OUT/precision"
step compiled "${LIMITS[5]}" "$PY" bench/precision.py "${COMPILE_ARGS[@]}" --out-dir "$OUT/precision_compiled"

echo "total seconds=$(( $(date +%s) - T_START )) failed=$FAILED" | tee -a "$OUT/summary.txt"
exit "$FAILED"
