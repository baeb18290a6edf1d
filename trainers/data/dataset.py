"""The dataset interface every reader returns: posed views split into train and test, plus optional seed points."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from render import Camera


@dataclass
class View:
    """One posed image. `image` is (H, W, 3) float32 in [0, 1], already composited on the dataset background."""

    camera: Camera
    image: torch.Tensor
    name: str
    mask: Optional[torch.Tensor] = None  # (H, W, 1) bool, True where the pixel counts in the loss
    alpha: Optional[torch.Tensor] = None  # (H, W, 1) float coverage for RGBA sources (enables random backgrounds)
    # (H, W, 1) float32 measured camera-axis z depth in scene units (the units of the camera poses); 0 where there
    # is no measurement. Compare with render(...).depth, e.g. via trainers.losses.depth_l1.
    depth: Optional[torch.Tensor] = None
    # Driving logs only: (H, W, 1) float32 sparse LiDAR z depth (z-buffered returns of this frame's scan, 0 where
    # none) and (H, W, 1) bool sky mask (no LiDAR-supported surface, ray above the horizon).
    lidar_depth: Optional[torch.Tensor] = None
    sky_mask: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        h, w = self.camera.height, self.camera.width
        if tuple(self.image.shape) != (h, w, 3):
            raise ValueError(f"view {self.name!r}: image shape {tuple(self.image.shape)} != camera size ({h}, {w}, 3)")
        if self.alpha is not None and tuple(self.alpha.shape) != (h, w, 1):
            raise ValueError(f"view {self.name!r}: alpha shape {tuple(self.alpha.shape)} != ({h}, {w}, 1)")
        if self.depth is not None and tuple(self.depth.shape) != (h, w, 1):
            raise ValueError(f"view {self.name!r}: depth shape {tuple(self.depth.shape)} != ({h}, {w}, 1)")
        for name in ("lidar_depth", "sky_mask"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != (h, w, 1):
                raise ValueError(f"view {self.name!r}: {name} shape {tuple(value.shape)} != ({h}, {w}, 1)")

    def on_background(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """The image re-composited from background `old` onto `new` (needs alpha; exact for straight alpha)."""
        if self.alpha is None:
            raise ValueError(f"view {self.name!r} has no alpha channel, so its background cannot be replaced")
        return self.image + (1.0 - self.alpha) * (new - old).reshape(1, 1, 3)


@dataclass
class SceneData:
    """What a reader yields: explicit train/test views, seed points (world units) and the background colour."""

    train_views: List[View]
    test_views: List[View]
    source: Path
    points: Optional[np.ndarray] = None  # (M, 3)
    point_colors: Optional[np.ndarray] = None  # (M, 3) in [0, 1]
    background: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    notes: List[str] = field(default_factory=list)  # human-readable facts (split sizes, scaling) for the log
    point_times: Optional[np.ndarray] = None  # (M,) seed point times for dynamic data, when the seed file has them
    extra_splits: Dict[str, List[View]] = field(default_factory=dict)  # e.g. D-NeRF's 'val', loaded on request
    point_normals: Optional[np.ndarray] = None  # (M, 3) unit normals of the seed points (LiDAR): flat Gaussians
    driving: Optional[Any] = None  # trainers.data.driving.DrivingInfo for driving logs (trajectory, up axis, LiDAR)

    def __post_init__(self) -> None:
        if not self.train_views:
            raise ValueError(f"{self.source}: dataset has no training views")

    @property
    def time_range(self) -> Optional[Tuple[float, float]]:
        """(min, max) time over the training views when they carry times (dynamic data), else None."""
        times = [v.camera.time for v in self.train_views if v.camera.time is not None]
        return (min(times), max(times)) if times else None

    def camera_centers(self) -> np.ndarray:
        return np.stack([v.camera.center.numpy() for v in self.train_views])

    @property
    def scene_scale(self) -> float:
        """gsplat's scene scale: 1.1 x the largest distance of a training camera from the cameras' mean."""
        centers = self.camera_centers()
        dist = np.linalg.norm(centers - centers.mean(axis=0), axis=1)
        return float(max(dist.max(), 1e-6) * 1.1)
