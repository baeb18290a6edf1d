"""Coarse-to-fine training resolution: early steps fit low-frequency structure on cheap, downsampled views."""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from render import Camera

from .data._io import resize_depth


def check_schedule(schedule: Sequence[int]) -> Tuple[int, ...]:
    """Validate the steps at which the resolution doubles (strictly increasing, positive)."""
    steps = tuple(int(s) for s in schedule)
    if any(s <= 0 for s in steps) or any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"coarse_to_fine must be strictly increasing positive steps, got {list(steps)}")
    return steps


def resolution_factor(step: int, schedule: Sequence[int]) -> int:
    """Downsampling factor at `step`: 2 ** (number of schedule steps not yet reached); 1 once all are passed.

    With schedule (500, 1500): factor 4 before step 500, 2 before step 1500, then full resolution.
    """
    return 2 ** sum(1 for s in schedule if step < s)


def downsample_view(
    camera: Camera, image: torch.Tensor, mask: Optional[torch.Tensor], factor: int
) -> Tuple[Camera, torch.Tensor, Optional[torch.Tensor]]:
    """Camera, (H, W, 3) target and (H, W, 1) mask at 1/factor resolution.

    The image is cropped at the right/bottom to a multiple of `factor` (which leaves the principal point where it
    is) and box-filtered, so each low-resolution pixel is the mean of the pixels it covers; intrinsics are divided
    by `factor`. A low-resolution pixel is masked in only when every pixel it covers is.
    """
    if factor == 1:
        return camera, image, mask
    width, height = camera.width // factor, camera.height // factor
    if width < 1 or height < 1:
        raise ValueError(f"coarse-to-fine factor {factor} leaves no pixels of a {camera.width}x{camera.height} view")
    crop = image[: height * factor, : width * factor]
    small = F.avg_pool2d(crop.permute(2, 0, 1)[None], factor)[0].permute(1, 2, 0).contiguous()
    small_mask = None
    if mask is not None:
        outside = (~mask[: height * factor, : width * factor]).float().permute(2, 0, 1)[None]
        small_mask = (F.max_pool2d(outside, factor)[0].permute(1, 2, 0) == 0).contiguous()
    small_camera = replace(
        camera,
        width=width,
        height=height,
        fx=camera.fx / factor,
        fy=camera.fy / factor,
        cx=camera.cx / factor,
        cy=camera.cy / factor,
    )
    return small_camera, small, small_mask


def downsample_depth(depth: torch.Tensor, factor: int) -> torch.Tensor:
    """(H, W, 1) depth at 1/factor resolution over the crop `downsample_view` uses: the mean of the covered pixels
    that have a measurement (> 0), as the readers downscale depth (`trainers.data._io.resize_depth`)."""
    if factor == 1:
        return depth
    height, width = depth.shape[0] // factor, depth.shape[1] // factor
    crop = depth[: height * factor, : width * factor].detach().cpu().numpy()
    return torch.from_numpy(resize_depth(crop, (width, height))).to(depth.device)
