"""The dense reference rasterizer: gradients against finite differences and basic invariants."""

from __future__ import annotations


import pytest
import torch

from cuda_rasterizer import rasterize_gaussians
from cuda_rasterizer.reference import eval_sh, quat_scale_to_covar, quat_to_rotmat
from conftest import random_gaussians, simple_K


def _render(means, quats, scales, opacities, colors, width=12, height=10, background=None, viewmat=None, **kw):
    viewmat = torch.eye(4, dtype=means.dtype) if viewmat is None else viewmat
    return rasterize_gaussians(
        means, quats, scales, opacities, colors, viewmat, simple_K(width, height, 14.0), width, height,
        background=background, backend="reference", **kw,
    )


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    means, quats, scales, opacities, colors = random_gaussians(6, seed=3, spread=0.15)
    opacities = opacities.clamp(max=0.7)  # stay away from the 0.99 clamp, which has a kink
    background = torch.tensor([0.2, 0.3, 0.4], dtype=torch.float64)
    params = [means, quats, scales, opacities, colors, background]
    for p in params:
        p.requires_grad_(True)
    weights = torch.rand(10, 12, 5, dtype=torch.float64)

    def loss_fn(m, q, s, o, c, bg):
        out = _render(m, q, s, o, c, background=bg)
        return (torch.cat([out.colors, out.alphas, out.depths], dim=-1) * weights).sum()

    assert torch.autograd.gradcheck(loss_fn, params, eps=1e-6, atol=1e-5, rtol=1e-4, nondet_tol=0.0)


def test_sh_gradients_match_finite_differences():
    gen = torch.Generator().manual_seed(1)
    coeffs = torch.randn(5, 16, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    dirs = torch.randn(5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    for degree in range(4):
        assert torch.autograd.gradcheck(lambda c, d: eval_sh(degree, c, d), (coeffs, dirs))


def test_sh_degree_zero_is_constant_and_degree_one_is_linear():
    coeffs = torch.zeros(1, 4, 1, dtype=torch.float64)
    coeffs[0, 0, 0] = 2.0
    dirs = torch.tensor([[0.3, -0.2, 0.9]], dtype=torch.float64)
    assert torch.allclose(eval_sh(0, coeffs, dirs), torch.tensor([[2.0 * 0.28209479177387814]], dtype=torch.float64))
    coeffs = torch.zeros(1, 4, 1, dtype=torch.float64)
    coeffs[0, 2, 0] = 1.0  # the z-linear term
    up = eval_sh(1, coeffs, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64))
    down = eval_sh(1, coeffs, torch.tensor([[0.0, 0.0, -1.0]], dtype=torch.float64))
    assert up.item() == pytest.approx(-down.item()) and up.item() > 0


def test_rotation_matrix_is_orthonormal_and_covariance_matches_scales():
    quats = torch.randn(20, 4, dtype=torch.float64)
    rot = quat_to_rotmat(quats)
    eye = torch.eye(3, dtype=torch.float64).expand(20, 3, 3)
    assert torch.allclose(rot @ rot.transpose(-1, -2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(20, dtype=torch.float64))
    scales = torch.rand(20, 3, dtype=torch.float64) + 0.1
    eig = torch.linalg.eigvalsh(quat_scale_to_covar(quats, scales))
    assert torch.allclose(eig, torch.sort(scales**2, dim=-1).values, atol=1e-12)


def test_empty_scene_renders_background():
    empty = torch.zeros(0, 3, dtype=torch.float64)
    out = _render(
        empty, torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0, 3, dtype=torch.float64),
        torch.zeros(0, dtype=torch.float64), torch.zeros(0, 3, dtype=torch.float64),
        background=torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64),
    )
    assert torch.allclose(out.colors, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64).expand(10, 12, 3))
    assert (out.alphas == 0).all() and (out.depths == 0).all()


def test_primitives_behind_camera_contribute_nothing():
    means, quats, scales, opacities, colors = random_gaussians(50, seed=2)
    behind = means.clone()
    behind[:, 2] = -behind[:, 2]
    out = _render(behind, quats, scales, opacities, colors, background=torch.zeros(3, dtype=torch.float64))
    assert (out.alphas == 0).all() and (out.colors == 0).all()
    front = _render(means, quats, scales, opacities, colors)
    assert front.alphas.max() > 0.5  # the same primitives in front are visible


def test_alpha_in_unit_interval_and_depth_within_primitive_range():
    means, quats, scales, opacities, colors = random_gaussians(300, seed=4)
    out = _render(means, quats, scales, opacities, colors, width=32, height=24)
    assert out.alphas.min() >= 0 and out.alphas.max() <= 1
    hit = out.alphas[..., 0] > 0.05
    assert hit.any()
    z = out.depths[..., 0][hit]
    assert z.min() >= means[:, 2].min() - 1e-9 and z.max() <= means[:, 2].max() + 1e-9


def test_single_opaque_gaussian_centre_pixel_value():
    # One isotropic Gaussian centred on pixel (5, 4): alpha = min(0.99, o) at its centre.
    width, height, focal = 12, 10, 14.0
    z = 2.0
    u, v = 5.5, 4.5
    mean = torch.tensor([[(u - width / 2) * z / focal, (v - height / 2) * z / focal, z]], dtype=torch.float64)
    out = _render(
        mean, torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64), torch.full((1, 3), 0.1, dtype=torch.float64),
        torch.tensor([0.6], dtype=torch.float64), torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64),
        background=torch.zeros(3, dtype=torch.float64),
    )
    assert out.alphas[4, 5, 0].item() == pytest.approx(0.6, rel=1e-9)
    assert out.colors[4, 5, 0].item() == pytest.approx(0.6, rel=1e-9)
    assert out.depths[4, 5, 0].item() == pytest.approx(z, rel=1e-9)


def test_early_termination_excludes_the_primitive_that_saturates_and_all_behind_it():
    # Layers at one pixel with alphas 0.99, 0.5, 0.99, 0.02: T goes 1 -> 0.01 -> 0.005; the third layer would take
    # it to 5e-5 <= 1e-4, so it is excluded and blending stops: the fourth (which alone would pass) adds nothing.
    n = 4
    means = torch.tensor([[0.0, 0.0, 1.0 + i] for i in range(n)], dtype=torch.float64)
    opacities = torch.tensor([1.0, 0.5, 1.0, 0.02], dtype=torch.float64)
    # Large scales make each footprint flat over the 3x3 image, so alpha = min(0.99, opacity) at the centre.
    scales = torch.tensor([[1.0] * 3, [2.0] * 3, [3.0] * 3, [4.0] * 3], dtype=torch.float64)
    out = _render(
        means, torch.tensor([[1.0, 0, 0, 0]] * n, dtype=torch.float64), scales, opacities,
        torch.eye(n, dtype=torch.float64), width=3, height=3, background=torch.zeros(n, dtype=torch.float64),
    )
    centre = out.colors[1, 1]
    assert centre[0].item() == pytest.approx(0.99, rel=1e-6)
    assert centre[1].item() == pytest.approx(0.01 * 0.5, rel=1e-3)
    assert centre[2].item() == 0.0 and centre[3].item() == 0.0


@pytest.mark.parametrize(
    "field,bad,match",
    [
        ("means", torch.full((4, 3), float("nan")), "means contains NaN"),
        ("quats", torch.zeros(4, 3), r"quats must have shape \(4, 4\)"),
        ("opacities", torch.zeros(5), r"opacities must have shape \(4,\)"),
    ],
)
def test_bad_input_names_the_field(field, bad, match):
    inputs = dict(zip(["means", "quats", "scales", "opacities", "colors"], random_gaussians(4, dtype=torch.float32)))
    inputs[field] = bad
    with pytest.raises(ValueError, match=match):
        rasterize_gaussians(**inputs, viewmat=torch.eye(4), K=simple_K(8, 8, dtype=torch.float32), width=8, height=8)


def test_non_positive_focal_is_rejected():
    inputs = dict(zip(["means", "quats", "scales", "opacities", "colors"], random_gaussians(4, dtype=torch.float32)))
    K = simple_K(8, 8, dtype=torch.float32)
    K[0, 0] = 0.0
    with pytest.raises(ValueError, match="focal"):
        rasterize_gaussians(**inputs, viewmat=torch.eye(4), K=K, width=8, height=8)


def test_check_finite_off_skips_only_the_value_scan():
    """check_finite=False (the trainer, which checks its parameters after every step) renders finite inputs exactly as
    the default does, does not scan for a NaN (no error; what the image shows is then the caller's problem), and still
    checks shapes."""
    inputs = dict(zip(["means", "quats", "scales", "opacities", "colors"], random_gaussians(6, dtype=torch.float32)))
    camera = dict(viewmat=torch.eye(4), K=simple_K(8, 8, dtype=torch.float32), width=8, height=8, backend="reference")
    checked = rasterize_gaussians(**inputs, **camera)
    unchecked = rasterize_gaussians(**inputs, **camera, check_finite=False)
    assert torch.equal(checked.colors, unchecked.colors) and torch.equal(checked.alphas, unchecked.alphas)
    bad = dict(inputs, opacities=inputs["opacities"].clone())
    bad["opacities"][2] = float("nan")
    with pytest.raises(ValueError, match="opacities contains NaN"):
        rasterize_gaussians(**bad, **camera)
    assert rasterize_gaussians(**bad, **camera, check_finite=False).colors.shape == (8, 8, 3)
    with pytest.raises(ValueError, match=r"quats must have shape"):
        rasterize_gaussians(**dict(inputs, quats=torch.zeros(6, 3)), **camera, check_finite=False)
