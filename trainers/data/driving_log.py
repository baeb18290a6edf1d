"""Driving-log data model: timed frames, any number of cameras, LiDAR scans and ego poses.

Frames of reference (all 4x4 rigid transforms, metres):
- ego: the vehicle frame. `ego_poses[i]` maps ego -> world at frame i (None until odometry or OXTS gives them).
- camera: OpenCV axes (x right, y down, z forward); `CameraSensor.cam_to_ego` maps camera -> ego. For KITTI the
  camera is the *rectified* camera (P_rect's pinhole), so images need no undistortion.
- lidar: sensor frame of the scans; `DrivingLog.lidar_to_ego` maps it to ego. KITTI: ego = Velodyne frame.

A camera's world-to-camera at frame i is inv(cam_to_ego) @ inv(ego_pose[i]).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

MIN_RANGE_M = 2.5  # returns closer than this hit the car itself (DESIGN.md section 9)


@dataclass
class CameraSensor:
    """A pinhole camera on the car: intrinsics in pixels at (width, height), and camera-to-ego."""

    name: str
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    cam_to_ego: np.ndarray  # (4, 4)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])


@dataclass
class Frame:
    """One synchronised sample: its source frame number, time in seconds, one image per camera, one scan."""

    frame_id: int
    timestamp: float
    images: Dict[str, Path]
    lidar: Optional[Path] = None


@dataclass
class DrivingLog:
    """A driving log in memory (images and scans stay on disk until read)."""

    source: Path
    cameras: Dict[str, CameraSensor]
    frames: List[Frame]
    lidar_to_ego: np.ndarray = field(default_factory=lambda: np.eye(4))
    ego_poses: Optional[List[np.ndarray]] = None  # per frame, ego -> world
    pose_source: str = "none"  # 'oxts', 'canonical', 'lidar odometry (...)', 'synthetic ground truth'
    notes: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.frames:
            raise ValueError(f"{self.source}: driving log has no frames")
        if not self.cameras:
            raise ValueError(f"{self.source}: driving log has no cameras")
        if self.ego_poses is not None and len(self.ego_poses) != len(self.frames):
            raise ValueError(f"{self.source}: {len(self.ego_poses)} ego poses for {len(self.frames)} frames")

    @property
    def has_lidar(self) -> bool:
        return all(f.lidar is not None for f in self.frames)

    def with_poses(self, poses: List[np.ndarray], source: str) -> "DrivingLog":
        return replace(self, ego_poses=[np.asarray(p, dtype=np.float64) for p in poses], pose_source=source)

    def scan(self, index: int, min_range: float = MIN_RANGE_M) -> np.ndarray:
        """Frame `index`'s LiDAR returns (N, 4): x, y, z in the LiDAR frame and intensity; near returns dropped."""
        frame = self.frames[index]
        if frame.lidar is None:
            raise ValueError(f"{self.source}: frame {frame.frame_id} has no LiDAR scan")
        points = read_scan(frame.lidar, frame.frame_id)
        if min_range > 0:
            points = points[np.linalg.norm(points[:, :3], axis=1) >= min_range]
        return points

    def scan_in_world(self, index: int, min_range: float = MIN_RANGE_M) -> np.ndarray:
        """Frame `index`'s returns as (N, 4) with x, y, z in the world frame (needs ego poses)."""
        if self.ego_poses is None:
            raise ValueError(f"{self.source}: no ego poses (run LiDAR odometry first)")
        points = self.scan(index, min_range)
        xyz = transform_points(self.ego_poses[index] @ self.lidar_to_ego, points[:, :3])
        return np.concatenate([xyz, points[:, 3:4]], axis=1)

    def world_to_camera(self, index: int, camera: str) -> np.ndarray:
        if self.ego_poses is None:
            raise ValueError(f"{self.source}: no ego poses (run LiDAR odometry first)")
        return np.linalg.inv(self.ego_poses[index] @ self.cameras[camera].cam_to_ego)

    def trajectory(self) -> np.ndarray:
        """(N, 3) ego positions in the world."""
        if self.ego_poses is None:
            raise ValueError(f"{self.source}: no ego poses")
        return np.stack([p[:3, 3] for p in self.ego_poses])


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid transform to (N, 3) points."""
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def read_scan(path: Path, frame_id: Optional[int] = None) -> np.ndarray:
    """A KITTI-style float32 (x, y, z, intensity) scan; bad sizes and non-finite values are errors naming file and
    frame. Rows with any non-finite value are reported, never silently used."""
    where = f"{path}" + (f" (frame {frame_id})" if frame_id is not None else "")
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ValueError(f"{where}: cannot read LiDAR scan ({exc.strerror or exc})") from None
    if raw.size % 16:
        raise ValueError(
            f"{where}: LiDAR scan has {raw.size} bytes, not a multiple of 16 (float32 x, y, z, intensity per point): "
            f"truncated or not a KITTI Velodyne .bin file"
        )
    points = raw.view(np.float32).reshape(-1, 4)
    if points.shape[0] == 0:
        raise ValueError(f"{where}: LiDAR scan is empty")
    finite = np.isfinite(points).all(axis=1)
    if not finite.all():
        bad = int((~finite).sum())
        raise ValueError(f"{where}: LiDAR scan has {bad} of {len(points)} points with NaN or Inf coordinates "
                         f"(first at row {int(np.argmin(finite))})")
    return points.astype(np.float64)


def pair_by_frame(images: Dict[int, Path], scans: Dict[int, Path], where: Path) -> tuple:
    """Frame numbers present in both; a note naming what was dropped (or None)."""
    common = sorted(set(images) & set(scans))
    only_img = sorted(set(images) - set(scans))
    only_scan = sorted(set(scans) - set(images))
    note = None
    if only_img or only_scan:
        parts = []
        if only_img:
            parts.append(f"{len(only_img)} image(s) without a LiDAR scan (frames {_ids(only_img)})")
        if only_scan:
            parts.append(f"{len(only_scan)} scan(s) without an image (frames {_ids(only_scan)})")
        note = f"{where}: dropped " + " and ".join(parts) + f"; kept {len(common)} paired frames"
    if not common:
        raise ValueError(f"{where}: no frame number has both an image and a LiDAR scan "
                         f"({len(images)} images, {len(scans)} scans)")
    return common, note


def _ids(ids: List[int], cap: int = 8) -> str:
    text = ", ".join(str(i) for i in ids[:cap])
    return text + (f", ... ({len(ids) - cap} more)" if len(ids) > cap else "")
