"""Autograd Functions shared by the native backends; each takes the compiled extension module and a thread count.

The extension exposes covar_fwd/bwd, project_fwd/bwd, sh_fwd/bwd and raster_fwd/bwd with identical signatures on
CPU and CUDA. After backward, `means2d.absgrad` holds the (N, 2) sum over pixels of |d loss / d means2d|.
"""

from __future__ import annotations

import weakref
from typing import Any, Dict

import torch

from .recycled import recycled_empty

last_stats: Dict[str, Any] = {}  # filled by each forward rasterisation: intersections, footprint evaluations


class _QuatScaleToCovar(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ext, nthreads, quats, scales):
        ctx.ext, ctx.nthreads = ext, nthreads
        ctx.save_for_backward(quats, scales)
        return ext.covar_fwd(quats.detach(), scales.detach(), nthreads)

    @staticmethod
    def backward(ctx, v_covars):
        quats, scales = ctx.saved_tensors
        vq, vs = ctx.ext.covar_bwd(quats, scales, v_covars.contiguous(), ctx.nthreads)
        return None, None, vq, vs


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ext, nthreads, means, covars, opacities, viewmat, K, width, height, near, far, eps2d, antialiased):
        ctx.ext, ctx.nthreads = ext, nthreads
        m2d, conics, depths, radii, opac = ext.project_fwd(
            means.detach(), covars.detach(), opacities.detach(), viewmat.detach(), K.detach(), width, height,
            near, far, eps2d, antialiased, nthreads,
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
        vm, vc, vo = ctx.ext.project_bwd(
            means, covars, opacities, viewmat, K, width, height, radii, eps2d, antialiased,
            z(v_m2d, means[:, :2]), z(v_conics, means), z(v_depths, opacities), z(v_opac, opacities),
            ctx.nthreads,
        )
        return None, None, vm, vc, vo, None, None, None, None, None, None, None, None


class _GaborProject(torch.autograd.Function):
    """Gabor wave terms seen from a camera (gabor.project_gabor_terms on the extension)."""

    @staticmethod
    def forward(ctx, ext, nthreads, means, covars, freqs, weights, phases, viewmat, K, width, height, radii, eps2d):
        ctx.ext, ctx.nthreads = ext, nthreads
        ctx.save_for_backward(means, covars, freqs, weights, viewmat, K, radii)
        ctx.cfg = (width, height, eps2d)
        return ext.gabor_project_fwd(
            means.detach(), covars.detach(), freqs.detach(), weights.detach(), phases.detach(), viewmat.detach(),
            K.detach(), width, height, radii, eps2d, nthreads,
        )

    @staticmethod
    def backward(ctx, v_terms):
        means, covars, freqs, weights, viewmat, K, radii = ctx.saved_tensors
        width, height, eps2d = ctx.cfg
        vm, vc, vf, vw, vp = ctx.ext.gabor_project_bwd(
            means, covars, freqs, weights, viewmat, K, width, height, radii, eps2d, v_terms.contiguous(), ctx.nthreads
        )
        return None, None, vm, vc, vf, vw, vp, None, None, None, None, None, None


def gabor_project(ext, nthreads, means, covars, freqs, weights, phases, viewmat, K, width, height, radii, eps2d):
    """(N, K, 4) footprint terms (hx, hy, amplitude, phase); see gabor.project_gabor_terms."""
    return _GaborProject.apply(
        ext, nthreads, means.contiguous(), covars.contiguous(), freqs.contiguous(), weights.contiguous(),
        phases.contiguous(), viewmat, K, int(width), int(height), radii, float(eps2d),
    )


class _EvalSH(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ext, nthreads, degree, coeffs, dirs):
        ctx.ext, ctx.nthreads = ext, nthreads
        ctx.save_for_backward(dirs)
        ctx.degree, ctx.k = degree, coeffs.shape[1]
        return ext.sh_fwd(degree, coeffs.detach(), dirs.detach(), nthreads)

    @staticmethod
    def backward(ctx, v_out):
        (dirs,) = ctx.saved_tensors
        return None, None, None, ctx.ext.sh_bwd(ctx.degree, v_out.contiguous(), ctx.k, dirs.detach(), ctx.nthreads), None


class _SHColors(torch.autograd.Function):
    """max(SH(means - camera centre) + 0.5, 0) in one native pass; no gradient to `means` (the pipeline detaches the
    directions)."""

    @staticmethod
    def forward(ctx, ext, nthreads, degree, coeffs, means, viewmat):
        ctx.ext, ctx.nthreads, ctx.degree, ctx.k = ext, nthreads, degree, coeffs.shape[1]
        colors = ext.sh_colors_fwd(degree, coeffs.detach(), means.detach(), viewmat, nthreads)
        ctx.save_for_backward(means, viewmat, colors)
        return colors

    @staticmethod
    def backward(ctx, v_colors):
        means, viewmat, colors = ctx.saved_tensors
        v_coeffs = ctx.ext.sh_colors_bwd(ctx.degree, v_colors.contiguous(), colors, ctx.k, means.detach(), viewmat,
                                         ctx.nthreads)
        return None, None, None, v_coeffs, None, None


def _dense(grad: torch.Tensor) -> torch.Tensor:
    """`grad` as a contiguous tensor. A loss such as `image.sum()` or `image.mean()` hands back a broadcast (stride 0)
    image gradient; its dense copy goes into the extension's recycled storage (recycled.py) instead of a new
    allocation."""
    if grad.is_contiguous():
        return grad
    return recycled_empty(grad.shape, grad).copy_(grad)


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ext, nthreads, means2d, conics, colors, opacities, depths, radii, background, width, height, tile,
                absgrad=True):
        ctx.ext, ctx.nthreads, ctx.absgrad = ext, nthreads, absgrad
        bg = None if background is None else background.detach()
        out_c, out_a, out_d, out_t, last_id, last_pos, bins, evals = ext.raster_fwd(
            means2d.detach(), conics.detach(), colors.detach(), opacities.detach(), depths.detach(), radii, bg,
            width, height, tile, nthreads,
        )
        last_stats.update(intersections=bins.intersections, evaluations=evals, tile=tile)
        ctx.save_for_backward(means2d, conics, colors, opacities, depths, radii, out_t, last_pos)
        ctx.bg = bg
        ctx.bins = bins
        ctx.cfg = (width, height, tile)
        ctx.means2d_ref = weakref.ref(means2d)
        ctx.has_bg = background is not None
        ctx.mark_non_differentiable(out_t, last_id)
        ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None: no zero images to fill
        return out_c, out_a, out_d, out_t, last_id

    @staticmethod
    def backward(ctx, v_colors, v_alphas, v_depths, _v_t, _v_last):
        means2d, conics, colors, opacities, depths, radii, out_t, last_pos = ctx.saved_tensors
        width, height, tile = ctx.cfg
        z = lambda t, like: torch.zeros_like(like) if t is None else t  # noqa: E731
        v_colors, v_alphas = z(v_colors, out_t.expand(-1, -1, colors.shape[1])), z(v_alphas, out_t)
        # no gradient reaches the depth output (training on colours only): an empty tensor lets the kernels skip it
        v_depths = out_t.new_empty(0) if v_depths is None else v_depths
        vm, vcon, vcol, vo, vd, absgrad = ctx.ext.raster_bwd(
            ctx.bins, means2d, conics, colors, opacities, depths, radii, ctx.bg, width, height, tile,
            ctx.nthreads, out_t, last_pos, _dense(v_colors), _dense(v_alphas), _dense(v_depths),
            ctx.absgrad,
        )
        target = ctx.means2d_ref()
        if target is not None and ctx.absgrad:
            target.absgrad = absgrad
        # the background's gradient only when it is trained (a (H, W, C) product and sum per step otherwise)
        v_bg = (out_t * v_colors).sum(dim=(0, 1)) if ctx.has_bg and ctx.needs_input_grad[8] else None
        return None, None, vm, vcon, vcol, vo, vd, None, v_bg, None, None, None, None
