"""3D Gabor primitives: the PyTorch reference of the wave-term projection and of the 2D Gabor footprint.

A Gabor primitive's density is o G(x) (1 + sum_k w_k cos(f_k . (x - mean) + phi_k)) with sum_k |w_k| <= 1. Under the
affine approximation EWA uses, integrating it along each pixel's ray gives the 2D Gaussian envelope times
1 + sum_k a_k cos(h_k . u + phi_k), u = pixel - mean2d, with (csrc/gabor_math.h derives it):
  g_u = (z/fx f0, z/fy f1), g_z = f2 + (tx f0 + ty f1) / z  (f in camera axes, (tx, ty) the clamped x, y),
  h = g_u + Sigma_uu^-1 Sigma_uz g_z,  a = w exp(-0.5 g_z^2 s^2 - 0.5 eps2d |h|^2),  s^2 = Sigma_zz - Sigma_zu Sigma_uu^-1 Sigma_uz,
where Sigma_y = A Sigma A^T, A = [J; e_z^T] R_cam. The rasterizer's footprint parameters are then (N, 3 + 4 K): the
conic, and per term (hx, hy, a, phi). The native backends evaluate the same math (csrc/gabor_math.h).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch

from .constants import FRUSTUM_MARGIN, GABOR_CUTOFF_EXPONENT, MIN_DET

MAX_TERMS = 8  # the native kernels are instantiated for 1..8 terms


def check_gabor_inputs(
    n: int, freqs: Optional[torch.Tensor], weights: Optional[torch.Tensor], phases: Optional[torch.Tensor]
) -> int:
    """Validate the three Gabor inputs together; returns the term count K (0 when none are given)."""
    given = [name for name, t in (("gabor_freqs", freqs), ("gabor_weights", weights), ("gabor_phases", phases)) if t is not None]
    if not given:
        return 0
    if len(given) != 3:
        missing = sorted({"gabor_freqs", "gabor_weights", "gabor_phases"} - set(given))
        raise ValueError(f"Gabor primitives need gabor_freqs, gabor_weights and gabor_phases together; missing {missing}")
    if freqs.dim() != 3 or freqs.shape[0] != n or freqs.shape[2] != 3:
        raise ValueError(f"gabor_freqs must have shape ({n}, K, 3), got {tuple(freqs.shape)}")
    k = freqs.shape[1]
    if not 1 <= k <= MAX_TERMS:
        raise ValueError(f"Gabor primitives support 1..{MAX_TERMS} terms, got K = {k}")
    for name, t in (("gabor_weights", weights), ("gabor_phases", phases)):
        if tuple(t.shape) != (n, k):
            raise ValueError(f"{name} must have shape ({n}, {k}) to match gabor_freqs, got {tuple(t.shape)}")
    for name, t in (("gabor_freqs", freqs), ("gabor_weights", weights), ("gabor_phases", phases)):
        if not torch.isfinite(t.detach()).all():
            raise ValueError(f"{name} contains NaN or Inf")
    return k


def peak_modulation(weights: torch.Tensor) -> torch.Tensor:
    """(N,) largest value 1 + sum_k |w_k| the modulation can reach (extents and culling use opacity times it)."""
    return 1.0 + weights.detach().abs().sum(dim=-1)


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
    eps2d: float,
) -> torch.Tensor:
    """(N, K, 4) footprint terms (hx, hy, amplitude, phase) in pixels; zeros where radii == 0 (reference, autograd)."""
    rot, trans = viewmat[:3, :3], viewmat[:3, 3]
    means_c = means @ rot.T + trans
    cc = rot @ covars @ rot.T
    x, y, z = means_c.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    valid = (radii > 0).all(dim=-1) & (z > 0)
    z = torch.where(valid, z, torch.ones_like(z))
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + FRUSTUM_MARGIN * tan_x
    lim_x_neg = cx / fx + FRUSTUM_MARGIN * tan_x
    lim_y_pos = (height - cy) / fy + FRUSTUM_MARGIN * tan_y
    lim_y_neg = cy / fy + FRUSTUM_MARGIN * tan_y
    tx = z * torch.minimum(torch.maximum(x / z, -lim_x_neg), lim_x_pos)
    ty = z * torch.minimum(torch.maximum(y / z, -lim_y_neg), lim_y_pos)
    zeros, ones = torch.zeros_like(z), torch.ones_like(z)
    A = torch.stack(
        [fx / z, zeros, -fx * tx / z**2, zeros, fy / z, -fy * ty / z**2, zeros, zeros, ones], dim=-1
    ).reshape(-1, 3, 3)
    sy = A @ cc @ A.transpose(-1, -2)
    suu_a, suu_b, suu_c = sy[:, 0, 0], sy[:, 0, 1], sy[:, 1, 1]
    suz = sy[:, :2, 2]
    det = (suu_a * suu_c - suu_b * suu_b).clamp(min=MIN_DET)
    beta = torch.stack(
        [(suu_c * suz[:, 0] - suu_b * suz[:, 1]) / det, (-suu_b * suz[:, 0] + suu_a * suz[:, 1]) / det], dim=-1
    )
    s2 = (sy[:, 2, 2] - (suz * beta).sum(-1)).clamp(min=0)
    fc = freqs @ rot.T  # (N, K, 3) camera axes
    gz = fc[..., 2] + (tx[:, None] * fc[..., 0] + ty[:, None] * fc[..., 1]) / z[:, None]
    hx = z[:, None] / fx * fc[..., 0] + beta[:, None, 0] * gz
    hy = z[:, None] / fy * fc[..., 1] + beta[:, None, 1] * gz
    # Terms damped below exp(-GABOR_CUTOFF_EXPONENT) are cut (h = 0, amplitude 0), as in csrc/gabor_math.h; the cut
    # values are replaced before the exponent is formed, so no inf * 0 reaches the gradients.
    with torch.no_grad():
        cut = ~(0.5 * (gz * gz * s2[:, None] + eps2d * (hx * hx + hy * hy)) <= GABOR_CUTOFF_EXPONENT)
    zero = torch.zeros((), dtype=hx.dtype, device=hx.device)
    hx, hy, gz = torch.where(cut, zero, hx), torch.where(cut, zero, hy), torch.where(cut, zero, gz)
    amp = torch.where(cut, zero, weights * torch.exp(-0.5 * (gz * gz * s2[:, None] + eps2d * (hx * hx + hy * hy))))
    terms = torch.stack([hx, hy, amp, phases], dim=-1)
    return terms * valid[:, None, None].to(terms.dtype)


def footprint_params(conics: torch.Tensor, terms: Optional[torch.Tensor]) -> torch.Tensor:
    """(N, 3 + 4 K) rasterizer footprint parameters: the conic, then each term's (hx, hy, amplitude, phase)."""
    if terms is None:
        return conics
    return torch.cat([conics, terms.reshape(terms.shape[0], -1)], dim=1)


def split_footprint(params: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Inverse of footprint_params: (conics (N, 3), terms (N, K, 4) or None)."""
    if params.shape[-1] == 3:
        return params, None
    return params[..., :3], params[..., 3:].reshape(*params.shape[:-1], -1, 4)


def modulation(terms: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """1 + sum_k a_k cos(phi_k - h_k . d) at offsets d = mean2d - pixel; terms (M, K, 4), dx/dy (P, M) -> (P, M)."""
    hx, hy, amp, ph = (terms[..., i] for i in range(4))
    arg = ph[None] - hx[None] * dx[..., None] - hy[None] * dy[..., None]
    return 1.0 + (amp[None] * torch.cos(arg)).sum(dim=-1)
