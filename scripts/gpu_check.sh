#!/usr/bin/env bash
# Every CUDA test and GPU benchmark in one run, for a machine with an NVIDIA GPU (and nvcc): builds the CUDA
# extension for the visible GPU, runs the CUDA parity tests (they skip without a GPU elsewhere) and the Gabor CPU
# tests on that machine's CPU (which may have AVX-512, unlike the development machines), then B1-B4 (bench_cuda) and
# B6 (Gabor) on the GPU. Output: stdout, and $OUT/gpu_check.log plus JSON results when $OUT is set.
# Usage: bash scripts/gpu_check.sh [extra test files...]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp/gpu_check}"
mkdir -p "$out"
exec > >(tee "$out/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1 TORCH_EXTENSIONS_DIR="${TORCH_EXTENSIONS_DIR:-/tmp/sf_ext}" MAX_JOBS="${MAX_JOBS:-16}"
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
lscpu | grep -E "Model name|^CPU\(s\)"
grep -qw avx512f /proc/cpuinfo && echo "CPU has AVX-512: the hand-vectorised row kernels run" || echo "CPU without AVX-512"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
status=0
SECONDS=0
python3 -c "from cuda_rasterizer._build import build_cuda_extension, build_cpu_extension; build_cuda_extension(); build_cpu_extension()" || status=1
echo "[gpu_check] builds: ${SECONDS} s"
python3 -m pytest -q -ra -p no:cacheprovider tests/test_cuda_backend.py tests/test_gaussian4d_cuda.py \
  tests/test_fused_loss.py tests/test_gabor_rasterizer.py "$@" || status=1
echo "[gpu_check] tests done: ${SECONDS} s"
python3 -m scripts.bench_cuda --cases ${BENCH_CASES:-B1 B2 B3 B4} --repeats 10 --no-cpu-baseline --out "$out/bench_cuda.json" || status=1
python3 -m scripts.bench_gabor --backend cuda --repeats 10 --out "$out/bench_gabor_cuda.json" || status=1
echo "[gpu_check] all done: ${SECONDS} s, status ${status}"
exit $status
