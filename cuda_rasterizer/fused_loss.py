"""Fused photometric loss: (1 - w) L1 + w (1 - SSIM) with its gradient in one native call.

SSIM uses an 11x11 Gaussian window (sigma 1.5) with zero-padded 'same' borders, as 3DGS computes it. The native
kernels (C++/OpenMP separable blurs; CUDA) compute the loss and the gradient with respect to the rendered image
together, which replaces the PyTorch graph of a depthwise convolution and ~50 element-wise ops per step.
`reference_l1_ssim` is the PyTorch oracle the kernels are tested against.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
C1, C2 = 0.01**2, 0.03**2


@lru_cache(maxsize=8)
def _window(channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Depthwise (channels, 1, 11, 11) Gaussian kernel, computed in float64 on the CPU so every device agrees."""
    coords = torch.arange(WINDOW_SIZE, dtype=torch.float64) - (WINDOW_SIZE - 1) / 2
    g = torch.exp(-(coords**2) / (2 * WINDOW_SIGMA**2))
    g = g / g.sum()
    return (g[:, None] @ g[None, :]).to(dtype).expand(channels, 1, WINDOW_SIZE, WINDOW_SIZE).contiguous().to(device)


def reference_ssim(img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean SSIM of (H, W, C) images in PyTorch (differentiable): the oracle for the native kernels."""
    x, y = img.permute(2, 0, 1), ref.to(img.device).permute(2, 0, 1)
    c = x.shape[0]
    maps = torch.cat([x, y, x * x, y * y, x * y])[None]
    blurred = F.conv2d(maps, _window(5 * c, img.dtype, img.device), padding=WINDOW_SIZE // 2, groups=5 * c)[0]
    mu_x, mu_y, xx, yy, xy = blurred.split(c)
    sigma_x, sigma_y, sigma_xy = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + C1) * (2 * sigma_xy + C2)) / ((mu_x**2 + mu_y**2 + C1) * (sigma_x + sigma_y + C2))
    return ssim_map.mean()


def reference_l1_ssim(img: torch.Tensor, ref: torch.Tensor, ssim_weight: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """(loss, mean SSIM) in PyTorch; loss = (1 - w) mean|img - ref| + w (1 - SSIM)."""
    loss, s, _ = reference_photometric(img, ref, ssim_weight)
    return loss, s


def reference_photometric(
    img: torch.Tensor, ref: torch.Tensor, ssim_weight: float
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, mean SSIM, mean squared error of the image clamped to [0, 1]) in PyTorch."""
    ref = ref.to(img.device)
    s = reference_ssim(img, ref)
    loss = (1 - ssim_weight) * (img - ref).abs().mean() + ssim_weight * (1 - s)
    mse = ((img.detach().clamp(0, 1) - ref) ** 2).mean()
    return loss, s.detach(), mse


def native_available(device: torch.device) -> bool:
    """Whether a native kernel serves tensors on `device` (a C++ compiler for the CPU; a GPU for CUDA)."""
    from .backends import available_backends

    return ("cuda" if torch.device(device).type == "cuda" else "cpu") in available_backends()


def _extension(device: torch.device):
    if device.type == "cuda":
        from ._build import build_cuda_extension

        return build_cuda_extension()
    from ._build import build_cpu_extension

    return build_cpu_extension()


def _threads() -> int:
    from .cpu_backend import get_num_threads

    return get_num_threads()


def _native_call(
    img: torch.Tensor, ref: torch.Tensor, ssim_weight: float, want_grad: bool, mask: Optional[torch.Tensor] = None
):
    """(stats, grad) of the kernel; `mask` (CPU only) scores where(mask, img, ref)."""
    ext = _extension(img.device)
    if img.device.type == "cuda":
        assert mask is None, "the CUDA kernel takes no mask (photometric_terms applies it before)"
        return ext.l1_ssim(img, ref, float(ssim_weight), bool(want_grad))
    return ext.l1_ssim(img, ref, float(ssim_weight), bool(want_grad), _threads(), mask)


class _FusedL1SSIM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, img: torch.Tensor, ref: torch.Tensor, ssim_weight: float, mask: Optional[torch.Tensor] = None):
        stats, grad = _native_call(img.detach(), ref, ssim_weight, ctx.needs_input_grad[0], mask)
        ctx.save_for_backward(grad)
        loss = (1 - ssim_weight) * stats[0] + ssim_weight * (1 - stats[1])
        ssim_value, mse = stats[1].to(img.dtype), stats[2].to(img.dtype)
        ctx.mark_non_differentiable(ssim_value, mse)
        return loss.to(img.dtype), ssim_value, mse

    @staticmethod
    def backward(ctx, v_loss: torch.Tensor, v_ssim: torch.Tensor, v_mse: torch.Tensor):
        (grad,) = ctx.saved_tensors
        if v_loss.device.type == "cpu" and float(v_loss) == 1.0:  # the usual case: no image-sized multiply (~0.7 ms on fern)
            return grad, None, None, None
        return v_loss * grad, None, None, None


def _check(img: torch.Tensor, ref: torch.Tensor) -> None:
    if img.dim() != 3 or img.shape != ref.shape:
        raise ValueError(f"l1_ssim: images must be (H, W, C) of one shape, got {tuple(img.shape)} and {tuple(ref.shape)}")


def expand_mask(img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`mask` checked and returned as a contiguous bool tensor of img's shape ((H, W, 1) masks are expanded to the
    channels); ValueError naming both shapes otherwise."""
    shape_ok = mask.dim() == 3 and mask.shape[:2] == img.shape[:2] and mask.shape[2] in (1, img.shape[2])
    if mask.dtype != torch.bool or not shape_ok:
        raise ValueError(
            f"l1_ssim: mask must be a bool (H, W, 1) or (H, W, C) tensor for an image of shape {tuple(img.shape)}, "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )
    return mask.to(img.device).expand_as(img).contiguous()


def photometric_terms(
    img: torch.Tensor,
    ref: torch.Tensor,
    ssim_weight: float = 0.2,
    native: bool = True,
    mask: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, mean SSIM, MSE of `img` clamped to [0, 1]) of (H, W, C) `img` against `ref`, in one pass.

    Only the loss is differentiable (with respect to `img`); the MSE gives PSNR without another pass.
    `mask` (bool, (H, W, 1) or (H, W, C)): the terms of where(mask, img, ref), so masked-out pixels carry neither
    error nor gradient; the CPU kernel applies it itself (no extra image-sized pass each way).
    `native=False` (or an unsupported dtype/device: CUDA is float32 only) uses the PyTorch reference.
    """
    _check(img, ref)
    ref = ref.to(device=img.device, dtype=img.dtype).contiguous()
    if mask is not None:
        mask = expand_mask(img, mask)
    cuda_ok = img.device.type != "cuda" or img.dtype == torch.float32
    supported = cuda_ok and img.dtype in (torch.float32, torch.float64) and native_available(img.device)
    if not native or not supported:
        return reference_photometric(img if mask is None else torch.where(mask, img, ref), ref, ssim_weight)
    if mask is not None and img.device.type == "cuda":
        img, mask = torch.where(mask, img, ref), None
    return _FusedL1SSIM.apply(img.contiguous(), ref, float(ssim_weight), mask)


def l1_ssim_loss(
    img: torch.Tensor, ref: torch.Tensor, ssim_weight: float = 0.2, native: bool = True
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(loss, mean SSIM) of (H, W, C) `img` against `ref`; the loss is differentiable with respect to `img`."""
    loss, s, _ = photometric_terms(img, ref, ssim_weight, native)
    return loss, s


@torch.no_grad()
def ssim_value(img: torch.Tensor, ref: torch.Tensor, native: bool = True) -> torch.Tensor:
    """Mean SSIM (0-dim tensor) with the same kernel training uses; no gradient is computed."""
    _check(img, ref)
    ref = ref.to(device=img.device, dtype=img.dtype).contiguous()
    cuda_ok = img.device.type != "cuda" or img.dtype == torch.float32
    supported = cuda_ok and img.dtype in (torch.float32, torch.float64) and native_available(img.device)
    if not native or not supported:
        return reference_ssim(img, ref)
    stats, _ = _native_call(img.contiguous(), ref, 0.0, False)
    return stats[1].to(img.dtype)
