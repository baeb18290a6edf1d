"""CPU backend: the four stages of `reference.py` on the OpenMP C++ extension, as autograd Functions.

Gradients flow to means, covariances (hence quats/scales), opacities, colours/SH coefficients, background and
means2d. Not differentiated: viewmat, K and SH directions (the pipeline detaches them). After backward,
`means2d.absgrad` holds the (N, 2) sum over pixels of |d loss / d means2d| per axis (gsplat's absgrad).
"""

from __future__ import annotations

import weakref
from typing import Any, Dict, Optional

import torch

from ._build import build_cpu_extension
from .constants import EPS_2D
from .reference import Composite, Projection

_NUM_THREADS: Optional[int] = None
_TILE_SIZE = 16
last_stats: Dict[str, Any] = {}  # filled by each forward rasterisation: intersections, footprint evaluations


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


class _QuatScaleToCovar(torch.autograd.Function):
    @staticmethod
    def forward(ctx, quats, scales):
        ctx.save_for_backward(quats, scales)
        return _ext().covar_fwd(quats.detach(), scales.detach(), get_num_threads())

    @staticmethod
    def backward(ctx, v_covars):
        quats, scales = ctx.saved_tensors
        vq, vs = _ext().covar_bwd(quats, scales, v_covars, get_num_threads())
        return vq, vs


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, covars, opacities, viewmat, K, width, height, near, far, eps2d, antialiased):
        m2d, conics, depths, radii, opac = _ext().project_fwd(
            means.detach(), covars.detach(), opacities.detach(), viewmat.detach(), K.detach(), width, height,
            near, far, eps2d, antialiased, get_num_threads(),
        )
        ctx.save_for_backward(means, covars, opacities, viewmat, K, radii)
        ctx.cfg = (width, height, eps2d, antialiased)
        ctx.mark_non_differentiable(radii)
        return m2d, conics, depths, radii, opac

    @staticmethod
    def backward(ctx, v_m2d, v_conics, v_depths, _v_radii, v_opac):
        means, covars, opacities, viewmat, K, radii = ctx.saved_tensors
        width, height, eps2d, antialiased = ctx.cfg
        z = lambda t, like: torch.zeros_like(like) if t is None else t  # noqa: E731
        vm, vc, vo = _ext().project_bwd(
            means, covars, opacities, viewmat, K, width, height, radii, eps2d, antialiased,
            z(v_m2d, means[:, :2]), z(v_conics, means), z(v_depths, opacities), z(v_opac, opacities),
            get_num_threads(),
        )
        return vm, vc, vo, None, None, None, None, None, None, None, None


class _EvalSH(torch.autograd.Function):
    @staticmethod
    def forward(ctx, degree, coeffs, dirs):
        ctx.save_for_backward(dirs)
        ctx.degree, ctx.k = degree, coeffs.shape[1]
        return _ext().sh_fwd(degree, coeffs.detach(), dirs.detach(), get_num_threads())

    @staticmethod
    def backward(ctx, v_out):
        (dirs,) = ctx.saved_tensors
        return None, _ext().sh_bwd(ctx.degree, v_out, ctx.k, dirs.detach(), get_num_threads()), None


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, depths, radii, background, width, height, tile):
        bg = None if background is None else background.detach()
        out_c, out_a, out_d, out_t, last_id, last_pos, bins, evals = _ext().raster_fwd(
            means2d.detach(), conics.detach(), colors.detach(), opacities.detach(), depths.detach(), radii, bg,
            width, height, tile, get_num_threads(),
        )
        last_stats.update(intersections=bins.intersections, evaluations=evals, tile=tile)
        ctx.save_for_backward(means2d, conics, colors, opacities, depths, radii, out_t, last_pos)
        ctx.bg = bg
        ctx.bins = bins
        ctx.cfg = (width, height, tile)
        ctx.means2d_ref = weakref.ref(means2d)
        ctx.has_bg = background is not None
        ctx.mark_non_differentiable(out_t, last_id)
        return out_c, out_a, out_d, out_t, last_id

    @staticmethod
    def backward(ctx, v_colors, v_alphas, v_depths, _v_t, _v_last):
        means2d, conics, colors, opacities, depths, radii, out_t, last_pos = ctx.saved_tensors
        width, height, tile = ctx.cfg
        z = lambda t, like: torch.zeros_like(like) if t is None else t  # noqa: E731
        v_colors, v_alphas, v_depths = z(v_colors, out_t.expand(-1, -1, colors.shape[1])), z(v_alphas, out_t), z(v_depths, out_t)
        vm, vcon, vcol, vo, vd, absgrad = _ext().raster_bwd(
            ctx.bins, means2d, conics, colors, opacities, depths, radii, ctx.bg, width, height, tile,
            get_num_threads(), out_t, last_pos, v_colors, v_alphas, v_depths,
        )
        target = ctx.means2d_ref()
        if target is not None:
            target.absgrad = absgrad
        v_bg = (out_t * v_colors).sum(dim=(0, 1)) if ctx.has_bg else None
        return vm, vcon, vcol, vo, vd, None, v_bg, None, None, None


def quat_scale_to_covar(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Covariance R S S^T R^T from (N, 4) wxyz quaternions and (N, 3) scales."""
    return _QuatScaleToCovar.apply(quats.contiguous(), scales.contiguous())


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
        means.contiguous(), covars.contiguous(), opacities.contiguous(), viewmat, K, int(width), int(height),
        float(near), float(far), float(eps2d), bool(antialiased),
    )
    return Projection(*out)


def eval_sh(degree: int, coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Raw SH value (see reference.eval_sh); no gradient to `dirs`."""
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be in 0..3, got {degree}")
    needed = (degree + 1) ** 2
    if coeffs.shape[-2] < needed:
        raise ValueError(f"SH degree {degree} needs {needed} coefficients, got {coeffs.shape[-2]}")
    return _EvalSH.apply(degree, coeffs.contiguous(), dirs.contiguous())


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
) -> Composite:
    """Tiled front-to-back blending (see reference.rasterize_to_pixels); also returns final T and last ids."""
    del max_elements  # dense-reference chunking knob, unused here
    tile = _TILE_SIZE if tile_size is None else int(tile_size)
    if background is not None:
        background = background.reshape(-1).contiguous()
    out_c, out_a, out_d, out_t, last_id = _Rasterize.apply(
        means2d.contiguous(), conics.contiguous(), colors.contiguous(), opacities.contiguous(), depths.contiguous(),
        radii, background, int(width), int(height), tile,
    )
    return Composite(out_c, out_a, out_d, out_t, last_id)
