"""Where a dynamic scene's error is: moving vs still pixels of a fixed-camera split (D-NeRF's val)."""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import torch

from render import render

from .data.dataset import View


def fixed_camera(views: Sequence[View], tolerance: float = 1e-6) -> bool:
    """Whether all views share one camera (pose, intrinsics and size) and at least two distinct times."""
    if len(views) < 2:
        return False
    first = views[0].camera
    times = {v.camera.time for v in views}
    if None in times or len(times) < 2:
        return False
    for view in views[1:]:
        cam = view.camera
        if (cam.width, cam.height) != (first.width, first.height):
            return False
        if not torch.allclose(cam.world_to_camera, first.world_to_camera, atol=tolerance):
            return False
        intrinsics = ((cam.fx, first.fx), (cam.fy, first.fy), (cam.cx, first.cx), (cam.cy, first.cy))
        if any(abs(float(a) - float(b)) > tolerance for a, b in intrinsics):
            return False
    return True


@torch.no_grad()
def motion_error_split(scene, views: Sequence[View], background, threshold: float = 0.02,
                       backend: str = "auto") -> Optional[Dict[str, float]]:
    """For views of one fixed camera over time: the pixels whose ground truth changes by more than `threshold` (any
    channel, against the first view) are 'moving', the rest 'still'. Returns the moving fraction, the moving pixels'
    share of the squared error, and the PSNR the split would reach with either region rendered perfectly; None
    when the views are not of one fixed camera."""
    if not fixed_camera(views):
        return None
    targets = torch.stack([v.image for v in views])
    moving = (targets - targets[:1]).abs().amax(dim=(0, 3)) > threshold
    bg = torch.as_tensor(background, dtype=torch.float32)
    se_moving = se_still = 0.0
    for view in views:
        out = render(scene, view.camera, background=bg.to(view.image.device), backend=backend)
        se = ((out.rgb.clamp(0, 1).to(view.image.device) - view.image) ** 2).mean(-1)  # as evaluate() scores it
        se_moving += float(se[moving].sum())
        se_still += float(se[~moving].sum())
    count = len(views) * moving.numel()

    def as_psnr(se: float) -> float:
        return -10.0 * math.log10(max(se / count, 1e-20))

    total = se_moving + se_still
    return {
        "moving_fraction": float(moving.float().mean()),
        "moving_error_share": se_moving / total if total > 0 else 0.0,
        "psnr_if_moving_perfect": as_psnr(se_still),
        "psnr_if_still_perfect": as_psnr(se_moving),
    }
