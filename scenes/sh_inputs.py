"""The rasterizer's SH input (N, K, 3) from a scene's two SH parameters (DC (N, 1, 3) and the rest (N, R, 3)).

`torch.cat([dc, rest], 1)[:, :K]` costs three image-independent passes over all coefficients per step: the cat, the
slice's backward (a zero tensor of the full shape, then a copy), and AccumulateGrad's copies of the cat backward's
strided views; with 100k Gaussians at degree 3 that was ~10 ms of a 160 ms step. `gather_sh` writes the K
coefficients once and its backward writes each gradient once, contiguous (AccumulateGrad keeps it as it is). The
gradients are the same values: the coefficients above K get exact zeros, as through the slice, so the optimiser sees
what it saw before. Both tensors are made every step, so on the CPU they come from recycled storage
(`cuda_rasterizer.recycled`): fresh, the rest's gradient page-faulted ~180 MB a step at 1M Gaussians.
"""

from __future__ import annotations

import torch

from cuda_rasterizer.recycled import recycled_empty


class _GatherSH(torch.autograd.Function):
    @staticmethod
    def forward(ctx, dc: torch.Tensor, rest: torch.Tensor, k: int) -> torch.Tensor:
        ctx.rest_shape = rest.shape
        out = recycled_empty((dc.shape[0], k, dc.shape[2]), dc)
        out[:, :1] = dc
        if k > 1:
            out[:, 1:] = rest[:, : k - 1]
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        v_dc = grad[:, :1].contiguous()
        v_rest = recycled_empty(ctx.rest_shape, grad)
        k = grad.shape[1]
        if k > 1:
            v_rest[:, : k - 1] = grad[:, 1:]
        v_rest[:, k - 1 :].zero_()  # fill_: item assignment of 0 copies from a scalar tensor, ~4x slower
        return v_dc, v_rest, None


def gather_sh(dc: torch.Tensor, rest: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k, C) = the first k SH coefficients of [dc, rest] (dc (N, 1, C), rest (N, R, C), 1 <= k <= R + 1)."""
    if not 1 <= k <= rest.shape[1] + 1:
        raise ValueError(f"gather_sh: k must be in 1..{rest.shape[1] + 1}, got {k}")
    if not (dc.requires_grad or rest.requires_grad):
        return torch.cat([dc, rest[:, : k - 1]], dim=1)
    return _GatherSH.apply(dc, rest, k)
