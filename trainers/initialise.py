"""Initial Gaussians for a dataset: from its seed points when present, else random points in the camera bounds."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch

from render.paths import focus_point
from scenes import GaborScene, Gaussian4DScene, GaussianScene, SplatScene

from .data.dataset import SceneData


def resolve_model(model: str, data: SceneData) -> Tuple[str, str]:
    """(scene kind, why): 'auto' picks gaussian4d when the training views carry times."""
    time_range = data.time_range
    if model == "auto":
        if time_range is not None:
            return "gaussian4d", f"auto: the training views carry times in [{time_range[0]:g}, {time_range[1]:g}]"
        return "gaussian", "auto: the training views carry no times"
    if model == "gaussian4d" and time_range is None:
        raise ValueError(f"{data.source}: --model gaussian4d needs training views with times (e.g. D-NeRF 'time')")
    if model not in ("gaussian", "gaussian4d", "gabor", "nerf"):
        raise ValueError(f"model must be auto, gaussian, gaussian4d, gabor or nerf, got {model!r}")
    return model, "asked for"


def _distinct_times(data: SceneData) -> np.ndarray:
    return np.unique([v.camera.time for v in data.train_views if v.camera.time is not None])


def views_per_time(data: SceneData) -> float:
    """Training views per distinct time: 1 for a monocular capture (D-NeRF), the camera count for multi-view
    video, 0 without times."""
    count = sum(1 for v in data.train_views if v.camera.time is not None)
    distinct = len(_distinct_times(data))
    return count / distinct if distinct else 0.0


def temporal_filter(data: SceneData, frames: Optional[float] = None) -> Tuple[float, str]:
    """(time_filter, why): the 4D scene's minimum temporal extent (scenes.Gaussian4DScene.time_filter), `frames`
    times the median spacing of the training views' distinct times.

    Default (None): 2 spacings when each time is seen by a single view, as in monocular captures (D-NeRF), where a
    primitive living for one frame is constrained by one photograph and learns it by heart instead of the scene;
    0.5 when several cameras see each time (multi-view video), where one frame already pins a primitive down."""
    distinct = _distinct_times(data)
    if len(distinct) < 2:
        return 0.0, "a single training time"
    per_time = views_per_time(data)
    if frames is None:
        frames = 2.0 if per_time < 1.5 else 0.5
        why = f"{per_time:.1f} views per time: {frames:g} frame spacings"
    else:
        why = f"{frames:g} frame spacings, asked for"
    if not (np.isfinite(frames) and frames >= 0):
        raise ValueError(f"--time-filter-frames must be a finite value >= 0, got {frames}")
    spacing = float(np.median(np.diff(distinct)))
    return float(frames) * spacing, why


def initial_scene(
    data: SceneData, sh_degree: int, init_opacity: float, random_points: int, max_points: int, seed: int,
    random_extent: float = 0.33, model: str = "gaussian", time_scale: float = 0.25, num_terms: int = 4,
    time_filter: Optional[float] = None, static_fraction: float = 0.0,
) -> SplatScene:
    """Seed points when the dataset has them; else `random_points` uniform in a cube around the cameras' focus
    point with half-size `random_extent` x their mean distance to it (Inria's +-1.3 cube for NeRF-synthetic).

    model 'gaussian4d': the same points at the seed points' own times when the dataset has them, else each at a
    time drawn uniformly over the training time range; temporal scale `time_scale` x the time span; temporal filter
    `time_filter` (None: `temporal_filter(data)`, chosen by the capture); a random `static_fraction` of the rows
    start static (Gaussian4DScene.make_static). model 'gabor': the same Gaussians with `num_terms` Gabor terms each, all off (exact Gaussians until
    training switches terms on)."""
    points, colors, times = initial_points(data, random_points, max_points, seed, random_extent)
    if model == "gaussian4d":
        t0, t1 = data.time_range or (0.0, 1.0)
        if times is None:
            times = np.random.default_rng(seed + 1).uniform(t0, t1, size=len(points))
        scene = Gaussian4DScene.from_points(points, times, colors, sh_degree=sh_degree, initial_opacity=init_opacity,
                                            time_range=(t0, t1), time_scale=time_scale * max(t1 - t0, 1e-6))
        scene.time_filter = temporal_filter(data)[0] if time_filter is None else float(time_filter)
        if static_fraction > 0:
            pick = torch.rand(len(scene), generator=torch.Generator().manual_seed(seed + 11)) < static_fraction
            scene.make_static(pick)
        return scene
    if model == "gabor":
        scene = GaborScene.from_points(points, colors, sh_degree=sh_degree, initial_opacity=init_opacity,
                                       num_terms=num_terms)
    else:
        scene = GaussianScene.from_points(points, colors, sh_degree=sh_degree, initial_opacity=init_opacity)
    normals = data.point_normals
    if normals is not None and data.points is not None and len(normals) == len(data.points) == len(points):
        flatten_along_normals(scene, np.asarray(normals))
    return scene


def flatten_along_normals(scene: SplatScene, normals: np.ndarray, thickness: float = 0.1) -> None:
    """Turn each Gaussian so its third axis is its point's normal and shrink that axis to `thickness` x its size
    (surfels on LiDAR surfaces)."""
    import torch

    n = normals / np.clip(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12, None)
    helper = np.where(np.abs(n[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    t1 = np.cross(n, helper)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(n, t1)
    rot = np.stack([t1, t2, n], axis=2)  # columns: the Gaussian's axes in the world
    with torch.no_grad():
        scene.params["quats"].copy_(torch.from_numpy(_matrices_to_wxyz(rot)).float())
        scene.params["log_scales"][:, 2] += float(np.log(thickness))


def _matrices_to_wxyz(rot: np.ndarray) -> np.ndarray:
    """(N, 3, 3) proper rotations -> (N, 4) unit quaternions (w, x, y, z)."""
    w = np.sqrt(np.clip(1.0 + rot[:, 0, 0] + rot[:, 1, 1] + rot[:, 2, 2], 0, None)) / 2
    x = np.sqrt(np.clip(1.0 + rot[:, 0, 0] - rot[:, 1, 1] - rot[:, 2, 2], 0, None)) / 2
    y = np.sqrt(np.clip(1.0 - rot[:, 0, 0] + rot[:, 1, 1] - rot[:, 2, 2], 0, None)) / 2
    z = np.sqrt(np.clip(1.0 - rot[:, 0, 0] - rot[:, 1, 1] + rot[:, 2, 2], 0, None)) / 2
    x = np.copysign(x, rot[:, 2, 1] - rot[:, 1, 2])
    y = np.copysign(y, rot[:, 0, 2] - rot[:, 2, 0])
    z = np.copysign(z, rot[:, 1, 0] - rot[:, 0, 1])
    q = np.stack([w, x, y, z], axis=1)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def initial_points(
    data: SceneData, random_points: int, max_points: int, seed: int, random_extent: float
) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
    """(points, colours, times or None)."""
    rng = np.random.default_rng(seed)
    if data.points is not None and len(data.points) > 0:
        points = np.asarray(data.points, dtype=np.float64)
        colors = data.point_colors if data.point_colors is not None else np.full((len(points), 3), 0.5)
        times = data.point_times
        if len(points) > max_points:
            keep = rng.choice(len(points), max_points, replace=False)
            points, colors = points[keep], np.asarray(colors)[keep]
            times = None if times is None else np.asarray(times)[keep]
        return points, np.asarray(colors), times
    cameras = [v.camera for v in data.train_views]
    center = focus_point(cameras) if len(cameras) > 1 else data.camera_centers()[0]
    half = max(random_extent * float(np.linalg.norm(data.camera_centers() - center, axis=1).mean()), 1e-3)
    points = center + rng.uniform(-1.0, 1.0, size=(random_points, 3)) * half
    colors = rng.uniform(0.0, 1.0, size=(random_points, 3))
    return points, colors, None
