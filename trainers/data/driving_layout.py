"""The canonical driving-log folder layout (after drivestudio's processed layout), written and read here.

```
LOG/
  driving_log.json            {"format": "splatforge-driving-log", "version": 1, "cameras": [...],
                               "frames": [{"frame_id": 0, "timestamp": 0.0}, ...], "pose_source": "..."}
  images/FFFFFF_CAM.png       one image per frame and camera (FFFFFF: the source frame number, 6 digits)
  lidar/FFFFFF.bin            float32 x, y, z, intensity per point, in the LiDAR frame (KITTI .bin layout)
  ego_pose/FFFFFF.txt         4x4 ego -> world (absent when the log has no poses yet)
  extrinsics/CAM.txt          4x4 camera (OpenCV axes) -> ego
  extrinsics/lidar.txt        4x4 LiDAR -> ego
  intrinsics/CAM.txt          fx fy cx cy width height (pinhole, undistorted/rectified images)
```
Writes go to a temporary folder renamed into place, so a failure never leaves a partial log behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import List, Optional

import numpy as np

from scenes.atomic import atomic_folder
from .driving_log import CameraSensor, DrivingLog, Frame

MARKER = "driving_log.json"
FORMAT_NAME = "splatforge-driving-log"


def is_canonical_log(path: Path) -> bool:
    return (Path(path) / MARKER).is_file()


def _read_matrix(path: Path, shape=(4, 4)) -> np.ndarray:
    size = int(np.prod(shape))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (driving log layout needs it)")
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError:
        raise ValueError(f"{path}: expected {size} numbers, found non-numeric text") from None
    if values.size != size or not np.isfinite(values).all():
        raise ValueError(f"{path}: expected {size} finite numbers, found {values.size}")
    return values.reshape(shape)


def read_canonical_log(folder: Path) -> DrivingLog:
    """Read a log written by `write_canonical_log` (errors name the file and frame at fault)."""
    folder = Path(folder)
    marker = folder / MARKER
    try:
        meta = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{marker}: cannot read driving log description ({exc})") from None
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{marker}: field 'format' must be {FORMAT_NAME!r}, got {meta.get('format')!r}")
    cameras = {}
    for name in meta.get("cameras", []):
        intr = _read_matrix(folder / "intrinsics" / f"{name}.txt", (6,))
        cameras[name] = CameraSensor(name, *intr[:4], int(intr[4]), int(intr[5]),
                                     _read_matrix(folder / "extrinsics" / f"{name}.txt"))
    frames: List[Frame] = []
    poses: List[np.ndarray] = []
    for entry in meta.get("frames", []):
        fid = int(entry["frame_id"])
        images = {}
        for name in cameras:
            path = folder / "images" / f"{fid:06d}_{name}.png"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: image of camera {name!r} for frame {fid} is missing")
            images[name] = path
        lidar = folder / "lidar" / f"{fid:06d}.bin"
        frames.append(Frame(fid, float(entry.get("timestamp", 0.0)), images, lidar if lidar.is_file() else None))
        pose = folder / "ego_pose" / f"{fid:06d}.txt"
        if pose.is_file():
            poses.append(_read_matrix(pose))
    if poses and len(poses) != len(frames):
        raise ValueError(f"{folder / 'ego_pose'}: {len(poses)} poses for {len(frames)} frames (each frame needs one)")
    lidar_to_ego = _read_matrix(folder / "extrinsics" / "lidar.txt")
    return DrivingLog(folder, cameras, frames, lidar_to_ego, poses or None,
                      meta.get("pose_source", "canonical") if poses else "none")


def _fmt(matrix: np.ndarray) -> str:
    return "\n".join(" ".join(f"{v:.12g}" for v in row) for row in np.atleast_2d(matrix)) + "\n"


def write_canonical_log(log: DrivingLog, out: Path, scans: Optional[List[np.ndarray]] = None) -> Path:
    """Write `log` to `out` in the canonical layout (temp folder + rename). `scans` replaces the on-disk scans
    (e.g. synthetic ones, float (N, 4)); otherwise the log's scan files are copied."""
    out = Path(out)
    with atomic_folder(out) as tmp:
        for sub in ("images", "lidar", "ego_pose", "extrinsics", "intrinsics"):
            (tmp / sub).mkdir(parents=True)
        for name, cam in log.cameras.items():
            (tmp / "intrinsics" / f"{name}.txt").write_text(
                " ".join(f"{v:.12g}" for v in (cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height)) + "\n")
            (tmp / "extrinsics" / f"{name}.txt").write_text(_fmt(cam.cam_to_ego))
        (tmp / "extrinsics" / "lidar.txt").write_text(_fmt(log.lidar_to_ego))
        for i, frame in enumerate(log.frames):
            fid = frame.frame_id
            for name, path in frame.images.items():
                shutil.copyfile(path, tmp / "images" / f"{fid:06d}_{name}.png")
            if scans is not None:
                np.asarray(scans[i], dtype=np.float32).reshape(-1, 4).tofile(tmp / "lidar" / f"{fid:06d}.bin")
            elif frame.lidar is not None:
                shutil.copyfile(frame.lidar, tmp / "lidar" / f"{fid:06d}.bin")
            if log.ego_poses is not None:
                (tmp / "ego_pose" / f"{fid:06d}.txt").write_text(_fmt(log.ego_poses[i]))
        meta = {
            "format": FORMAT_NAME,
            "version": 1,
            "cameras": list(log.cameras),
            "frames": [{"frame_id": f.frame_id, "timestamp": f.timestamp} for f in log.frames],
            "pose_source": log.pose_source,
            "source": str(log.source),
        }
        (tmp / MARKER).write_text(json.dumps(meta, indent=2))
    return out
