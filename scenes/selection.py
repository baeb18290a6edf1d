"""Selection builders for splat editing: boolean masks over a GaussianScene's splats.

By screen rectangle or click (projected centres, optionally only the front-most against a rendered depth buffer),
by opacity, scale, colour or an oriented box, and `combine` to merge a new mask into the current selection.
They only read the scene; `scenes.editing.SplatEditor` applies the masks. Kept apart from the editor so the
mask maths can be used and tested without edit state.

Pure torch: no viewer, render or trainer imports. Cameras are duck-typed (`world_to_camera`, fx, fy, cx, cy,
width, height, near), depth buffers are (H, W[, 1]) expected camera-axis z as `render()` returns them.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .gaussian_scene import GaussianScene, sh_dc_to_rgb

MODES = ("replace", "add", "subtract")
Rect = Tuple[float, float, float, float]


# ----- selection helpers -------------------------------------------------------------------------------------
def combine(current: Optional[torch.Tensor], new: torch.Tensor, mode: str = "replace") -> torch.Tensor:
    """Combine a new selection mask with the current one: replace, add (union) or subtract."""
    new = new.to(torch.bool)
    if mode == "replace" or current is None:
        return new.clone()
    if mode == "add":
        return current | new
    if mode == "subtract":
        return current & ~new
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def project_points(means: torch.Tensor, camera) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (N, 2) (pixel (0, 0) covers [0, 1)^2) and camera-axis depth z (N,) of world points."""
    pts = means.detach().double().cpu()
    w2c = torch.as_tensor(camera.world_to_camera).double()
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    safe = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
    u = camera.fx * cam[:, 0] / safe + camera.cx
    v = camera.fy * cam[:, 1] / safe + camera.cy
    return torch.stack([u, v], dim=1), z


def _sample(buffer: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Nearest-pixel lookup of an (H, W[, 1]) buffer at pixel coordinates (N, 2) (clamped to the image)."""
    buf = torch.as_tensor(buffer).detach().double().cpu()
    if buf.ndim == 3:
        buf = buf[..., 0]
    h, w = buf.shape
    px = uv[:, 0].floor().long().clamp(0, w - 1)
    py = uv[:, 1].floor().long().clamp(0, h - 1)
    return buf[py, px]


def depth_visible(
    uv: torch.Tensor,
    z: torch.Tensor,
    depth: torch.Tensor,
    alpha: Optional[torch.Tensor] = None,
    rel_tol: float = 0.05,
    abs_tol: float = 0.02,
    extent: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """True where a point's depth is within tolerance of (or in front of) the rendered depth at its pixel.

    `extent` (N,) widens the tolerance per point (a splat's surface lies in front of its centre: use ~2 sigma
    of its largest axis). Pixels with no coverage (depth 0, or alpha < 0.5 when given) hide nothing.
    """
    d = _sample(depth, uv)
    empty = d <= 0
    if alpha is not None:
        empty |= _sample(alpha, uv) < 0.5
    near = z if extent is None else z - extent.detach().double().cpu()
    return empty | (near <= d + torch.clamp(d * rel_tol, min=abs_tol))


def select_rect(
    scene: GaussianScene,
    camera,
    rect: Rect,
    depth: Optional[torch.Tensor] = None,
    alpha: Optional[torch.Tensor] = None,
    rel_tol: float = 0.05,
    abs_tol: float = 0.02,
    candidates: Optional[torch.Tensor] = None,
    extent_sigmas: float = 2.0,
) -> torch.Tensor:
    """Splats whose centre projects inside the pixel rect (x0, y0, x1, y1), in front of the camera.

    With `depth` (the rendered depth buffer for `camera`) only front-most splats are kept ("visible only"):
    a splat counts as visible when its centre minus `extent_sigmas` of its largest scale is within tolerance of
    the rendered depth at its centre pixel.
    `candidates` (e.g. the not-hidden mask) restricts the result.
    """
    x0, y0, x1, y1 = rect
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    uv, z = project_points(scene.means, camera)
    mask = (z > camera.near) & (uv[:, 0] >= x0) & (uv[:, 0] <= x1) & (uv[:, 1] >= y0) & (uv[:, 1] <= y1)
    if depth is not None:
        extent = extent_sigmas * scene.scales.detach().max(dim=1).values
        mask &= depth_visible(uv, z, depth, alpha, rel_tol, abs_tol, extent)
    if candidates is not None:
        mask &= candidates.cpu()
    return mask.to(scene.means.device)


def pick(
    scene: GaussianScene,
    camera,
    x: float,
    y: float,
    depth: Optional[torch.Tensor] = None,
    radius_px: float = 10.0,
    candidates: Optional[torch.Tensor] = None,
) -> int:
    """Index of the splat clicked at pixel (x, y), or -1.

    Candidates are splats whose centre projects within `radius_px`; among them the one whose depth is closest
    to the rendered depth at the click (nearest to the camera without a depth buffer), ties by pixel distance.
    """
    uv, z = project_points(scene.means, camera)
    dist = torch.hypot(uv[:, 0] - x, uv[:, 1] - y)
    ok = (z > camera.near) & (dist <= radius_px)
    if candidates is not None:
        ok &= candidates.cpu()
    if not ok.any():
        return -1
    idx = torch.nonzero(ok)[:, 0]
    if depth is not None:
        d = float(_sample(depth, torch.tensor([[x, y]], dtype=torch.float64))[0])
        key = (z[idx] - d).abs() if d > 0 else z[idx]
    else:
        key = z[idx]
    # depth first (quantised to 1e-3 of the range), then pixel distance
    scale = max(float(key.max() - key.min()), 1e-9) * 1e-3
    order = torch.argsort((key / scale).round() * 1e6 + dist[idx])
    return int(idx[order[0]])


def select_opacity(scene: GaussianScene, lo: float, hi: float) -> torch.Tensor:
    """Splats with opacity in [lo, hi]."""
    o = scene.opacities.detach()
    return (o >= lo) & (o <= hi)


def max_scales(scene: GaussianScene) -> torch.Tensor:
    return scene.scales.detach().max(dim=1).values


def select_scale(scene: GaussianScene, lo: float, hi: float) -> torch.Tensor:
    """Splats whose largest axis scale lies in [lo, hi]."""
    s = max_scales(scene)
    return (s >= lo) & (s <= hi)


def dc_rgb(scene: GaussianScene) -> torch.Tensor:
    """Base (view-independent) colour of every splat, (N, 3), clamped to [0, 1]."""
    return sh_dc_to_rgb(scene.params["sh_dc"].detach()[:, 0]).clamp(0, 1)


def select_color(scene: GaussianScene, rgb: Sequence[float], threshold: float) -> torch.Tensor:
    """Splats whose DC colour is within Euclidean distance `threshold` of `rgb` (components in [0, 1])."""
    ref = torch.as_tensor(rgb, dtype=torch.float32, device=scene.means.device)
    return (dc_rgb(scene) - ref).norm(dim=1) <= threshold


def select_box(
    scene: GaussianScene,
    box_to_world: Union[torch.Tensor, np.ndarray],
    half_extents: Sequence[float],
    inside: bool = True,
) -> torch.Tensor:
    """Splats whose centre is inside (or outside) an oriented box: `box_to_world` rigid 4x4, half sizes in its axes."""
    m = torch.as_tensor(np.asarray(box_to_world), dtype=torch.float64)
    inv = torch.linalg.inv(m)
    local = scene.means.detach().double().cpu() @ inv[:3, :3].T + inv[:3, 3]
    half = torch.as_tensor(half_extents, dtype=torch.float64)
    mask = (local.abs() <= half).all(dim=1)
    return (mask if inside else ~mask).to(scene.means.device)
