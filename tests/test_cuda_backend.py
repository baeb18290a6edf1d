"""CUDA backend: the build test (runs everywhere nvcc exists: CI's proof that it compiles and links) and
CUDA-vs-CPU parity tests (skipped without a GPU)."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from cuda_rasterizer import cpu_backend, rasterize_gaussians

from conftest import random_gaussians, simple_K

_NVCC = shutil.which("nvcc") or (os.path.exists("/usr/local/cuda/bin/nvcc") and "/usr/local/cuda/bin/nvcc")


@pytest.mark.skipif(not _NVCC, reason="nvcc not installed")
def test_cuda_extension_builds_and_imports():
    """Compiles sf_math.h + the kernels for one arch (8.0) and imports the module (no GPU or driver needed)."""
    from cuda_rasterizer._build import build_cuda_extension

    ext = build_cuda_extension("8.0")
    for name in ("covar_fwd", "covar_bwd", "project_fwd", "project_bwd", "sh_fwd", "sh_bwd", "raster_fwd", "raster_bwd"):
        assert callable(getattr(ext, name)), name


def _needs_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")


def _scene(n, width, height, seed, sh_degree=None):
    means, quats, scales, opac, colors = random_gaussians(n, seed=seed, dtype=torch.float32)
    if sh_degree is not None:
        colors = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=torch.Generator().manual_seed(seed)) * 0.3
    return dict(means=means, quats=quats, scales=scales, opacities=opac, colors=colors,
                background=torch.tensor([0.1, 0.2, 0.3]), viewmat=torch.eye(4), K=simple_K(width, height, dtype=torch.float32),
                width=width, height=height, sh_degree=sh_degree)


def _run(scene, backend, device):
    leaves = {k: scene[k].to(device).clone().requires_grad_(True)
              for k in ("means", "quats", "scales", "opacities", "colors", "background")}
    out = rasterize_gaussians(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"],
                              leaves["colors"], scene["viewmat"].to(device), scene["K"].to(device), scene["width"],
                              scene["height"], sh_degree=scene["sh_degree"], background=leaves["background"],
                              backend=backend)
    gen = torch.Generator().manual_seed(3)
    weights = [torch.randn(t.shape, generator=gen).to(device) for t in (out.colors, out.alphas)]
    ((out.colors * weights[0]).sum() + (out.alphas * weights[1]).sum()).backward()
    res = {"colors": out.colors.detach().cpu(), "alphas": out.alphas.detach().cpu()}
    res.update({"grad_" + k: v.grad.cpu() for k, v in leaves.items()})
    return res


@pytest.mark.parametrize("n,width,height,sh_degree", [(500, 37, 53, None), (2000, 64, 64, 3)])
def test_cuda_matches_cpu(n, width, height, sh_degree):
    _needs_gpu()
    scene = _scene(n, width, height, seed=n, sh_degree=sh_degree)
    cpu = _run(scene, "cpu", "cpu")
    gpu = _run(scene, "cuda", "cuda")
    for key in ("colors", "alphas"):
        torch.testing.assert_close(gpu[key], cpu[key], atol=1e-4, rtol=0)
    for key in ("means", "quats", "scales", "opacities", "colors", "background"):
        scale = cpu["grad_" + key].abs().max()
        torch.testing.assert_close(gpu["grad_" + key], cpu["grad_" + key], atol=1e-3 * scale, rtol=1e-2)


def test_cuda_backend_is_registered_only_with_a_gpu():
    from cuda_rasterizer import available_backends

    assert ("cuda" in available_backends()) == torch.cuda.is_available()
    assert cpu_backend is not None
