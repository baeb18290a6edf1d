"""Autograd wrapper of the native 4D slice (sf_math.h `slice4` / `slice4_vjp`), shared by the CPU and CUDA backends.

The slice: space-time point p = t + x i + y j + z k, rotation p -> q_l p q_r, Sigma4 = R4 S S^T R4^T on the
(x, y, z, t) axes; Sigma3 = Sxyz - Sxyz,t Sxyz,t^T / Stt, mean3 = mu + Sxyz,t / Stt (t - mu_t),
opacity(t) = o exp(-0.5 (t - mu_t)^2 / Stt). A temporal filter of standard deviation f adds f^2 to Stt (Sigma4 +
f^2 e_t e_t^T): no primitive is shorter-lived than f.
"""

from __future__ import annotations

from typing import Callable, Tuple

import torch


class Slice4(torch.autograd.Function):
    """forward(fwd, bwd, means, times, q_left, q_right, scales, opacities, t, filter_var) -> (means3, covars3,
    opacities_t, temporal exponents); `fwd` / `bwd` are the backend's raw kernels. Exponents carry no gradient."""

    @staticmethod
    def forward(ctx, fwd: Callable, bwd: Callable, means, times, q_left, q_right, scales, opacities, t: float,
                filter_var: float):
        mean3, cov3, opac_t, exponent = fwd(means, times.reshape(-1), q_left, q_right, scales, filter_var, opacities, t)
        ctx.save_for_backward(times, q_left, q_right, scales, opacities)
        ctx.bwd, ctx.t, ctx.filter_var = bwd, t, filter_var
        ctx.mark_non_differentiable(exponent)
        return mean3, cov3, opac_t, exponent

    @staticmethod
    def backward(ctx, v_mean3, v_cov3, v_opac_t, _v_exponent):
        times, q_left, q_right, scales, opacities = ctx.saved_tensors
        n = times.shape[0]
        v_mean3 = torch.zeros(n, 3, dtype=times.dtype, device=times.device) if v_mean3 is None else v_mean3
        v_cov3 = torch.zeros(n, 3, 3, dtype=times.dtype, device=times.device) if v_cov3 is None else v_cov3
        v_opac_t = torch.zeros(n, dtype=times.dtype, device=times.device) if v_opac_t is None else v_opac_t
        vm, vt, vql, vqr, vs, vo = ctx.bwd(
            times.reshape(-1), q_left, q_right, scales, ctx.filter_var, opacities, ctx.t, v_mean3, v_cov3, v_opac_t
        )
        return None, None, vm, vt.reshape(times.shape), vql, vqr, vs, vo, None, None


def apply_slice4(fwd: Callable, bwd: Callable, means, times, q_left, q_right, scales, opacities, t: float,
                 time_filter: float = 0.0) -> Tuple:
    if not (time_filter >= 0 and time_filter < float("inf")):
        raise ValueError(f"time_filter must be a finite value >= 0, got {time_filter}")
    return Slice4.apply(fwd, bwd, means, times, q_left, q_right, scales, opacities, float(t), float(time_filter) ** 2)
