"""Initial Gaussians for a dataset: from its seed points when present, else random points in the camera bounds."""

from __future__ import annotations

import numpy as np

from render.paths import focus_point
from scenes import GaussianScene

from .data.dataset import SceneData


def initial_scene(
    data: SceneData, sh_degree: int, init_opacity: float, random_points: int, max_points: int, seed: int, random_extent: float = 0.33
) -> GaussianScene:
    """Seed points when the dataset has them; else `random_points` uniform in a cube around the cameras' focus
    point with half-size `random_extent` x their mean distance to it (Inria's +-1.3 cube for NeRF-synthetic)."""
    rng = np.random.default_rng(seed)
    if data.points is not None and len(data.points) > 0:
        points = np.asarray(data.points, dtype=np.float64)
        colors = data.point_colors if data.point_colors is not None else np.full((len(points), 3), 0.5)
        if len(points) > max_points:
            keep = rng.choice(len(points), max_points, replace=False)
            points, colors = points[keep], np.asarray(colors)[keep]
        return GaussianScene.from_points(points, colors, sh_degree=sh_degree, initial_opacity=init_opacity)
    cameras = [v.camera for v in data.train_views]
    center = focus_point(cameras) if len(cameras) > 1 else data.camera_centers()[0]
    half = max(random_extent * float(np.linalg.norm(data.camera_centers() - center, axis=1).mean()), 1e-3)
    points = center + rng.uniform(-1.0, 1.0, size=(random_points, 3)) * half
    colors = rng.uniform(0.0, 1.0, size=(random_points, 3))
    return GaussianScene.from_points(points, colors, sh_degree=sh_degree, initial_opacity=init_opacity)
