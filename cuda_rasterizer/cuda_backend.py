"""CUDA backend: the four stages of `reference.py` on the CUDA extension (float32, 16x16 tiles, <= 16 channels).

Same autograd wiring as the CPU backend (`_native.py`): gradients reach means, covariances, opacities, colours/SH,
background and means2d; `means2d.absgrad` is set after backward. Gradient accumulation uses atomics, so CUDA results
are not bit-reproducible run to run (the CPU backend's are).
"""

from __future__ import annotations

from typing import Optional

import torch

from ._build import build_cuda_extension
from ._native import gabor_project, _EvalSH, _Project, _QuatScaleToCovar, _Rasterize, last_stats  # noqa: F401
from .constants import EPS_2D
from .reference import Composite, Projection, sh_colors_with
from .slice4d import apply_slice4

TILE_SIZE = 16


def _ext():
    return build_cuda_extension()


def ensure_built() -> None:
    """Compile (first use) and load the extension now, so timed work never pays for the build."""
    _ext()


# The kernels take the camera as arguments, read on the host: rasterize_gaussians passes viewmat and K as CPU tensors.
CAMERA_ON_HOST = True


def quat_scale_to_covar(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Covariance R S S^T R^T from (N, 4) wxyz quaternions and (N, 3) scales."""
    return _QuatScaleToCovar.apply(_ext(), 0, quats.contiguous(), scales.contiguous())


def project(
    means: torch.Tensor,
    covars: torch.Tensor,
    opacities: torch.Tensor,
    viewmat: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = EPS_2D,
    antialiased: bool = False,
) -> Projection:
    """EWA projection (see reference.project)."""
    out = _Project.apply(
        _ext(), 0, means.contiguous(), covars.contiguous(), opacities.contiguous(), viewmat, K, int(width),
        int(height), float(near), float(far), float(eps2d), bool(antialiased),
    )
    return Projection(*out)


def project_gabor_terms(
    means: torch.Tensor,
    covars: torch.Tensor,
    freqs: torch.Tensor,
    weights: torch.Tensor,
    phases: torch.Tensor,
    viewmat: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    radii: torch.Tensor,
    eps2d: float = EPS_2D,
) -> torch.Tensor:
    """(N, K, 4) Gabor footprint terms (see gabor.project_gabor_terms), differentiable."""
    return gabor_project(_ext(), 0, means, covars, freqs, weights, phases, viewmat, K, width, height, radii, eps2d)


def eval_sh(degree: int, coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Raw SH value (see reference.eval_sh); no gradient to `dirs`."""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be in 0..3, got {degree}")
    if coeffs.shape[-2] < (degree + 1) ** 2:
        raise ValueError(f"SH degree {degree} needs {(degree + 1) ** 2} coefficients, got {coeffs.shape[-2]}")
    return _EvalSH.apply(_ext(), 0, degree, coeffs.contiguous(), dirs.contiguous())


def sh_colors(degree: int, coeffs: torch.Tensor, means: torch.Tensor, viewmat: torch.Tensor) -> torch.Tensor:
    """max(SH(means - camera centre) + 0.5, 0) (reference.sh_colors_with) on this backend's eval_sh."""
    return sh_colors_with(eval_sh, degree, coeffs, means, viewmat)


def rasterize_to_pixels(
    means2d: torch.Tensor,
    conics: torch.Tensor,
    colors: torch.Tensor,
    opacities: torch.Tensor,
    depths: torch.Tensor,
    radii: torch.Tensor,
    width: int,
    height: int,
    background: Optional[torch.Tensor] = None,
    max_elements: int = 0,
    absgrad: bool = True,
) -> Composite:
    """Tiled front-to-back blending on the GPU (see reference.rasterize_to_pixels). absgrad=False: means2d.absgrad
    is not set by the backward, whose kernel then skips those sums."""
    del max_elements
    if background is not None:
        background = background.reshape(-1).contiguous()
    out = _Rasterize.apply(
        _ext(), 0, means2d.contiguous(), conics.contiguous(), colors.contiguous(), opacities.contiguous(),
        depths.contiguous(), radii, background, int(width), int(height), TILE_SIZE, bool(absgrad),
    )
    return Composite(*out)



def slice4(
    means: torch.Tensor,
    times: torch.Tensor,
    quats_left: torch.Tensor,
    quats_right: torch.Tensor,
    scales: torch.Tensor,
    opacities: torch.Tensor,
    t: float,
    time_filter: float = 0.0,
):
    """4D Gaussians sliced at time t on the GPU (float32), differentiable through the fused VJP kernel.

    means (N, 3), times (N,) or (N, 1), left/right wxyz quaternions (N, 4) of the rotation p -> q_l p q_r on
    p = t + x i + y j + z k, scales (N, 4) positive (x, y, z, t axes), opacities (N,). Returns means (N, 3),
    covariances (N, 3, 3), opacities at t (N,) and the temporal exponents 0.5 (t - mu_t)^2 / Stt (N,). `time_filter`
    (a standard deviation in time, >= 0) adds its square to Stt: the primitives' minimum temporal extent.
    """
    ext = _ext()
    return apply_slice4(ext.slice4_fwd, ext.slice4_bwd, means, times, quats_left, quats_right, scales, opacities, t,
                        time_filter)
