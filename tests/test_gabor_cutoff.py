"""Gabor terms whose projected frequency is far finer than a pixel are cut, in every backend, with finite gradients."""

from __future__ import annotations

import math

import pytest
import torch

from cuda_rasterizer import available_backends, rasterize_gaussians, reference
from cuda_rasterizer.constants import GABOR_CUTOFF_EXPONENT
from cuda_rasterizer.gabor import project_gabor_terms

from conftest import simple_K

WIDTH, HEIGHT = 32, 24


def needle_scene():
    """Two primitives: a needle (scales 1e-9, 1e-9, 0.3) along the view axis, and an ordinary one. In a fern training
    run a needle 1e-4 thin projected its waves to ~3e9 radians per pixel through its nearly singular screen covariance,
    past what the float cos/sin reduce correctly, and its gradients became NaN. Axis-aligned frames: the needle's
    world frequencies are 2 pi nu / s."""
    means = torch.tensor([[0.0, 0.0, 9.0], [0.3, -0.2, 4.0]])
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.9, 0.1, 0.2, 0.1]])
    scales = torch.tensor([[1e-9, 1e-9, 0.3], [0.3, 0.2, 0.25]])
    opac = torch.tensor([0.3, 0.4])
    colors = torch.tensor([[0.8, 0.2, 0.1], [0.1, 0.5, 0.9]])
    nu = torch.tensor([[[0.7, 0.4, 0.6], [0.0, 0.0, 0.5]], [[0.5, 0.1, 0.0], [0.0, 0.4, 0.2]]])
    freqs = 2 * math.pi * nu / scales[:, None, :]
    weights = torch.tensor([[0.0, 0.3], [0.2, -0.3]])
    phases = torch.tensor([[0.6, 1.0], [-2.2, 2.9]])
    return [means, quats, scales, opac, colors, freqs, weights, phases]


def terms_of(leaves):
    means, quats, scales, _, _, freqs, weights, phases = leaves
    covars = reference.quat_scale_to_covar(quats, scales)
    radii = torch.ones(means.shape[0], 2, dtype=torch.int32)
    return project_gabor_terms(means, covars, freqs, weights, phases, torch.eye(4), simple_K(WIDTH, HEIGHT, dtype=torch.float32),
                               WIDTH, HEIGHT, radii, 0.3)


def test_reference_cuts_the_needles_cross_axis_wave_only():
    terms = terms_of(needle_scene())
    assert terms[0, 0, :3].abs().sum() == 0  # the needle's wave across its thin axes: cut (h = 0, amplitude 0)
    assert terms[0, 1, 0:2].abs().max() < 1.0  # its wave along the long (view) axis survives the cut...
    assert terms[1, :, 2].abs().min() > 0  # ...and the ordinary primitive keeps both of its waves
    # the threshold itself: a wave just below it keeps its amplitude, exp(-exponent) of its weight
    assert math.exp(-GABOR_CUTOFF_EXPONENT) < 1e-25


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_needle_renders_with_finite_image_and_gradients(backend):
    if backend not in available_backends():
        pytest.skip(f"backend {backend} is not available here (no C++ compiler)")
    leaves = [t.clone().requires_grad_(True) for t in needle_scene()]
    means, quats, scales, opac, colors, freqs, weights, phases = leaves
    out = rasterize_gaussians(means, quats, scales, opac, colors, torch.eye(4), simple_K(WIDTH, HEIGHT, dtype=torch.float32),
                              WIDTH, HEIGHT, background=torch.tensor([0.2, 0.1, 0.3]), backend=backend,
                              gabor_freqs=freqs, gabor_weights=weights, gabor_phases=phases)
    gen = torch.Generator().manual_seed(1)
    loss = (out.colors * torch.randn(out.colors.shape, generator=gen)).sum() + out.alphas.sum()
    loss.backward()
    assert torch.isfinite(out.colors).all()
    for name, leaf in zip(("means", "quats", "scales", "opacities", "colors", "freqs", "weights", "phases"), leaves):
        assert torch.isfinite(leaf.grad).all(), f"{name}: non-finite gradient"
    assert leaf.grad[1].abs().max() > 0  # the ordinary primitive's phases still learn


def test_native_and_reference_agree_with_a_cut_term():
    if "cpu" not in available_backends():
        pytest.skip("no C++ compiler for the CPU backend")
    from cuda_rasterizer import cpu_backend

    leaves = needle_scene()
    means, quats, scales, _, _, freqs, weights, phases = leaves
    covars = reference.quat_scale_to_covar(quats, scales)
    radii = torch.ones(2, 2, dtype=torch.int32)
    K = simple_K(WIDTH, HEIGHT, dtype=torch.float32)
    native = cpu_backend.project_gabor_terms(means, covars, freqs, weights, phases, torch.eye(4), K, WIDTH, HEIGHT, radii)
    ref = terms_of(leaves)
    assert native[0, 0, :3].abs().sum() == 0
    torch.testing.assert_close(native[1], ref[1], atol=1e-4, rtol=1e-4)
