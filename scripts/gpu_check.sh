#!/usr/bin/env bash
# Every CUDA test and GPU benchmark in one run, for a machine with an NVIDIA GPU (and nvcc), most valuable first:
# 1. builds our CUDA rasterizer, CPU and radiance-field extensions for the visible GPU and, where gsplat is
#    importable, gsplat's JIT kernels beside them (the peer of issue 16);
# 2. the gsplat peer benchmark (scripts/bench_gsplat_peer.py: B1-B4 and training steps per second, same GPU, same run);
# 3. B5 (4D slice + rasterise) on the GPU;
# 4. the CUDA parity / training tests (they skip without a GPU elsewhere; shared data and demo scenes are found
#    through ../shared/data and $SPLATFORGE_DEMO_SCENES where the machine lacks open3d);
# 5. B1-B4 of our CUDA backend alone, and B6 (Gabor) unless SKIP_B6=1.
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
jobs_each=$(( $(nproc) / 2 > 1 ? $(nproc) / 2 : 1 ))
status=0
SECONDS=0
gsplat_pid=""
if python3 -c "import gsplat" 2>/dev/null; then
  MAX_JOBS=$jobs_each timeout 420 python3 -c "
import time; t = time.time()
from gsplat.cuda._backend import _C
assert _C is not None, 'gsplat CUDA kernels did not build'
print(f'[gpu_check] gsplat kernels built in {time.time() - t:.0f} s')" > "$out/gsplat_build.log" 2>&1 &
  gsplat_pid=$!
else
  echo "[gpu_check] gsplat not importable: the peer benchmark is skipped"
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
timeout 120 python3 -m scripts.bench_4d --backend cuda --out "$out/bench_4d_cuda.json" || status=1
echo "[gpu_check] B5 done: ${SECONDS} s"
timeout 300 python3 -m pytest -q -ra -p no:cacheprovider tests/test_cuda_backend.py tests/test_gaussian4d_cuda.py \
  tests/test_fused_loss.py tests/test_gabor_rasterizer.py tests/test_field_ops.py tests/test_field_training.py \
  tests/test_training_device.py "$@" || status=1
echo "[gpu_check] tests done: ${SECONDS} s"
timeout 120 python3 -m scripts.bench_cuda --cases ${BENCH_CASES:-B1 B2 B3 B4} --repeats 10 --no-cpu-baseline \
  --out "$out/bench_cuda.json" || status=1
if [ "${SKIP_B6:-0}" != 1 ]; then
  timeout 120 python3 -m scripts.bench_gabor --backend cuda --repeats 10 --out "$out/bench_gabor_cuda.json" || status=1
fi
echo "[gpu_check] all done: ${SECONDS} s, status ${status}"
exit $status
