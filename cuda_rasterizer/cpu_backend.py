"""CPU backend: the four stages of `reference.py` on the OpenMP C++ extension, as autograd Functions.

Gradients flow to means, covariances (hence quats/scales), opacities, colours/SH coefficients, background and
means2d. Not differentiated: viewmat, K and SH directions (the pipeline detaches them). After backward,
`means2d.absgrad` holds the (N, 2) sum over pixels of |d loss / d means2d| per axis (gsplat's absgrad).
"""

from __future__ import annotations

from typing import Optional

import torch

from ._build import build_cpu_extension
from .constants import EPS_2D
from ._native import gabor_project, _EvalSH, _Project, _QuatScaleToCovar, _Rasterize, _SHColors, last_stats
from .reference import Composite, Projection
from .slice4d import apply_slice4

_NUM_THREADS: Optional[int] = None
_TILE_SIZE = 16


def set_num_threads(n: Optional[int]) -> None:
    """Threads for the CPU kernels; None follows torch.get_num_threads()."""
    global _NUM_THREADS
    if n is not None and n < 1:
        raise ValueError(f"thread count must be >= 1, got {n}")
    _NUM_THREADS = n


def get_num_threads() -> int:
    return _NUM_THREADS if _NUM_THREADS is not None else torch.get_num_threads()


def set_tile_size(tile: int) -> None:
    """Tile edge in pixels (1..64; 16 by default). Results do not depend on it."""
    global _TILE_SIZE
    if not 1 <= tile <= 64:
        raise ValueError(f"tile size must be in 1..64, got {tile}")
    _TILE_SIZE = tile


def _ext():
    return build_cpu_extension()


def ensure_built() -> None:
    """Compile (first use) and load the extension now, so timed work never pays for the build."""
    _ext()


def quat_scale_to_covar(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Covariance R S S^T R^T from (N, 4) wxyz quaternions and (N, 3) scales."""
    return _QuatScaleToCovar.apply(_ext(), get_num_threads(), quats.contiguous(), scales.contiguous())


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
    """EWA projection (see reference.project); covars may come from any source (e.g. 4D slicing)."""
    out = _Project.apply(
        _ext(), get_num_threads(),
        means.contiguous(), covars.contiguous(), opacities.contiguous(), viewmat, K, int(width), int(height),
        float(near), float(far), float(eps2d), bool(antialiased),
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
    return gabor_project(_ext(), get_num_threads(), means, covars, freqs, weights, phases, viewmat, K, width, height, radii, eps2d)


def eval_sh(degree: int, coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Raw SH value (see reference.eval_sh); no gradient to `dirs`."""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be in 0..3, got {degree}")
    needed = (degree + 1) ** 2
    if coeffs.shape[-2] < needed:
        raise ValueError(f"SH degree {degree} needs {needed} coefficients, got {coeffs.shape[-2]}")
    return _EvalSH.apply(_ext(), get_num_threads(), degree, coeffs.contiguous(), dirs.contiguous())


def sh_colors(degree: int, coeffs: torch.Tensor, means: torch.Tensor, viewmat: torch.Tensor) -> torch.Tensor:
    """The pipeline's colours max(SH(means - camera centre) + 0.5, 0) in one native pass each way (reference.sh_colors
    composes them from PyTorch ops); no gradient to `means`."""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be in 0..3, got {degree}")
    needed = (degree + 1) ** 2
    if coeffs.shape[-2] < needed:
        raise ValueError(f"SH degree {degree} needs {needed} coefficients, got {coeffs.shape[-2]}")
    return _SHColors.apply(_ext(), get_num_threads(), degree, coeffs.contiguous(), means.contiguous(), viewmat)


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
    tile_size: Optional[int] = None,
    absgrad: bool = True,
) -> Composite:
    """Tiled front-to-back blending (see reference.rasterize_to_pixels); also returns final T and last ids.
    absgrad=False: means2d.absgrad is not computed (nor set) by the backward."""
    del max_elements  # dense-reference chunking knob, unused here
    tile = _TILE_SIZE if tile_size is None else int(tile_size)
    if background is not None:
        background = background.reshape(-1).contiguous()
    out_c, out_a, out_d, out_t, last_id = _Rasterize.apply(
        _ext(), get_num_threads(),
        means2d.contiguous(), conics.contiguous(), colors.contiguous(), opacities.contiguous(), depths.contiguous(),
        radii, background, int(width), int(height), tile, bool(absgrad),
    )
    return Composite(out_c, out_a, out_d, out_t, last_id)



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
    """4D Gaussians sliced at time t, differentiable (see cuda_backend.slice4; float32 or float64, one dtype)."""
    ext, threads = build_cpu_extension(), get_num_threads()
    return apply_slice4(
        lambda *a: ext.slice4_fwd(*a, threads), lambda *a: ext.slice4_bwd(*a, threads),
        means, times, quats_left, quats_right, scales, opacities, t, time_filter,
    )
