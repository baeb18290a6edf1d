"""Photometric losses and image metrics (L1, SSIM, PSNR) on (H, W, C) images in [0, 1], and a depth L1."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from cuda_rasterizer.fused_loss import expand_mask, photometric_terms, reference_ssim, ssim_value


def ssim(img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean SSIM with an 11x11 Gaussian window (sigma 1.5), zero-padded 'same' borders as 3DGS computes it.

    Without autograd it runs on the native kernel training uses (cuda_rasterizer.fused_loss), so sf-eval and the
    training loss agree; a graph that needs gradients gets the PyTorch oracle of the same math.
    """
    if img.shape != ref.shape:
        raise ValueError(f"ssim: image shapes differ: {tuple(img.shape)} vs {tuple(ref.shape)}")
    if torch.is_grad_enabled() and img.requires_grad:
        return reference_ssim(img, ref)
    return ssim_value(img, ref)


def psnr(img: torch.Tensor, ref: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of `img` (clamped to [0, 1]) against `ref`, on `img`'s device."""
    return psnr_from_mse(F.mse_loss(img.detach().clamp(0, 1), ref.detach().to(img.device)).item())


def photometric_loss(img: torch.Tensor, ref: torch.Tensor, ssim_weight: float = 0.2, native: bool = True) -> torch.Tensor:
    """(1 - w) L1 + w (1 - SSIM), the 3DGS training loss (on `img`'s device; keep `ref` there to avoid copies).

    One fused native call computes the loss and its gradient (cuda_rasterizer.fused_loss); `native=False` builds
    the PyTorch graph instead (same value within float32 round-off).
    """
    return photometric_loss_and_mse(img, ref, ssim_weight, native)[0]


def photometric_loss_and_mse(
    img: torch.Tensor,
    ref: torch.Tensor,
    ssim_weight: float = 0.2,
    native: bool = True,
    mask: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(photometric_loss, mean squared error of `img` clamped to [0, 1] as a detached 0-dim tensor): training logs
    PSNR from the same pass that computes the loss. The MSE stays on the device: reading it here would stall a GPU
    step until its forward pass ends, before the backward is even queued (the trainer reads it once, at the end).
    `mask` (bool (H, W, 1) or (H, W, C)): score where(mask, img, ref), i.e. masked-out pixels are not supervised."""
    ref = ref.to(img.device)
    if ssim_weight == 0:
        if mask is not None:
            img = torch.where(expand_mask(img, mask), img, ref)
        return (img - ref).abs().mean(), F.mse_loss(img.detach().clamp(0, 1), ref)
    loss, _, mse = photometric_terms(img, ref, ssim_weight, native=native, mask=mask)
    return loss, mse.detach()


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB for images in [0, 1] from their mean squared error."""
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)


def depth_l1(rendered_depth: torch.Tensor, rendered_alpha: torch.Tensor, target_depth: torch.Tensor) -> torch.Tensor:
    """Mean |rendered - target| depth over the pixels with a measurement (target > 0); 0-dim tensor.

    All arguments are (H, W, 1): `rendered_depth` is render(...).depth (alpha-normalised expected camera z),
    `target_depth` is View.depth (0 = no measurement). `rendered_alpha` is deliberately not used to weight or
    select pixels: where the target has a measurement but the render is (nearly) empty, the renderer's depth is
    0 / undefined there, and excluding such pixels would hide exactly the missing geometry the loss should fix;
    multiplying by alpha would instead give the optimiser a shortcut (lower opacity to lower the loss). The
    gradient reaches the Gaussians through the rendered depth. It is accepted (and shape-checked) so callers keep
    one signature if a coverage term is added later. With no valid pixel the result is 0 (still a graph node of
    `rendered_depth`, so backward() works).
    """
    if rendered_depth.shape != target_depth.shape or rendered_alpha.shape != target_depth.shape:
        raise ValueError(
            f"depth_l1: shapes differ: rendered depth {tuple(rendered_depth.shape)}, "
            f"alpha {tuple(rendered_alpha.shape)}, target {tuple(target_depth.shape)}"
        )
    target = target_depth.to(device=rendered_depth.device, dtype=rendered_depth.dtype)
    valid = target > 0
    count = valid.sum()
    err = torch.where(valid, (rendered_depth - target).abs(), torch.zeros_like(rendered_depth))
    return err.sum() / count.clamp(min=1).to(err.dtype)
