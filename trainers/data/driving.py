"""Driving logs (KITTI raw or the canonical layout) -> SceneData for the trainer.

Pipeline: read the log -> ego poses (its own, else LiDAR odometry) -> images at 1/downscale -> LiDAR accumulated,
coloured and meshed from the training frames only (lidar_geometry) -> per view: mesh depth (View.depth), z-buffered LiDAR depth
(View.lidar_depth; on training views without the returns that neighbouring scans saw through,
i.e. moving traffic; held-out views keep every return for evaluation) and a sky mask -> seed points on the LiDAR with normals (flat Gaussians).
Split: every `test_every`-th frame (0, 10, 20, ... by position in the log) is held out, and the log says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from render import Camera

from ._io import check_downscale, downscaled_size, load_image, parse_background, resize, to_rgb
from .dataset import SceneData, View
from .driving_layout import is_canonical_log, read_canonical_log
from .driving_log import DrivingLog, transform_points
from .kitti_raw import is_kitti_raw, read_kitti_raw
from .lidar_geometry import LidarGeometry, build_geometry, dynamic_mask, lidar_depth, mesh_depth
from .lidar_odometry import OdometryConfig, with_odometry

SKY_MIN_ELEVATION_DEG = 2.0  # the HDL-64E's top beam: above it, no LiDAR return does not mean no surface


@dataclass
class DrivingInfo:
    """What the trainer, evaluation and viewer need beyond views: the log, its geometry, the up axis."""

    log: DrivingLog
    geometry: Optional[LidarGeometry]
    up: np.ndarray  # world up (ego z at the first frame)
    test_frames: List[int]
    test_every: int = 10

    @property
    def trajectory(self) -> np.ndarray:
        return self.log.trajectory()


def is_driving_log(path: Path) -> bool:
    path = Path(path)
    return path.is_dir() and (is_canonical_log(path) or is_kitti_raw(path))


def read_driving_log(path: Path) -> DrivingLog:
    path = Path(path)
    return read_canonical_log(path) if is_canonical_log(path) else read_kitti_raw(path)


def _load_frame_images(log: DrivingLog, i: int, downscale: int, background) -> Dict[str, np.ndarray]:
    out = {}
    frame = log.frames[i]
    for name, cam in log.cameras.items():
        where = f"{log.source} frame {frame.frame_id} camera {name}"
        img = load_image(frame.images[name], where, "image")
        h, w = img.shape[:2]
        if (w, h) != (cam.width, cam.height):
            raise ValueError(f"{frame.images[name]}: image is {w}x{h} but camera {name} is calibrated for "
                             f"{cam.width}x{cam.height} (frame {frame.frame_id})")
        rgb, _ = to_rgb(img, background)
        out[name] = resize(rgb, downscaled_size(w, h, downscale))
    return out


def _sky_mask(depth: np.ndarray, w2c: np.ndarray, K: np.ndarray, up: np.ndarray) -> np.ndarray:
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    dirs = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1) @ w2c[:3, :3]
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    return (depth <= 0) & (dirs @ up > np.sin(np.radians(SKY_MIN_ELEVATION_DEG)))


def load_driving(
    path: Path,
    downscale: int = 1,
    background: Optional[Sequence[float]] = None,
    *,
    test_every: int = 10,
    odometry: Optional[OdometryConfig] = None,
    voxel: float = 0.1,
    poisson_depth: int = 9,
    remove_dynamic: bool = True,
    max_points: int = 100_000,
    skip_missing_frames: bool = False,
    **_: object,
) -> SceneData:
    """A KITTI raw folder or canonical driving log as SceneData (views in metres, world = first ego frame)."""
    downscale = check_downscale(downscale)
    if test_every < 2:
        raise ValueError(f"test_every must be >= 2, got {test_every}")
    bg = parse_background(background, (0.0, 0.0, 0.0))
    log = with_odometry(read_driving_log(path), odometry)
    images = [_load_frame_images(log, i, downscale, bg) for i in range(len(log.frames))]
    train_frames = [i for i in range(len(log.frames)) if i % test_every != 0]
    if not train_frames:
        raise ValueError(f"{path}: {len(log.frames)} frame(s) leave no training frame with every {test_every}th "
                         f"held out")
    # Geometry from the training frames only: held-out scans and images must not reach the model.
    geometry = build_geometry(log, images, voxel=voxel, poisson_depth=poisson_depth,
                              frames=train_frames, remove_dynamic=remove_dynamic) if log.has_lidar else None
    ray_scene = geometry.raycasting_scene() if geometry is not None else None
    up = log.ego_poses[0][:3, 2].copy()
    train, test, test_ids = [], [], []
    for i, frame in enumerate(log.frames):
        is_test = i % test_every == 0
        scan_ego = transform_points(log.lidar_to_ego, log.scan(i)[:, :3]) if frame.lidar is not None else None
        if scan_ego is not None and not is_test and remove_dynamic:  # training supervision: static returns only
            scan_ego = scan_ego[~dynamic_mask(log, i, transform_points(log.ego_poses[i], scan_ego))]
        for name, cam in log.cameras.items():
            img = images[i][name]
            h, w = img.shape[:2]
            sx, sy = w / cam.width, h / cam.height
            K = np.array([[cam.fx * sx, 0, cam.cx * sx], [0, cam.fy * sy, cam.cy * sy], [0, 0, 1.0]])
            w2c = log.world_to_camera(i, name)
            camera = Camera(torch.from_numpy(w2c).float(), K[0, 0], K[1, 1], K[0, 2], K[1, 2], w, h, near=0.1)
            depth = sparse = sky = None
            if ray_scene is not None:
                dense = mesh_depth(ray_scene, w2c, K, w, h)
                depth = torch.from_numpy(dense)[..., None]
                sky = torch.from_numpy(_sky_mask(dense, w2c, K, up))[..., None]
            if scan_ego is not None:
                scan_cam = transform_points(np.linalg.inv(cam.cam_to_ego), scan_ego)
                sparse = torch.from_numpy(lidar_depth(scan_cam, K, w, h))[..., None]
            view = View(camera, torch.from_numpy(np.ascontiguousarray(img)).float(), f"{frame.frame_id:06d}_{name}",
                        depth=depth, lidar_depth=sparse, sky_mask=sky)
            (test if is_test else train).append(view)
        if is_test:
            test_ids.append(frame.frame_id)
    notes = list(log.notes)
    notes.append(f"poses: {log.pose_source}")
    notes.append(f"split: every {test_every}th frame held out (frames {', '.join(map(str, test_ids))}): "
                 f"{len(train)} train / {len(test)} test views")
    points = colors = normals = None
    if geometry is not None:
        points, colors, normals = geometry.points, geometry.colors, geometry.normals
        if len(points) > max_points:
            keep = np.random.default_rng(0).choice(len(points), max_points, replace=False)
            points, colors, normals = points[keep], colors[keep], normals[keep]
        notes.append(f"LiDAR geometry from the {len(train_frames)} training frames: {len(geometry.points)} coloured points, mesh of "
                     f"{len(geometry.mesh.triangles)} triangles; {len(points)} seed points")
    info = DrivingInfo(log, geometry, up, test_ids, test_every)
    return SceneData(train, test, Path(path), points=points, point_colors=colors, background=bg, notes=notes,
                     point_normals=normals, driving=info)
