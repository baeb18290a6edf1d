"""Driving-log training terms: dense mesh depth + sparse LiDAR depth losses, sky model, per-image exposure.

Active only when the dataset is a driving log (SceneData.driving). The Trainer calls, per training view:
`compose` (sky behind the splats, then exposure) on the rendered image before the photometric loss, and `loss`
for the depth and sky-opacity terms; `step` after backward. `eval_compose` is what evaluation applies (sky, no
exposure: held-out frames have none fitted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from scenes.sky import AffineExposure, SkyEnvMap

from .data.dataset import SceneData, View
from .resolution import downsample_depth

SKY_FILE = "sky.pt"


@dataclass
class DrivingConfig:
    """Driving logs (KITTI raw / canonical layout) only; ignored for other data."""

    use_lidar: bool = True
    """False: the camera-only baseline on the same views: random initial points in the training frusta (no
    LiDAR), no depth losses."""
    lidar_depth_weight: float = 0.5
    """Weight of the relative L1 (|d - d*| / d*) to the frame's own z-buffered LiDAR returns."""
    mesh_depth_weight: float = 0.2
    """Weight of the relative L1 to the dense depth ray-cast from the LiDAR mesh."""
    max_depth: float = 80.0
    """Depth targets beyond this (metres) are ignored."""
    sky: bool = True
    """Draw a learned sky environment map behind the splats."""
    sky_opacity_weight: float = 0.0
    """Push the splats' alpha to 0 on the sky masks (no LiDAR surface above the horizon). Off by default: the
    HDL-64E sees nothing above +2 degrees, so tall buildings and bridges fall in the mask too."""
    exposure: bool = True
    """Fit a per-image affine colour correction (identity for held-out frames)."""
    lr_sky: float = 1e-2
    lr_exposure: float = 1e-3
    flat_init: bool = True
    """Initial Gaussians on LiDAR points flattened along the surface normal (thickness 0.1 x their size)."""


def frustum_points(data: SceneData, count: int, max_depth: float, seed: int = 0):
    """`count` points through random pixels of random training views at depths uniform in inverse depth between
    2 m and `max_depth`, coloured by their pixel (the camera-only initialisation: no LiDAR used)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    views = data.train_views
    which = rng.integers(len(views), size=count)
    inv = rng.uniform(1.0 / max_depth, 1.0 / 2.0, size=count)
    points, colors = np.zeros((count, 3)), np.zeros((count, 3))
    for k, view in enumerate(views):
        sel = np.flatnonzero(which == k)
        cam = view.camera
        u, v = rng.uniform(0, cam.width, len(sel)), rng.uniform(0, cam.height, len(sel))
        z = 1.0 / inv[sel]
        local = np.stack([(u - cam.cx) / cam.fx * z, (v - cam.cy) / cam.fy * z, z], 1)
        c2w = cam.camera_to_world.double().numpy()
        points[sel] = local @ c2w[:3, :3].T + c2w[:3, 3]
        colors[sel] = view.image.numpy()[v.astype(int), u.astype(int)]
    return points, colors


def relative_depth_l1(rendered: torch.Tensor, target: torch.Tensor, max_depth: float) -> torch.Tensor:
    """Mean |d - d*| / d* over pixels with 0 < d* <= max_depth (0 when there are none)."""
    target = target.to(rendered.device)
    valid = (target > 0) & (target <= max_depth)
    safe = torch.where(valid, target, torch.ones_like(target))
    err = torch.where(valid, (rendered - target).abs() / safe, torch.zeros_like(rendered))
    return err.sum() / valid.sum().clamp(min=1)


class DrivingTerms:
    """Per-run state of the driving terms (sky, exposure, cached depth targets)."""

    def __init__(self, config: DrivingConfig, data: SceneData, device: torch.device):
        self.config = config
        self.device = device
        self.sky = SkyEnvMap(data.driving.up).to(device) if config.sky else None
        self.exposure = AffineExposure(len(data.train_views)).to(device) if config.exposure else None
        params = []
        if self.sky is not None:
            params.append({"params": list(self.sky.parameters()), "lr": config.lr_sky})
        if self.exposure is not None:
            params.append({"params": list(self.exposure.parameters()), "lr": config.lr_exposure})
        self.optimizer = torch.optim.Adam(params, eps=1e-15) if params else None
        self.views = data.train_views
        self._targets: Dict[Tuple[str, int, int], Optional[torch.Tensor]] = {}

    @staticmethod
    def create(config: DrivingConfig, data: SceneData, device: torch.device) -> Optional["DrivingTerms"]:
        return DrivingTerms(config, data, device) if data.driving is not None else None

    @staticmethod
    def prepare_data(config: DrivingConfig, data: SceneData, seed: int = 0) -> SceneData:
        """Camera-only runs replace the LiDAR seed points by random points in the training cameras' frusta."""
        if data.driving is None:
            return data
        if not config.use_lidar:
            data.points, data.point_colors = frustum_points(data, 100_000, config.max_depth, seed)
            data.point_normals = None
            data.notes.append("camera-only: LiDAR seed points and depth losses off (--driving.no-use-lidar); "
                              f"{len(data.points)} random seed points in the training frusta (2-{config.max_depth:g} m)")
        elif not config.flat_init:
            data.point_normals = None
        return data

    def _target(self, kind: str, index: int, factor: int) -> Optional[torch.Tensor]:
        key = (kind, index, factor)
        if key not in self._targets:
            depth = getattr(self.views[index], kind)
            self._targets[key] = None if depth is None else downsample_depth(depth, factor).to(self.device)
        return self._targets[key]

    def compose(self, image: torch.Tensor, out, camera, index: Optional[int], background: torch.Tensor) -> torch.Tensor:
        if self.sky is not None:
            image = self.sky.behind(image, out.alpha, background, camera)
        if self.exposure is not None and index is not None:
            image = self.exposure(image, index)
        return image

    def eval_compose(self, out, camera, background) -> torch.Tensor:
        background = torch.as_tensor(background, dtype=torch.float32, device=out.rgb.device)
        return self.compose(out.rgb, out, camera, None, background)

    def loss(self, out, index: int, factor: int) -> torch.Tensor:
        cfg = self.config
        total = out.depth.new_zeros(())
        if not cfg.use_lidar:
            return total
        if cfg.lidar_depth_weight > 0:
            target = self._target("lidar_depth", index, factor)
            if target is not None:
                total = total + cfg.lidar_depth_weight * relative_depth_l1(out.depth, target, cfg.max_depth)
        if cfg.mesh_depth_weight > 0:
            target = self._target("depth", index, factor)
            if target is not None:
                total = total + cfg.mesh_depth_weight * relative_depth_l1(out.depth, target, cfg.max_depth)
        if cfg.sky_opacity_weight > 0:
            mask = self.views[index].sky_mask
            if mask is not None:
                if factor > 1:
                    mask = downsample_depth(mask.float(), factor) > 0.5
                mask = mask.to(self.device)
                total = total + cfg.sky_opacity_weight * (out.alpha * mask).sum() / mask.sum().clamp(min=1)
        return total

    def step(self) -> None:
        if self.optimizer is not None:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)

    def save(self, run_dir: Path) -> None:
        if self.sky is not None:
            self.sky.save(Path(run_dir) / SKY_FILE)


def load_sky_beside(scene_path: Path) -> Optional[SkyEnvMap]:
    """The sky.pt a driving run wrote beside its scene file, if any (sf-eval / sf-render composite it)."""
    path = Path(scene_path).parent / SKY_FILE
    return SkyEnvMap.load(path) if path.is_file() else None


def sky_compose_beside(scene_path: Path):
    """evaluate()'s `compose` drawing the sky saved beside `scene_path` behind the splats, or None without one."""
    sky = load_sky_beside(scene_path)
    if sky is None:
        return None

    def compose(out, camera, background) -> torch.Tensor:
        sky.to(out.rgb.device)
        bg = torch.as_tensor(background, dtype=torch.float32, device=out.rgb.device)
        with torch.no_grad():
            return sky.behind(out.rgb, out.alpha, bg, camera)

    return compose
