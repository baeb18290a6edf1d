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
    for name in ("covar_fwd", "covar_bwd", "project_fwd", "project_bwd", "sh_fwd", "sh_bwd", "raster_fwd", "raster_bwd",
                 "slice4_fwd", "slice4_bwd", "l1_ssim", "gabor_project_fwd", "gabor_project_bwd"):
        assert callable(getattr(ext, name)), name


def _needs_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")


def _scene(n, width, height, seed, sh_degree=None, channels=3, background=True):
    means, quats, scales, opac, colors = random_gaussians(n, seed=seed, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    if sh_degree is not None:
        colors = torch.randn(n, (sh_degree + 1) ** 2, channels, generator=gen) * 0.3
    elif channels != 3:
        colors = torch.rand(n, channels, generator=gen)
    bg = torch.linspace(0.1, 0.3, channels) if background else None
    return dict(means=means, quats=quats, scales=scales, opacities=opac, colors=colors, background=bg,
                viewmat=torch.eye(4), K=simple_K(width, height, dtype=torch.float32), width=width, height=height,
                sh_degree=sh_degree)


_LEAVES = ("means", "quats", "scales", "opacities", "colors", "background")


def _run(scene, backend, device, depth_loss=True, absgrad=True):
    leaves = {k: scene[k].to(device).clone().requires_grad_(True) for k in _LEAVES if scene[k] is not None}
    out = rasterize_gaussians(leaves["means"], leaves["quats"], leaves["scales"], leaves["opacities"],
                              leaves["colors"], scene["viewmat"].to(device), scene["K"].to(device), scene["width"],
                              scene["height"], sh_degree=scene["sh_degree"], background=leaves.get("background"),
                              backend=backend, absgrad=absgrad)
    means2d = out.meta["means2d"]
    means2d.retain_grad()
    gen = torch.Generator().manual_seed(3)
    weights = [torch.randn(t.shape, generator=gen).to(device) for t in (out.colors, out.alphas, out.depths)]
    loss = (out.colors * weights[0]).sum() + (out.alphas * weights[1]).sum()
    if depth_loss:
        loss = loss + (out.depths * weights[2]).sum()
    loss.backward()
    res = {"colors": out.colors.detach().cpu(), "alphas": out.alphas.detach().cpu(), "depths": out.depths.detach().cpu(),
           "grad_means2d": means2d.grad.cpu()}
    if absgrad:
        res["absgrad_means2d"] = means2d.absgrad.cpu()
    else:
        assert getattr(means2d, "absgrad", None) is None, "absgrad=False must not set means2d.absgrad"
    res.update({"grad_" + k: v.grad.cpu() for k, v in leaves.items()})
    return res


def _assert_parity(gpu, cpu):
    for key in ("colors", "alphas", "depths"):
        torch.testing.assert_close(gpu[key], cpu[key], atol=1e-4, rtol=0, msg=lambda m: f"{key}: {m}")
    for key in [k for k in cpu if k.startswith(("grad_", "absgrad_"))]:
        scale = cpu[key].abs().max()
        torch.testing.assert_close(gpu[key], cpu[key], atol=1e-3 * scale, rtol=1e-2, msg=lambda m: f"{key}: {m}")


@pytest.mark.parametrize(
    "n,width,height,sh_degree,channels,background",
    [
        (500, 37, 53, None, 3, True),  # sizes that are not multiples of the tile
        (2000, 64, 64, 3, 3, True),  # SH degree 3; tiles hold more than one shared-memory batch
        (800, 45, 31, None, 5, False),  # 5 channels (e.g. features), no background
        (1, 1, 1, None, 3, True),  # 1x1 image
        (20000, 160, 96, 1, 3, True),  # dense: early termination and several batches per tile
    ],
)
def test_cuda_matches_cpu(n, width, height, sh_degree, channels, background):
    _needs_gpu()
    scene = _scene(n, width, height, seed=n, sh_degree=sh_degree, channels=channels, background=background)
    _assert_parity(_run(scene, "cuda", "cuda"), _run(scene, "cpu", "cpu"))


@pytest.mark.parametrize("depth_loss,absgrad", [(False, False), (False, True), (True, False)])
def test_cuda_matches_cpu_without_depth_gradient_or_absgrad(depth_loss, absgrad):
    """The backward kernel skips the depth terms when no depth gradient arrives and the |grad| sums when absgrad is
    off: every other gradient must stay as on the CPU (SH degree 1, several batches per tile)."""
    _needs_gpu()
    scene = _scene(6000, 96, 80, seed=11, sh_degree=1)
    gpu = _run(scene, "cuda", "cuda", depth_loss=depth_loss, absgrad=absgrad)
    cpu = _run(scene, "cpu", "cpu", depth_loss=depth_loss, absgrad=absgrad)
    _assert_parity(gpu, cpu)
    assert gpu["grad_means"].abs().max() > 0


def test_cuda_empty_and_offscreen_scenes():
    """No primitive on screen: background everywhere, zero alpha and zero gradients, as on the CPU."""
    _needs_gpu()
    scene = _scene(50, 32, 24, seed=4)
    scene["means"] = scene["means"] + torch.tensor([0.0, 0.0, -10.0])  # all behind the camera
    gpu, cpu = _run(scene, "cuda", "cuda"), _run(scene, "cpu", "cpu")
    _assert_parity(gpu, cpu)
    assert gpu["alphas"].abs().max() == 0
    torch.testing.assert_close(gpu["colors"], scene["background"].expand(24, 32, 3))


def test_cuda_depth_order_with_ties_and_negative_depths_matches_cpu():
    """The tile|depth radix keys order negative depths, -0/+0 and exact ties (by id) as the CPU sort does."""
    _needs_gpu()
    from cuda_rasterizer import cuda_backend

    g = torch.Generator().manual_seed(3)
    n, width, height = 300, 37, 29
    means2d = torch.rand(n, 2, generator=g) * torch.tensor([width, height])
    conics = torch.stack([torch.full((n,), 0.08), torch.zeros(n), torch.full((n,), 0.08)], dim=-1)
    depths = torch.randint(-3, 4, (n,), generator=g).float() * 0.5
    depths[::7] = -0.0
    colors = torch.rand(n, 3, generator=g)
    opacities = torch.rand(n, generator=g) * 0.9 + 0.05
    radii = torch.full((n, 2), 40, dtype=torch.int32)
    args = (means2d, conics, colors, opacities, depths)
    cpu = cpu_backend.rasterize_to_pixels(*args, radii, width, height)
    gpu = cuda_backend.rasterize_to_pixels(*[t.cuda() for t in args], radii.cuda(), width, height)
    torch.testing.assert_close(gpu.colors.cpu(), cpu.colors, atol=1e-5, rtol=0)
    torch.testing.assert_close(gpu.alphas.cpu(), cpu.alphas, atol=1e-5, rtol=0)


def test_cuda_backend_is_registered_only_with_a_gpu():
    from cuda_rasterizer import available_backends

    assert ("cuda" in available_backends()) == torch.cuda.is_available()
    assert cpu_backend is not None
