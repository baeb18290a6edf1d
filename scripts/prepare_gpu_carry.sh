#!/usr/bin/env bash
# Prepares, on a development machine, what a lent GPU machine needs beside the working tree (it has no network and no
# open3d), in two folders that .git/info/exclude keeps out of git and that a device run carries:
#   .whl/      wheels of the Python packages its image lacks: tyro (and its pure-Python needs), plyfile, gsplat 1.5.3
#   .gpudata/  data/: lego's train split and fern images_8 (the peer and training benchmarks), demo_scenes/: the GPU
#              test modules' procedural scenes (see tests/conftest.py, SPLATFORGE_DEMO_SCENES)
# About 27 MB together. Then, on the GPU machine (carry .whl and .gpudata):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
#   mkdir -p ../shared && ln -sfn "$PWD/.gpudata/data" ../shared/data
#   SPLATFORGE_DEMO_SCENES="$PWD/.gpudata/demo_scenes" TORCH_CUDA_ARCH_LIST=9.0 bash scripts/gpu_check.sh
# Usage: bash scripts/prepare_gpu_carry.sh [shared data folder, default ../shared/data]
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data}"
for folder in .whl .gpudata; do
  grep -qx "/$folder/" .git/info/exclude 2>/dev/null || echo "/$folder/" >> .git/info/exclude
done
platform=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_17_x86_64)
python3 -m pip download -q --no-deps "${platform[@]}" -d .whl tyro docstring-parser typeguard shtab plyfile gsplat==1.5.3
rm -rf .gpudata && mkdir -p .gpudata/data/nerf_synthetic_lego_400 .gpudata/data/llff_fern
cp -r "$data/nerf_synthetic_lego_400/train" "$data/nerf_synthetic_lego_400/transforms_train.json" \
  .gpudata/data/nerf_synthetic_lego_400/
cp -r "$data/llff_fern/images_8" "$data/llff_fern/sparse" "$data/llff_fern/poses_bounds.npy" .gpudata/data/llff_fern/
python3 -c "import sys; sys.path.insert(0, 'tests'); import conftest; conftest.write_demo_scenes('.gpudata/demo_scenes')"
du -sh .whl .gpudata
