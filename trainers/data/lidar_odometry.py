"""Ego poses from LiDAR odometry: KISS-ICP (PyPI `kiss-icp`), with open3d point-to-plane ICP as the fallback.

The estimate is refused (ValueError with the measured motion) when the log is too short or too static for
scan registration to be trusted: fewer than `min_frames` frames or a path shorter than `min_path_m`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np

from render.system_libs import import_open3d
from scenes.atomic import atomic_path

from .driving_log import DrivingLog


@dataclass
class OdometryConfig:
    """LiDAR odometry settings."""

    method: str = "auto"
    """'kiss-icp', 'open3d' (point-to-plane ICP, scan to scan), or 'auto': both, keeping the trajectory under
    which consecutive scans agree best (KISS-ICP's point-to-point ICP can lock onto the LiDAR's own ground rings
    on flat, featureless roads and report a standing car)."""
    max_range: float = 80.0
    """Ignore returns farther than this (metres)."""
    voxel_size: float = 0.25
    """KISS-ICP map voxel / open3d down-sampling size (metres)."""
    min_frames: int = 3
    min_path_m: float = 1.0
    """Refuse logs whose estimated path is shorter than this: registration of a static car is not a pose."""
    max_step_m: float = 6.0
    """Refuse estimates with a frame-to-frame jump above this (60 m/s at 10 Hz): registration diverged."""


@dataclass
class Trajectory:
    """Ego -> world poses (first frame at the origin) and a summary of the motion."""

    poses: List[np.ndarray]
    method: str

    @property
    def steps(self) -> np.ndarray:
        pos = np.stack([p[:3, 3] for p in self.poses])
        return np.linalg.norm(np.diff(pos, axis=0), axis=1)

    @property
    def length(self) -> float:
        return float(self.steps.sum())

    def summary(self) -> str:
        s = self.steps
        return (f"{self.method}: {len(self.poses)} poses, path {self.length:.2f} m, per-frame motion mean "
                f"{s.mean():.3f} m (min {s.min():.3f}, max {s.max():.3f})")


def _kiss_icp(scans: List[np.ndarray], config: OdometryConfig) -> List[np.ndarray]:
    from kiss_icp.config import KISSConfig
    from kiss_icp.kiss_icp import KissICP

    kiss_config = KISSConfig()
    kiss_config.data.max_range = config.max_range
    kiss_config.data.min_range = 0.0
    kiss_config.data.deskew = False  # KITTI scans carry no per-point times
    kiss_config.mapping.voxel_size = config.voxel_size
    kiss_config.registration.max_num_threads = 1
    odometry = KissICP(kiss_config)
    poses = []
    for scan in scans:
        odometry.register_frame(np.ascontiguousarray(scan, dtype=np.float64), np.empty(0))
        poses.append(np.array(odometry.last_pose, dtype=np.float64))
    return poses


def _open3d_icp(scans: List[np.ndarray], config: OdometryConfig) -> List[np.ndarray]:
    o3d = import_open3d()
    reg = o3d.pipelines.registration

    def cloud(points: np.ndarray):
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
        pc = pc.voxel_down_sample(config.voxel_size)
        pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=3 * config.voxel_size, max_nn=30))
        return pc

    poses, delta = [np.eye(4)], np.eye(4)
    previous = cloud(scans[0])
    for scan in scans[1:]:
        current = cloud(scan)
        result = reg.registration_icp(current, previous, 4 * config.voxel_size, delta,
                                      reg.TransformationEstimationPointToPlane(),
                                      reg.ICPConvergenceCriteria(max_iteration=60))
        delta = np.asarray(result.transformation)
        poses.append(poses[-1] @ delta)
        previous = current
    return poses


def alignment_residual(scans: List[np.ndarray], poses: List[np.ndarray], voxel: float = 0.25,
                       clip: float = 1.0) -> float:
    """Mean point-to-plane distance (clipped at `clip` m) of each scan, moved by the poses into the previous scan's
    frame, to that scan: how well consecutive scans agree under a trajectory (lower is better)."""
    from scipy.spatial import cKDTree

    o3d = import_open3d()
    total, count = 0.0, 0
    for k in range(1, len(scans)):
        prev = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(scans[k - 1])).voxel_down_sample(voxel)
        prev.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=4 * voxel, max_nn=20))
        ref, normals = np.asarray(prev.points), np.asarray(prev.normals)
        rel = np.linalg.inv(poses[k - 1]) @ poses[k]
        cur = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(scans[k])).voxel_down_sample(voxel)
        moved = np.asarray(cur.points) @ rel[:3, :3].T + rel[:3, 3]
        dist, idx = cKDTree(ref).query(moved, k=1)
        plane = np.abs(np.einsum("ij,ij->i", moved - ref[idx], normals[idx]))
        err = np.where(dist > clip, clip, np.minimum(plane, clip))
        total += float(err.sum())
        count += len(err)
    return total / max(count, 1)


def estimate_poses(log: DrivingLog, config: Optional[OdometryConfig] = None) -> Trajectory:
    """Ego -> world poses for every frame of `log` from its LiDAR scans."""
    config = config or OdometryConfig()
    if not log.has_lidar:
        raise ValueError(f"{log.source}: LiDAR odometry needs a scan for every frame")
    if len(log.frames) < config.min_frames:
        raise ValueError(f"{log.source}: {len(log.frames)} frame(s) is too short for LiDAR odometry "
                         f"(needs at least {config.min_frames})")
    scans = []
    for i in range(len(log.frames)):
        pts = log.scan(i)[:, :3]
        scans.append(pts[np.linalg.norm(pts, axis=1) <= config.max_range])
    if config.method not in ("auto", "kiss-icp", "open3d"):
        raise ValueError(f"odometry method must be auto, kiss-icp or open3d, got {config.method!r}")
    candidates = {}
    if config.method in ("auto", "kiss-icp"):
        try:
            candidates["kiss-icp"] = _kiss_icp(scans, config)
        except ImportError:
            if config.method == "kiss-icp":
                raise ImportError("LiDAR odometry: the kiss-icp package is not installed (pip install kiss-icp)") from None
    if config.method in ("auto", "open3d") :
        candidates["open3d"] = _open3d_icp(scans, config)
    if len(candidates) > 1:  # auto: keep the trajectory under which consecutive scans agree best
        residuals = {name: alignment_residual(scans, poses) for name, poses in candidates.items()}
        method = min(residuals, key=residuals.get)
        detail = ", ".join(f"{name} {value * 100:.2f} cm" for name, value in residuals.items())
        method_label = f"{method} (scan agreement: {detail})"
    else:
        method = method_label = next(iter(candidates))
    lidar_poses = candidates[method]
    l2e, e2l = log.lidar_to_ego, np.linalg.inv(log.lidar_to_ego)
    trajectory = Trajectory([l2e @ p @ e2l for p in lidar_poses], method_label)
    steps = trajectory.steps
    if trajectory.length < config.min_path_m:
        raise ValueError(
            f"{log.source}: too static for LiDAR odometry: the car moved {trajectory.length:.2f} m over "
            f"{len(log.frames)} frames (frames {log.frames[0].frame_id}..{log.frames[-1].frame_id}; needs at least "
            f"{config.min_path_m:g} m); poses from registration of a standing car cannot be trusted")
    if steps.max() > config.max_step_m:
        k = int(np.argmax(steps))
        raise ValueError(f"{log.source}: LiDAR odometry ({method}) jumped {steps[k]:.1f} m between frames "
                         f"{log.frames[k].frame_id} and {log.frames[k + 1].frame_id}: registration diverged")
    return trajectory


def _cache_path(log: DrivingLog, config: OdometryConfig) -> Path:
    """Cache file keyed by the scans (path, size, mtime), the extrinsics and the settings."""
    digest = hashlib.sha256(repr(asdict(config)).encode())
    digest.update(np.asarray(log.lidar_to_ego, dtype=np.float64).tobytes())
    for frame in log.frames:
        stat = os.stat(frame.lidar)
        digest.update(f"{Path(frame.lidar).resolve()}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    root = Path(os.environ.get("SPLATFORGE_CACHE", Path.home() / ".cache" / "splatforge")) / "odometry"
    return root / f"{digest.hexdigest()[:24]}.json"


def with_odometry(log: DrivingLog, config: Optional[OdometryConfig] = None, cache: bool = True) -> DrivingLog:
    """`log` with ego poses: its own when it has them, else from LiDAR odometry (noted in the log; the result is
    cached under ~/.cache/splatforge/odometry, keyed by the scan files and settings)."""
    if log.ego_poses is not None:
        return log
    config = config or OdometryConfig()
    path = _cache_path(log, config) if cache and log.has_lidar else None
    if path is not None and path.is_file():
        payload = json.loads(path.read_text())
        trajectory = Trajectory([np.array(p) for p in payload["poses"]], payload["method"])
        where = f" (cached in {path})"
    else:
        trajectory = estimate_poses(log, config)
        where = ""
        if path is not None:
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps({"method": trajectory.method, "poses": [p.tolist() for p in trajectory.poses]}))
    out = log.with_poses(trajectory.poses, f"lidar odometry ({trajectory.method.split(' (')[0]})")
    out.notes = list(log.notes) + [f"poses from LiDAR odometry{where}, {trajectory.summary()}"]
    return out
