"""3D Gabor primitives in the rasterizer: the projected footprint against brute-force ray integration, native
kernels against the PyTorch reference (values and gradients), finite differences, CUDA parity, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from cuda_rasterizer import cpu_backend, rasterize_gaussians, reference
from cuda_rasterizer.gabor import modulation, project_gabor_terms

from conftest import random_gaussians, simple_K


def gabor_terms(n: int, k: int, seed: int, dtype=torch.float64, freq: float = 12.0):
    """Random world frequencies (radians per unit), weights with sum |w| < 1, phases."""
    gen = torch.Generator().manual_seed(seed)
    freqs = torch.randn(n, k, 3, generator=gen, dtype=dtype) * freq
    raw = torch.randn(n, k, generator=gen, dtype=dtype)
    weights = raw / (1.0 + raw.abs().sum(dim=-1, keepdim=True))
    phases = torch.rand(n, k, generator=gen, dtype=dtype) * 2 * math.pi
    return freqs, weights, phases


def render_all(backend, leaves, width, height, K, background=None, absgrad=True):
    means, quats, scales, opac, colors, freqs, weights, phases = leaves
    return rasterize_gaussians(means, quats, scales, opac, colors, torch.eye(4, dtype=means.dtype, device=means.device), K, width, height,
                               background=background, backend=backend, gabor_freqs=freqs, gabor_weights=weights,
                               gabor_phases=phases, absgrad=absgrad)


def loss_and_grads(backend, leaves, width, height, K, absgrad=True):
    leaves = [t.detach().clone().requires_grad_(True) for t in leaves]
    device = leaves[0].device
    background = torch.tensor([0.2, 0.1, 0.3], dtype=leaves[0].dtype, device=device)
    out = render_all(backend, leaves, width, height, K, background=background, absgrad=absgrad)
    gen = torch.Generator().manual_seed(5)
    w = [torch.randn(t.shape, generator=gen, dtype=t.dtype).to(device) for t in (out.colors, out.alphas, out.depths)]
    loss = (out.colors * w[0]).sum() + (out.alphas * w[1]).sum() + (out.depths * w[2]).sum()
    return out, torch.autograd.grad(loss, leaves)


def scene(n, k, seed, dtype):
    return [*random_gaussians(n, seed=seed, dtype=dtype), *gabor_terms(n, k, seed, dtype)]


@pytest.mark.parametrize("dtype,k,tile,absgrad", [
    (torch.float64, 4, 16, True), (torch.float32, 4, 16, True), (torch.float32, 4, 8, True), (torch.float64, 1, 16, True),
    (torch.float32, 3, 16, True), (torch.float32, 8, 16, True), (torch.float32, 4, 16, False), (torch.float32, 4, 8, False)])
def test_cpu_matches_reference(dtype, k, tile, absgrad):
    """Float32 K=4 RGB 16-pixel tiles run the AVX-512 row kernels (without absgrad, what training asks for, their wave
    gradients come from lane sums by angle addition); other cases the generic per-lane code."""
    width, height = 37, 29
    leaves = scene(60, k, seed=k + tile, dtype=dtype)
    K = simple_K(width, height, dtype=dtype)
    ref_out, ref_grads = loss_and_grads("reference", leaves, width, height, K)
    cpu_backend.set_tile_size(tile)
    try:
        cpu_out, cpu_grads = loss_and_grads("cpu", leaves, width, height, K, absgrad=absgrad)
    finally:
        cpu_backend.set_tile_size(16)
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(cpu_out.colors, ref_out.colors, atol=tol, rtol=0)
    torch.testing.assert_close(cpu_out.alphas, ref_out.alphas, atol=tol, rtol=0)
    names = ("means", "quats", "scales", "opacities", "colors", "freqs", "weights", "phases")
    for name, g_ref, g_cpu in zip(names, ref_grads, cpu_grads):
        scale = g_ref.abs().max().clamp(min=1e-12)
        assert g_ref.abs().max() > 0, f"{name}: the test scene gives no gradient"
        err = ((g_cpu - g_ref).abs().max() / scale).item()
        assert err < (1e-9 if dtype == torch.float64 else 5e-4), f"{name}: relative error {err}"


@pytest.mark.parametrize("k", [4, 3])
def test_native_term_projection_matches_reference_with_culled_and_hidden_primitives(k):
    """The float32 term projection runs 16 (8) primitives per call on SIMD lanes: values and gradients against the
    reference (autograd) on primitives in view, beyond the frustum margin, behind the camera and culled (radius 0),
    which must get zeros and finite gradients; 37 primitives leave a partial lane block."""
    n, width, height = 37, 40, 30
    means, quats, scales, _, _ = random_gaussians(n, seed=8, dtype=torch.float64)
    means = means.clone()
    means[::6, 2] = -means[::6, 2].abs() - 0.5  # behind the camera
    means[1::6, 0] = 3.0 * means[1::6, 2].abs()  # beyond the frustum margin: tx clamped
    freqs, weights, phases = gabor_terms(n, k, seed=9)
    covars = reference.quat_scale_to_covar(quats, scales)
    radii = torch.full((n, 2), 5, dtype=torch.int32)
    radii[2::6] = 0  # culled
    K = simple_K(width, height, dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    upstream = torch.randn(n, k, 4, generator=gen, dtype=torch.float64)
    results = {}
    for name, dtype in (("reference", torch.float64), ("cpu", torch.float32)):
        leaves = [t.to(dtype).clone().requires_grad_(True) for t in (means, covars, freqs, weights, phases)]
        args = (*leaves, torch.eye(4, dtype=dtype), K.to(dtype), width, height, radii)
        terms = project_gabor_terms(*args, 0.3) if name == "reference" else cpu_backend.project_gabor_terms(*args)
        grads = torch.autograd.grad((terms * upstream.to(dtype)).sum(), leaves)
        results[name] = (terms.double(), [g.double() for g in grads])
    (ref, ref_grads), (got, got_grads) = results["reference"], results["cpu"]
    hidden = (means[:, 2] <= 0) | (radii <= 0).any(dim=-1)
    assert got[hidden].abs().sum() == 0
    torch.testing.assert_close(got, ref, atol=2e-4, rtol=2e-4)
    for name, a, b in zip(("means", "covars", "freqs", "weights", "phases"), ref_grads, got_grads):
        assert torch.isfinite(b).all(), f"{name}: non-finite gradient"
        assert (b[hidden] == 0).all(), f"{name}: hidden or culled primitives must get no gradient"
        err = ((b - a).abs().max() / a.abs().max().clamp(min=1e-12)).item()
        assert err < 1e-3, f"{name}: relative error {err}"


def test_zero_weights_render_exactly_the_gaussian():
    width, height = 40, 30
    means, quats, scales, opac, colors = random_gaussians(200, seed=3, dtype=torch.float32)
    freqs, weights, phases = gabor_terms(200, 4, seed=3, dtype=torch.float32)
    K = simple_K(width, height, dtype=torch.float32)
    plain = rasterize_gaussians(means, quats, scales, opac, colors, torch.eye(4), K, width, height, backend="cpu")
    gabor = rasterize_gaussians(means, quats, scales, opac, colors, torch.eye(4), K, width, height, backend="cpu",
                                gabor_freqs=freqs, gabor_weights=torch.zeros_like(weights), gabor_phases=phases)
    assert torch.equal(plain.colors, gabor.colors)
    assert torch.equal(plain.alphas, gabor.alphas)


def test_waves_change_the_image_and_respect_the_clamps():
    width, height = 40, 30
    leaves = scene(100, 4, seed=9, dtype=torch.float32)
    out = render_all("cpu", leaves, width, height, simple_K(width, height, dtype=torch.float32))
    means, quats, scales, opac, colors = leaves[:5]
    plain = rasterize_gaussians(means, quats, scales, opac, colors, torch.eye(4), simple_K(width, height, dtype=torch.float32),
                                width, height, backend="cpu")
    assert (out.colors - plain.colors).abs().max() > 0.05
    assert out.alphas.min() >= 0 and out.alphas.max() <= 1


def ray_integrated_modulation(mean, cov, freqs, weights, phases, K, pixels, samples=4001):
    """Along each pixel's ray (camera at the origin looking down +z), integral of G m over integral of G (float64)."""
    inv = torch.linalg.inv(cov)
    std = cov.diagonal().sqrt().max()
    zs = torch.linspace(float(mean[2] - 8 * std), float(mean[2] + 8 * std), samples, dtype=torch.float64)
    rays = torch.stack([(pixels[:, 0] - K[0, 2]) / K[0, 0], (pixels[:, 1] - K[1, 2]) / K[1, 1],
                        torch.ones(len(pixels), dtype=torch.float64)], dim=-1)
    pts = rays[:, None, :] * zs[None, :, None]  # (P, S, 3); dt/dz is constant along a ray and cancels
    d = pts - mean
    g = torch.exp(-0.5 * torch.einsum("psi,ij,psj->ps", d, inv, d))
    m = 1 + (weights * torch.cos(torch.einsum("psi,ki->psk", d, freqs) + phases)).sum(-1)
    return torch.trapezoid(g * m, zs, dim=1) / torch.trapezoid(g, zs, dim=1), torch.trapezoid(g, zs, dim=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_projected_footprint_matches_brute_force_ray_integration(seed):
    """The 2D footprint's modulation (eps2d = 0) equals the ray integral of the 3D density up to the affine
    approximation, whose error shrinks as the primitive gets small against its depth (same size on screen)."""
    gen = torch.Generator().manual_seed(seed)
    quat = torch.randn(1, 4, generator=gen, dtype=torch.float64)
    scale = torch.tensor([[0.30, 0.18, 0.12]], dtype=torch.float64)
    cov = reference.quat_scale_to_covar(quat, scale)[0]
    freqs = torch.randn(3, 3, generator=gen, dtype=torch.float64) * 6.0
    weights = torch.tensor([0.3, -0.25, 0.2], dtype=torch.float64)
    phases = torch.rand(3, generator=gen, dtype=torch.float64) * 6.28
    offset = torch.tensor([9.0, -6.0], dtype=torch.float64)  # pixels off the centre: the Jacobian's x/z terms
    width = height = 48
    errors = []
    for depth in (3.0, 12.0, 48.0):
        focal = 40.0 * depth / 3.0  # the same size on screen at every depth
        K = simple_K(width, height, focal=focal)
        mean = torch.tensor([offset[0] * depth / focal, offset[1] * depth / focal, depth], dtype=torch.float64)
        radii = torch.ones(1, 2, dtype=torch.int32)
        terms = project_gabor_terms(mean[None], cov[None], freqs[None], weights[None], phases[None],
                                    torch.eye(4, dtype=torch.float64), K, width, height, radii, eps2d=0.0)
        ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                                indexing="ij")
        pixels = torch.stack([xs, ys], -1).reshape(-1, 2) + 0.5
        brute, envelope = ray_integrated_modulation(mean, cov, freqs, weights, phases, K, pixels)
        mean2d = torch.stack([K[0, 0] * mean[0] / mean[2] + K[0, 2], K[1, 1] * mean[1] / mean[2] + K[1, 2]])
        d = mean2d[None] - pixels
        footprint = modulation(terms[0][None].expand(1, -1, -1), d[:, 0:1], d[:, 1:2])[:, 0]
        weight = envelope / envelope.max()
        mask = weight > 0.05  # where the primitive is visible
        errors.append(float(((footprint - brute).abs() * weight)[mask].max()))
    assert errors[-1] < 2e-3, errors
    assert errors[0] > errors[1] > errors[-1], errors
    assert errors[-1] < errors[0] / 8, errors


def test_projection_gradients_match_finite_differences():
    """The native projection VJP (gabor_math.h) against central finite differences in float64."""
    n, k, width, height = 6, 3, 40, 30
    means, quats, scales, _, _ = random_gaussians(n, seed=11)
    covars = reference.quat_scale_to_covar(quats, scales)
    freqs, weights, phases = gabor_terms(n, k, seed=11)
    means[0, 0] = 3.5  # one primitive outside the frustum: the clamped Jacobian branch
    K = simple_K(width, height)
    radii = torch.ones(n, 2, dtype=torch.int32)

    def fn(m, c, f, w, p):
        return cpu_backend.project_gabor_terms(m, c, f, w, p, torch.eye(4, dtype=torch.float64), K, width, height,
                                               radii, 0.3)

    inputs = [t.clone().requires_grad_(True) for t in (means, covars, freqs, weights, phases)]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_rasterizer_gradients_match_finite_differences():
    """The CPU blend VJP for Gabor footprints (float64) against finite differences on a small smooth scene."""
    width, height = 14, 12
    gen = torch.Generator().manual_seed(2)
    n, k = 3, 2
    means2d = torch.rand(n, 2, generator=gen, dtype=torch.float64) * torch.tensor([width, height], dtype=torch.float64)
    conics = torch.tensor([[0.05, 0.01, 0.06]], dtype=torch.float64).repeat(n, 1)
    terms = torch.cat([torch.randn(n, k, 2, generator=gen, dtype=torch.float64) * 0.4,
                       torch.full((n, k, 1), 0.3, dtype=torch.float64),
                       torch.rand(n, k, 1, generator=gen, dtype=torch.float64) * 6], dim=-1)
    params = torch.cat([conics, terms.reshape(n, -1)], dim=1)
    colors = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    opac = torch.full((n,), 0.5, dtype=torch.float64)
    depths = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    radii = torch.full((n, 2), 30, dtype=torch.int32)

    def fn(m2d, p, col, o):
        out = cpu_backend.rasterize_to_pixels(m2d, p, col, o, depths, radii, width, height)
        return out.colors, out.alphas

    inputs = [t.clone().requires_grad_(True) for t in (means2d, params, colors, opac)]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"gabor_freqs": torch.zeros(5, 2, 3)}, "together"),
        ({"gabor_freqs": torch.zeros(5, 2, 2), "gabor_weights": torch.zeros(5, 2), "gabor_phases": torch.zeros(5, 2)},
         "gabor_freqs must have shape"),
        ({"gabor_freqs": torch.zeros(5, 2, 3), "gabor_weights": torch.zeros(5, 3), "gabor_phases": torch.zeros(5, 2)},
         "gabor_weights must have shape"),
        ({"gabor_freqs": torch.zeros(5, 9, 3), "gabor_weights": torch.zeros(5, 9), "gabor_phases": torch.zeros(5, 9)},
         "1..8 terms"),
        ({"gabor_freqs": torch.zeros(5, 2, 3), "gabor_weights": torch.full((5, 2), float("nan")),
          "gabor_phases": torch.zeros(5, 2)}, "gabor_weights contains NaN"),
    ],
)
def test_bad_gabor_inputs_are_refused(kwargs, message):
    means, quats, scales, opac, colors = random_gaussians(5, dtype=torch.float32)
    with pytest.raises(ValueError, match=message):
        rasterize_gaussians(means, quats, scales, opac, colors, torch.eye(4), simple_K(8, 8, dtype=torch.float32), 8, 8,
                            backend="cpu", **kwargs)


@pytest.mark.parametrize("n,k,width,height", [(400, 4, 37, 53), (3000, 4, 96, 64), (300, 2, 40, 40), (200, 8, 33, 17)])
def test_cuda_matches_cpu_for_gabor(n, k, width, height):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    leaves = scene(n, k, seed=n, dtype=torch.float32)
    K = simple_K(width, height, dtype=torch.float32)
    cpu_out, cpu_grads = loss_and_grads("cpu", leaves, width, height, K)
    gpu_leaves = [t.cuda() for t in leaves]
    gpu_out, gpu_grads = loss_and_grads("cuda", gpu_leaves, width, height, K.cuda())
    torch.testing.assert_close(gpu_out.colors.cpu(), cpu_out.colors, atol=1e-4, rtol=0)
    torch.testing.assert_close(gpu_out.alphas.cpu(), cpu_out.alphas, atol=1e-4, rtol=0)
    for g_gpu, g_cpu in zip(gpu_grads, cpu_grads):
        scale = g_cpu.abs().max()
        torch.testing.assert_close(g_gpu.cpu(), g_cpu, atol=1e-3 * scale, rtol=1e-2)
