#!/usr/bin/env bash
# Every CUDA test and GPU benchmark in one run, for a machine with an NVIDIA GPU (and nvcc), most valuable first:
# 1. builds our CUDA rasterizer, CPU and radiance-field extensions for the visible GPU and, where gsplat is
#    importable, gsplat's JIT kernels beside them (the peer of issue 16);
# 2. the gsplat peer benchmark (scripts/bench_gsplat_peer.py: B1-B4 and training steps per second, same GPU, same run);
# 3. B5 (4D slice + rasterise) on the GPU;
# 4. the CUDA parity / training tests (they skip without a GPU elsewhere; shared data and demo scenes are found
#    through ../shared/data and $SPLATFORGE_DEMO_SCENES where the machine lacks open3d);
# 5. B1-B4 of our CUDA backend alone, and B6 (Gabor) unless SKIP_B6=1.
# BASELINE_TREE=<folder holding another checkout> (e.g. `git archive <rev> | tar -x -C .gpubase`, carried): its CUDA
# extension is built beside ours and B1-B4 run alternately in both trees, AB_ROUNDS times (default 2), with this
# tree's benchmark scripts in both, so the two differ in their kernels alone (an A/B of a kernel change inside one
# lease); step 5's B1-B4 are then those runs.
# Output: stdout, and $OUT/gpu_check.log plus JSON results when $OUT is set. Each stage has its own time limit so a
# slow one cannot take the later ones' results with it.
# On a lent machine without network or open3d, first `bash scripts/prepare_gpu_carry.sh` here (wheels, data, demo
# scenes to carry; its header has the device command).
# Usage: bash scripts/gpu_check.sh [extra test files...]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu_check}"
mkdir -p "$out"
exec > >(tee "$out/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-/tmp/sf_ext}"
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
lscpu | grep -E "Model name|^CPU\(s\)"
grep -qw avx512f /proc/cpuinfo && echo "CPU has AVX-512: the hand-vectorised row kernels run" || echo "CPU without AVX-512"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
builds=$(( ${BASELINE_TREE:+1} + 2 ))
jobs_each=$(( $(nproc) / builds > 1 ? $(nproc) / builds : 1 ))
status=0
SECONDS=0
gsplat_pid=""
if python3 -c "import gsplat" 2>/dev/null; then
  MAX_JOBS=$(( $(nproc) / 2 > 1 ? $(nproc) / 2 : 1 )) timeout 420 python3 -c "
import time; t = time.time()
from gsplat.cuda._backend import _C
assert _C is not None, 'gsplat CUDA kernels did not build'
print(f'[gpu_check] gsplat kernels built in {time.time() - t:.0f} s')" > "$out/gsplat_build.log" 2>&1 &
  gsplat_pid=$!
else
  echo "[gpu_check] gsplat not importable: the peer benchmark is skipped"
fi
base_pid=""
if [ -n "${BASELINE_TREE:-}" ]; then
  (cd "$BASELINE_TREE" && TORCH_EXTENSIONS_DIR=/tmp/sf_ext_base MAX_JOBS=$jobs_each timeout 420 python3 -c "
from cuda_rasterizer._build import build_cuda_extension; build_cuda_extension()") > "$out/baseline_build.log" 2>&1 &
  base_pid=$!
fi
MAX_JOBS=$jobs_each timeout 420 python3 -c "
from cuda_rasterizer._build import build_cuda_extension, build_cpu_extension
from cuda_rasterizer._field_build import build_cuda_field_extension
build_cuda_extension(); build_cpu_extension(); build_cuda_field_extension()" || status=1
echo "[gpu_check] our builds: ${SECONDS} s"
if [ -n "$gsplat_pid" ]; then
  if wait "$gsplat_pid"; then
    tail -1 "$out/gsplat_build.log"
    timeout 240 python3 -m scripts.bench_gsplat_peer --out "$out/bench_gsplat_peer.json" || status=1
  else
    echo "[gpu_check] gsplat build failed:"; tail -20 "$out/gsplat_build.log"; status=1
  fi
fi
echo "[gpu_check] peer benchmark done: ${SECONDS} s"
if [ -n "$base_pid" ]; then
  if wait "$base_pid"; then
    cp scripts/bench_rasterizer.py scripts/bench_cuda.py "$BASELINE_TREE/scripts/"
    for round in $(seq "${AB_ROUNDS:-2}"); do
      for tree in "$BASELINE_TREE" .; do
        echo "[gpu_check] A/B round $round: $tree"
        (cd "$tree" && TORCH_EXTENSIONS_DIR=$([ "$tree" = . ] && echo "$TORCH_EXTENSIONS_DIR" || echo /tmp/sf_ext_base) \
          timeout 120 python3 -m scripts.bench_cuda --cases B1 B2 B3 B4 --repeats 10 --no-cpu-baseline) || status=1
      done
    done
  else
    echo "[gpu_check] baseline build failed:"; tail -20 "$out/baseline_build.log"; status=1
  fi
  echo "[gpu_check] A/B done: ${SECONDS} s"
fi
timeout 120 python3 -m scripts.bench_4d --backend cuda --out "$out/bench_4d_cuda.json" || status=1
echo "[gpu_check] B5 done: ${SECONDS} s"
timeout 300 python3 -m pytest -q -ra -p no:cacheprovider tests/test_cuda_backend.py tests/test_gaussian4d_cuda.py \
  tests/test_fused_loss.py tests/test_gabor_rasterizer.py tests/test_field_ops.py tests/test_field_training.py \
  tests/test_training_device.py "$@" || status=1
echo "[gpu_check] tests done: ${SECONDS} s"
if [ -z "$base_pid" ]; then
  timeout 120 python3 -m scripts.bench_cuda --cases ${BENCH_CASES:-B1 B2 B3 B4} --repeats 10 --no-cpu-baseline \
    --out "$out/bench_cuda.json" || status=1
fi
if [ "${SKIP_B6:-0}" != 1 ]; then
  timeout 120 python3 -m scripts.bench_gabor --backend cuda --repeats 10 --out "$out/bench_gabor_cuda.json" || status=1
fi
echo "[gpu_check] all done: ${SECONDS} s, status ${status}"
exit $status
