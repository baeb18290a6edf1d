"""The fused native world-frequency kernel of Gabor terms against its PyTorch reference (values and gradients)."""

from __future__ import annotations

import pytest
import torch

from cuda_rasterizer import available_backends
from cuda_rasterizer.gabor_frequencies import reference_world_frequencies, world_frequencies

needs_cpu_backend = pytest.mark.skipif("cpu" not in available_backends(), reason="no C++ compiler for the CPU backend")


def _inputs(n: int, k: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    nu = torch.randn(n, k, 3, generator=g, dtype=dtype)
    quats = torch.randn(n, 4, generator=g, dtype=dtype) * 3  # not normalised: the kernel normalises
    scales = torch.rand(n, 3, generator=g, dtype=dtype) * 0.5 + 0.01
    return nu, quats, scales


@needs_cpu_backend
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("k", [1, 4, 8])
def test_native_matches_reference_values_and_gradients(dtype, tol, k):
    nu, quats, scales = _inputs(300, k, dtype)
    mine = [t.clone().requires_grad_(True) for t in (nu, quats, scales)]
    ref = [t.clone().requires_grad_(True) for t in (nu, quats, scales)]
    out, expected = world_frequencies(*mine), reference_world_frequencies(*ref)
    scale = expected.abs().max()
    torch.testing.assert_close(out / scale, expected / scale, atol=tol, rtol=0)
    v = torch.randn_like(expected)
    (out * v).sum().backward()
    (expected * v).sum().backward()
    for name, a, b in zip(("nu", "quats", "scales"), mine, ref):
        gscale = b.grad.abs().max()
        torch.testing.assert_close(a.grad / gscale, b.grad / gscale, atol=tol * 10, rtol=0, msg=f"gradient of {name}")


@needs_cpu_backend
def test_native_gradients_match_finite_differences():
    nu, quats, scales = _inputs(6, 3, torch.float64, seed=4)
    inputs = tuple(t.requires_grad_(True) for t in (nu, quats, scales))
    assert torch.autograd.gradcheck(world_frequencies, inputs, eps=1e-6, atol=1e-7)


def test_bad_shapes_are_named():
    nu, quats, scales = _inputs(5, 4, torch.float32)
    with pytest.raises(ValueError, match=r"gabor nu must have shape \(5, K, 3\)"):
        world_frequencies(nu[:, :, :2], quats, scales)
    with pytest.raises(ValueError, match="quats and scales"):
        world_frequencies(nu, quats, scales[:, :2])
