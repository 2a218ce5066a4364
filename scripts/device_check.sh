#!/usr/bin/env bash
# The GPU checks, in one call of a leased GPU machine (bare image with CUDA PyTorch; nothing can be
# fetched there, so Ray/Optuna/Hydra travel as wheels in .whl, see docs/GPU.md). Writes logs and JSON to
# $OUT. Usage there: bash scripts/device_check.sh [seconds for the whole script, default 500]
# STEPS picks and orders the checks (default: "tests packing memory throughput"); OLD_TREE=<folder with an
# older ups/ and benchmarks/train_throughput.py> runs train_throughput there and here alternately, twice.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_out}; mkdir -p "$OUT"
LIMIT=${1:-500}
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled
PY=${PY:-python3}
WHEELS=${WHEELS:-.whl}  # WHEELS=none: the packages are installed already
if [ -d "$WHEELS" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
  [ -f "$WHEELS/ray_slim.tar.xz" ] && tar -xJf "$WHEELS/ray_slim.tar.xz" -C /tmp/site
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
left() { echo $((LIMIT - SECONDS)); }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1; nproc; free -g | head -2
  $PY -c "import torch, ray, optuna, omegaconf; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'ray', ray.__version__, 'optuna', optuna.__version__)"
} 2>&1 | tee "$OUT/env.txt"
STEPS=${STEPS:-tests packing memory throughput}
for step in $STEPS; do
  case $step in
  tests)
    echo "== [$SECONDS s] CUDA tests"
    timeout 150 $PY -m pytest -m gpu tests/test_train.py tests/test_eval.py tests/test_data_solver.py tests/test_gpu_share.py tests/test_promotion_gates.py \
      -q -p no:cacheprovider 2>&1 | tail -n 60 | tee "$OUT/gpu_tests.log" ;;
  packing)
    echo "== [$SECONDS s] GPU packing ($(left) s left)"
    DEADLINE=$(( $(left) - 70 ))
    timeout $(( $(left) - 10 )) $PY benchmarks/gpu_packing.py --deadline-s "$DEADLINE" --out "$OUT/gpu_packing.json" ${PACK_ARGS:-} \
      > "$OUT/gpu_packing.log" 2>&1
    echo "rc=$?"; grep -E "^gpu_packing" "$OUT/gpu_packing.log" ;;
  memory)
    echo "== [$SECONDS s] GPU memory of each round's largest trial ($(left) s left)"
    timeout $(( $(left) - 5 )) $PY benchmarks/gpu_memory.py --out "$OUT/gpu_memory.json" > "$OUT/gpu_memory.log" 2>&1
    echo "rc=$?"; grep -E "^gpu_memory" "$OUT/gpu_memory.log" ;;
  throughput)
    echo "== [$SECONDS s] training loop on CUDA ($(left) s left)"
    for i in 1 2; do
      for tree in ${OLD_TREE:-} .; do
        [ "$(left)" -gt 50 ] || break
        tag=$([ "$tree" = . ] && echo new || echo old)
        (cd "$tree" && timeout $(( $(left) - 5 )) $PY benchmarks/train_throughput.py --n 512 --epochs 4) \
          > "$OUT/train_throughput_${tag}_$i.log" 2>&1
        echo "$tag $i rc=$?"; tail -n 1 "$OUT/train_throughput_${tag}_$i.log"
      done
      [ -n "${OLD_TREE:-}" ] || break
    done ;;
  esac
done
echo "== [$SECONDS s] done"
