"""World-space angular frequencies of Gabor terms, f_k = 2 pi R(q) diag(1 / s) nu_k, with a native CPU kernel.

A Gabor primitive stores its K wave frequencies nu_k in cycles per standard deviation along its own axes, so the
waves rotate and scale with it; the rasterizer takes them in radians per world unit. This runs once per training
step on every primitive: as some thirty small PyTorch ops (rotation matrix, broadcasts, a batched 3x3 product) it
cost more per step than the Gabor footprint projection, so CPU tensors use one fused pass forward and one backward
(csrc/gabor_math.h: gabor_world_freqs and its VJP). `reference_world_frequencies` is the oracle the tests compare
against; other devices use it too.
"""

from __future__ import annotations

import math

import torch

from .reference import quat_to_rotmat


def reference_world_frequencies(nu: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(N, K, 3) radians per world unit from (N, K, 3) nu, (N, 4) wxyz quats (normalised here), (N, 3) scales."""
    rot = quat_to_rotmat(quats)
    local = (2.0 * math.pi) * nu / scales[:, None, :]
    return torch.einsum("nij,nkj->nki", rot, local)


class _WorldFrequencies(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ext, nthreads, nu, quats, scales):
        ctx.ext, ctx.nthreads = ext, nthreads
        ctx.save_for_backward(nu, quats, scales)
        return ext.gabor_freqs_fwd(quats.detach(), scales.detach(), nu.detach(), nthreads)

    @staticmethod
    def backward(ctx, v_freqs):
        nu, quats, scales = ctx.saved_tensors
        v_quats, v_scales, v_nu = ctx.ext.gabor_freqs_bwd(quats, scales, nu, v_freqs.contiguous(), ctx.nthreads)
        return None, None, v_nu, v_quats, v_scales


def _native_ok(nu: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor) -> bool:
    from .backends import available_backends

    tensors = (nu, quats, scales)
    return (
        all(t.device.type == "cpu" and t.dtype == nu.dtype for t in tensors)
        and nu.dtype in (torch.float32, torch.float64)
        and "cpu" in available_backends()
    )


def world_frequencies(nu: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, native: bool = True) -> torch.Tensor:
    """(N, K, 3) world angular frequencies f_k = 2 pi R(q) diag(1 / s) nu_k, differentiable in all three inputs.

    nu (N, K, 3) in cycles per standard deviation along the primitive's axes; quats (N, 4) wxyz; scales (N, 3) > 0.
    """
    n = quats.shape[0]
    if nu.dim() != 3 or nu.shape[0] != n or nu.shape[2] != 3:
        raise ValueError(f"gabor nu must have shape ({n}, K, 3) to match {n} quaternions, got {tuple(nu.shape)}")
    if tuple(scales.shape) != (n, 3) or tuple(quats.shape) != (n, 4):
        raise ValueError(f"quats and scales must be ({n}, 4) and ({n}, 3), got {tuple(quats.shape)} and {tuple(scales.shape)}")
    if not (native and _native_ok(nu, quats, scales)):
        return reference_world_frequencies(nu, quats, scales)
    from ._build import build_cpu_extension
    from .cpu_backend import get_num_threads

    return _WorldFrequencies.apply(
        build_cpu_extension(), get_num_threads(), nu.contiguous(), quats.contiguous(), scales.contiguous()
    )
