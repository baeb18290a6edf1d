"""Dense PyTorch reference rasterizer: the oracle every native backend is tested against.

Every stage is plain differentiable torch (float32 or float64) and follows the conventions in
`constants.py` exactly: EWA projection with a clamped Jacobian, opacity-aware per-axis extents, front-to-back
blending with early termination. Rasterisation is dense (every pixel against every primitive), so use it on
small images and scenes only.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from .gabor import modulation, project_gabor_terms, split_footprint  # noqa: F401  (project_gabor_terms: backend API)
from .constants import (
    ALPHA_THRESHOLD,
    EPS_2D,
    FRUSTUM_MARGIN,
    MAX_ALPHA,
    MAX_EXTENT_SIGMA,
    MIN_DET,
    SH_C0,
    SH_C1,
    SH_C2,
    SH_C3,
    TRANSMITTANCE_EPS,
)


class Projection(NamedTuple):
    """Per-primitive screen-space quantities. Invalid primitives have radii == 0."""

    means2d: torch.Tensor  # (N, 2) pixel coordinates
    conics: torch.Tensor  # (N, 3) upper triangle (a, b, c) of the inverse 2D covariance
    depths: torch.Tensor  # (N,) camera-axis z
    radii: torch.Tensor  # (N, 2) int32 half extents in pixels, 0 when culled
    opacities: torch.Tensor  # (N,) opacity after the optional antialiasing compensation


class Composite(NamedTuple):
    colors: torch.Tensor  # (H, W, C) including background
    alphas: torch.Tensor  # (H, W, 1)
    depths: torch.Tensor  # (H, W, 1) accumulated depth sum(w z); divide by alpha for the expected depth
    final_transmittance: Optional[torch.Tensor] = None  # (H, W, 1), native backends only
    last_ids: Optional[torch.Tensor] = None  # (H, W) int32 index of the last contributor (-1 none), native only


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """(N, 4) quaternions w, x, y, z (normalised here) -> (N, 3, 3) rotation matrices."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def quat_scale_to_covar(quats: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Covariance R S S^T R^T from (N, 4) quaternions and (N, 3) positive scales."""
    rot_scaled = quat_to_rotmat(quats) * scales[..., None, :]
    return rot_scaled @ rot_scaled.transpose(-1, -2)


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
    """EWA-project 3D Gaussians (means (N,3), covariances (N,3,3), opacities (N,)) into the image."""
    rot, trans = viewmat[:3, :3], viewmat[:3, 3]
    means_c = means @ rot.T + trans
    covars_c = rot @ covars @ rot.T
    x, y, z = means_c.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]

    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + FRUSTUM_MARGIN * tan_x
    lim_x_neg = cx / fx + FRUSTUM_MARGIN * tan_x
    lim_y_pos = (height - cy) / fy + FRUSTUM_MARGIN * tan_y
    lim_y_neg = cy / fy + FRUSTUM_MARGIN * tan_y
    in_front = z > near
    z_safe = torch.where(in_front, z, torch.ones_like(z))
    tx = z_safe * torch.minimum(torch.maximum(x / z_safe, -lim_x_neg), lim_x_pos)
    ty = z_safe * torch.minimum(torch.maximum(y / z_safe, -lim_y_neg), lim_y_pos)

    zeros = torch.zeros_like(z)
    jac = torch.stack(
        [fx / z_safe, zeros, -fx * tx / z_safe**2, zeros, fy / z_safe, -fy * ty / z_safe**2], dim=-1
    ).reshape(-1, 2, 3)
    cov2d = jac @ covars_c @ jac.transpose(-1, -2)
    a, b, c = cov2d[:, 0, 0], cov2d[:, 0, 1], cov2d[:, 1, 1]
    det_orig = a * c - b * b
    a, c = a + eps2d, c + eps2d
    det = a * c - b * b
    if antialiased:
        opacities = opacities * torch.sqrt(torch.clamp(det_orig / det.clamp(min=MIN_DET), min=0.0))
    det_ok = det > 0
    det_safe = det.clamp(min=MIN_DET)
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    means2d = torch.stack([fx * x / z_safe + cx, fy * y / z_safe + cy], dim=-1)

    with torch.no_grad():
        o = opacities.detach()
        visible_o = o >= ALPHA_THRESHOLD
        extend = torch.sqrt(2.0 * torch.log(torch.clamp(o / ALPHA_THRESHOLD, min=1.0))).clamp(max=MAX_EXTENT_SIGMA)
        rx = torch.ceil(extend * torch.sqrt(a.detach().clamp(min=0)))
        ry = torch.ceil(extend * torch.sqrt(c.detach().clamp(min=0)))
        mx, my = means2d.detach().unbind(-1)
        on_screen = (mx + rx > 0) & (mx - rx < width) & (my + ry > 0) & (my - ry < height)
        valid = in_front & (z < far) & det_ok & visible_o & (rx > 0) & (ry > 0) & on_screen
        valid &= torch.isfinite(mx) & torch.isfinite(my)
        radii = torch.stack([rx, ry], dim=-1).to(torch.int32) * valid[:, None].to(torch.int32)
    return Projection(means2d, conics, z, radii, opacities)


def eval_sh(degree: int, coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics of `degree` (0..3): coeffs (N, K>=(degree+1)^2, C), dirs (N, 3) -> (N, C).

    Directions are normalised here. Returns the raw SH value (callers add 0.5 and clamp).
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be in 0..3, got {degree}")
    needed = (degree + 1) ** 2
    if coeffs.shape[-2] < needed:
        raise ValueError(f"SH degree {degree} needs {needed} coefficients, got {coeffs.shape[-2]}")
    result = SH_C0 * coeffs[..., 0, :]
    if degree == 0:
        return result
    x, y, z = (t[..., None] for t in torch.nn.functional.normalize(dirs, dim=-1).unbind(-1))
    result = result - SH_C1 * y * coeffs[..., 1, :] + SH_C1 * z * coeffs[..., 2, :] - SH_C1 * x * coeffs[..., 3, :]
    if degree == 1:
        return result
    xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
    result = (
        result
        + SH_C2[0] * xy * coeffs[..., 4, :]
        + SH_C2[1] * yz * coeffs[..., 5, :]
        + SH_C2[2] * (2 * zz - xx - yy) * coeffs[..., 6, :]
        + SH_C2[3] * xz * coeffs[..., 7, :]
        + SH_C2[4] * (xx - yy) * coeffs[..., 8, :]
    )
    if degree == 2:
        return result
    return (
        result
        + SH_C3[0] * y * (3 * xx - yy) * coeffs[..., 9, :]
        + SH_C3[1] * xy * z * coeffs[..., 10, :]
        + SH_C3[2] * y * (4 * zz - xx - yy) * coeffs[..., 11, :]
        + SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy) * coeffs[..., 12, :]
        + SH_C3[4] * x * (4 * zz - xx - yy) * coeffs[..., 13, :]
        + SH_C3[5] * z * (xx - yy) * coeffs[..., 14, :]
        + SH_C3[6] * x * (xx - 3 * yy) * coeffs[..., 15, :]
    )


def sh_colors_with(eval_sh_fn, degree: int, coeffs: torch.Tensor, means: torch.Tensor,
                   viewmat: torch.Tensor) -> torch.Tensor:
    """The pipeline's colours max(SH(means - camera centre) + 0.5, 0) from a backend's raw `eval_sh`; no gradient
    to `means`. viewmat (4, 4) OpenCV world-to-camera, any device."""
    viewmat = viewmat.to(dtype=means.dtype)
    cam_center = (-viewmat[:3, :3].T @ viewmat[:3, 3]).to(means.device)
    return torch.clamp_min(eval_sh_fn(degree, coeffs, means.detach() - cam_center) + 0.5, 0.0)


def sh_colors(degree: int, coeffs: torch.Tensor, means: torch.Tensor, viewmat: torch.Tensor) -> torch.Tensor:
    """Colours from SH coefficients (N, K, C) for the camera `viewmat`: max(SH + 0.5, 0) (see sh_colors_with)."""
    return sh_colors_with(eval_sh, degree, coeffs, means, viewmat)


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
    max_elements: int = 1 << 22,
    absgrad: bool = True,
) -> Composite:
    """Blend projected primitives front to back at every pixel centre (dense: pixels x primitives).
    (`absgrad` is for the native backends' interface: autograd here has no per-pixel absolute gradient.)

    `conics` may be Gabor footprint parameters (N, 3 + 4 K) (gabor.footprint_params): the envelope's conic, then per
    term (hx, hy, amplitude, phase); alpha is then opacity x exp(-sigma) x the modulation, clipped to the radii box.
    """
    channels = colors.shape[-1]
    conics, terms = split_footprint(conics)
    valid = (radii > 0).all(dim=-1)
    idx = torch.nonzero(valid).squeeze(-1)
    # Stable sort on depth: ties keep primitive-id order, as the tiled backends do.
    idx = idx[torch.sort(depths.detach()[idx], stable=True).indices]
    m2d, con, col, opa, dep = means2d[idx], conics[idx], colors[idx], opacities[idx], depths[idx]
    rad = radii[idx].to(means2d.dtype)
    ter = None if terms is None else terms[idx]

    dtype, device = means2d.dtype, means2d.device
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device), torch.arange(width, dtype=dtype, device=device), indexing="ij"
    )
    pixels = torch.stack([xs, ys], dim=-1).reshape(-1, 2) + 0.5
    n = max(1, idx.numel())
    chunk = max(1, max_elements // n)
    out_c, out_a, out_d = [], [], []
    for start in range(0, pixels.shape[0], chunk):
        pix = pixels[start : start + chunk]
        if idx.numel() == 0:
            out_c.append(torch.zeros(pix.shape[0], channels, dtype=dtype, device=device))
            out_a.append(torch.zeros(pix.shape[0], 1, dtype=dtype, device=device))
            out_d.append(torch.zeros(pix.shape[0], 1, dtype=dtype, device=device))
            continue
        d = m2d[None, :, :] - pix[:, None, :]
        dx, dy = d[..., 0], d[..., 1]
        sigma = 0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) + con[:, 1] * dx * dy
        factor = torch.exp(-sigma.clamp(min=0))
        if ter is not None:  # Gabor: the wave terms modulate the envelope (clamped at 0 as the kernels do)
            factor = (factor * modulation(ter, dx, dy)).clamp(min=0)
        alpha = torch.clamp(opa * factor, max=MAX_ALPHA)
        # the native kernels clip each primitive to its radii box (outside it a Gaussian's alpha is below the cut
        # anyway; a Gabor's modulation can lift it, within MAX_EXTENT_SIGMA)
        inside = (dx.abs() <= rad[:, 0]) & (dy.abs() <= rad[:, 1])
        alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD) & inside, alpha, torch.zeros_like(alpha))
        with torch.no_grad():
            # A prefix mask: blending stops at the first primitive that would push T to <= eps (excluded).
            contributes = torch.cumprod(1 - alpha.detach(), dim=1) > TRANSMITTANCE_EPS
        alpha = alpha * contributes
        one_minus = 1 - alpha
        trans = torch.cumprod(torch.cat([torch.ones_like(one_minus[:, :1]), one_minus[:, :-1]], dim=1), dim=1)
        weights = alpha * trans
        out_c.append(weights @ col)
        out_a.append(weights.sum(dim=1, keepdim=True))
        out_d.append(weights @ dep[:, None])
    colors_out = torch.cat(out_c).reshape(height, width, channels)
    alphas_out = torch.cat(out_a).reshape(height, width, 1)
    depth_out = torch.cat(out_d).reshape(height, width, 1)
    if background is not None:
        colors_out = colors_out + (1 - alphas_out) * background.reshape(1, 1, channels)
    return Composite(colors_out, alphas_out, depth_out)
