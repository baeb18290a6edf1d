"""`rasterize_gaussians`: the one entry point that validates inputs and runs the four stages on a backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import torch

from .backends import get_backend, resolve_backend
from .constants import EPS_2D, MAX_SH_DEGREE
from .gabor import check_gabor_inputs, footprint_params, peak_modulation


@dataclass
class RasterizeOutput:
    colors: torch.Tensor  # (H, W, C), background included
    alphas: torch.Tensor  # (H, W, 1)
    depths: torch.Tensor  # (H, W, 1) expected camera-axis z (0 where nothing was hit)
    meta: Dict[str, torch.Tensor] = field(default_factory=dict)


def _check(name: str, tensor: torch.Tensor, shape: tuple, finite: bool = True) -> None:
    if not torch.is_tensor(tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != len(shape) or any(s is not None and s != t for s, t in zip(shape, tensor.shape)):
        dims = ["N" if s is None else str(s) for s in shape]
        expected = "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
        raise ValueError(f"{name} must have shape {expected}, got {tuple(tensor.shape)}")
    if not finite:
        return
    data = tensor.detach()
    # One reduction is the fast path (a NaN/Inf anywhere makes the sum non-finite); confirm element-wise only then.
    if not torch.isfinite(data.sum()) and not torch.isfinite(data).all():
        raise ValueError(f"{name} contains NaN or Inf")


def rasterize_gaussians(
    means: torch.Tensor,
    quats: Optional[torch.Tensor],
    scales: Optional[torch.Tensor],
    opacities: torch.Tensor,
    colors: torch.Tensor,
    viewmat: torch.Tensor,
    K: torch.Tensor,
    width: int,
    height: int,
    *,
    sh_degree: Optional[int] = None,
    background: Optional[torch.Tensor] = None,
    covars: Optional[torch.Tensor] = None,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = EPS_2D,
    antialiased: bool = False,
    backend: str = "auto",
    gabor_freqs: Optional[torch.Tensor] = None,
    gabor_weights: Optional[torch.Tensor] = None,
    gabor_phases: Optional[torch.Tensor] = None,
    check_finite: bool = True,
    absgrad: bool = True,
) -> RasterizeOutput:
    """Render 3D Gaussians (or 3D Gabor primitives) to an image.

    means (N, 3); quats (N, 4) wxyz and scales (N, 3) positive, or covars (N, 3, 3); opacities (N,) in [0, 1];
    colors (N, C) or, with `sh_degree`, SH coefficients (N, K, C); viewmat (4, 4) OpenCV world-to-camera;
    K (3, 3) pixels. meta['means2d'] keeps its gradient (call retain_grad()) as the densification signal.
    Gabor primitives (all three or none): gabor_freqs (N, K, 3) world angular frequencies (radians per unit),
    gabor_weights (N, K) with sum_k |w_k| <= 1, gabor_phases (N, K); density o G(x) (1 + sum_k w_k cos(f_k . (x -
    mean) + phi_k)). Gradients reach all three.
    check_finite=False skips the NaN/Inf scan of the inputs (shapes are still checked): for callers that guarantee
    finite inputs themselves, e.g. the trainer, which checks its parameters after every step; on a GPU each scan is a
    device synchronisation.
    absgrad=True (CPU and CUDA backends): after backward, meta['means2d'].absgrad holds the (N, 2) sum over pixels
    of |d loss / d means2d| (gsplat's absgrad); False skips it (the CPU backward is then ~20% cheaper for Gaussians).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    _check("means", means, (None, 3), check_finite)
    n = means.shape[0]
    if covars is None:
        if quats is None or scales is None:
            raise ValueError("pass either quats and scales, or covars")
        _check("quats", quats, (n, 4), check_finite)
        _check("scales", scales, (n, 3), check_finite)
    else:
        _check("covars", covars, (n, 3, 3), check_finite)
    _check("opacities", opacities, (n,), check_finite)
    if sh_degree is None:
        _check("colors", colors, (n, None), check_finite)
    else:
        if not 0 <= sh_degree <= MAX_SH_DEGREE:
            raise ValueError(f"sh_degree must be in 0..{MAX_SH_DEGREE}, got {sh_degree}")
        _check("colors (SH coefficients)", colors, (n, None, None), check_finite)
        if colors.shape[1] < (sh_degree + 1) ** 2:
            raise ValueError(f"sh_degree {sh_degree} needs {(sh_degree + 1) ** 2} SH coefficients, got {colors.shape[1]}")
    _check("viewmat", viewmat, (4, 4), check_finite)
    _check("K", K, (3, 3), check_finite)
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise ValueError(f"K must have positive focal lengths, got fx={float(K[0, 0])}, fy={float(K[1, 1])}")

    terms_count = check_gabor_inputs(n, gabor_freqs, gabor_weights, gabor_phases)

    impl = get_backend(resolve_backend(backend, means.device))
    dtype = means.dtype
    # Backends that read the camera on the host (CUDA: into kernel arguments) take it there: a camera on the GPU would
    # be copied back, a device synchronisation in the forward and again in the backward.
    camera_device = torch.device("cpu") if getattr(impl, "CAMERA_ON_HOST", False) else means.device
    viewmat = viewmat.to(dtype=dtype, device=camera_device)
    K = K.to(dtype=dtype, device=camera_device)
    if covars is None:
        covars = impl.quat_scale_to_covar(quats, scales)
    if terms_count:
        # Extents and culling use opacity x the largest modulation; blending uses the opacity itself.
        peak = peak_modulation(gabor_weights).to(dtype)
        proj = impl.project(means, covars, opacities * peak, viewmat, K, width, height, near, far, eps2d, antialiased)
        proj_opacities = proj.opacities / peak
        terms = impl.project_gabor_terms(
            means, covars, gabor_freqs.to(dtype), gabor_weights.to(dtype), gabor_phases.to(dtype), viewmat, K,
            width, height, proj.radii, eps2d,
        )
    else:
        proj = impl.project(means, covars, opacities, viewmat, K, width, height, near, far, eps2d, antialiased)
        proj_opacities, terms = proj.opacities, None

    if sh_degree is not None:
        colors = impl.sh_colors(sh_degree, colors, means, viewmat)
    channels = colors.shape[-1]
    if background is not None:
        background = torch.as_tensor(background, dtype=dtype, device=means.device).reshape(-1)
        if background.numel() != channels:
            raise ValueError(f"background must have {channels} channels, got {background.numel()}")
    comp = impl.rasterize_to_pixels(
        proj.means2d, footprint_params(proj.conics, terms), colors, proj_opacities, proj.depths, proj.radii, width,
        height, background, absgrad=absgrad,
    )
    # Where nothing was hit the accumulated depth is exactly 0 (and any hit has alpha >= 1/255), so the clamped
    # division alone gives 0 there: two image-sized passes instead of five.
    expected_depth = comp.depths / comp.alphas.clamp(min=1e-10)
    meta = {"means2d": proj.means2d, "radii": proj.radii, "depths": proj.depths, "accumulated_depth": comp.depths}
    return RasterizeOutput(comp.colors, comp.alphas, expected_depth, meta)
