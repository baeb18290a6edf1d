"""KITTI raw reader: calibration files, image_02 (+ image_03), velodyne_points and, when present, oxts.

Accepted paths: a KITTI raw root (holding a date folder such as `2011_09_26/` with the calib files), the date
folder itself, or one drive folder (`2011_09_26_drive_NNNN_sync/`) inside it.

Calibration chain (DESIGN.md section 9), ego = Velodyne frame:
    velo -> rectified camera k = [I | t_k] @ R_rect_00 (padded to 4x4) @ Tr_velo_to_cam,
    t_k = K^-1 @ P_rect_0k[:, 3] (camera 2 sits about 6 cm from camera 0), K = P_rect_0k[:, :3].
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .driving_log import CameraSensor, DrivingLog, Frame, pair_by_frame

CALIB_CAM = "calib_cam_to_cam.txt"
CALIB_VELO = "calib_velo_to_cam.txt"
CALIB_IMU = "calib_imu_to_velo.txt"
_DATE_RE = re.compile(r"^\d{4}_\d{2}_\d{2}$")
CAMERAS = {"image_02": "02", "image_03": "03"}


def read_calib_file(path: Path) -> Dict[str, np.ndarray]:
    """`key: numbers` lines -> arrays (non-numeric values such as calib_time are skipped)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: KITTI calibration file is missing")
    out: Dict[str, np.ndarray] = {}
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if ":" not in line:
            if line.strip():
                raise ValueError(f"{path}: line {lineno} is not 'key: values' ({line.strip()[:40]!r})")
            continue
        key, value = line.split(":", 1)
        try:
            out[key.strip()] = np.array(value.split(), dtype=np.float64)
        except ValueError:
            if key.strip() not in ("calib_time",):
                raise ValueError(f"{path}: line {lineno}: field {key.strip()!r} is not numeric") from None
    return out


def _field(calib: Dict[str, np.ndarray], key: str, size: int, path: Path) -> np.ndarray:
    if key not in calib:
        raise ValueError(f"{path}: field {key!r} is missing")
    value = calib[key]
    if value.size != size or not np.isfinite(value).all():
        raise ValueError(f"{path}: field {key!r} must have {size} finite numbers, has {value.size}")
    return value


def velo_to_rect_camera(cam_calib: Dict[str, np.ndarray], velo_calib: Dict[str, np.ndarray], cam: str,
                        cam_path: Path, velo_path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """(K 3x3, 4x4 Velodyne -> rectified camera `cam` ('02' or '03'))."""
    P = _field(cam_calib, f"P_rect_{cam}", 12, cam_path).reshape(3, 4)
    R_rect = np.eye(4)
    R_rect[:3, :3] = _field(cam_calib, "R_rect_00", 9, cam_path).reshape(3, 3)
    Tr = np.eye(4)
    Tr[:3, :3] = _field(velo_calib, "R", 9, velo_path).reshape(3, 3)
    Tr[:3, 3] = _field(velo_calib, "T", 3, velo_path)
    K = P[:, :3]
    if abs(K[0, 0]) < 1e-9 or abs(K[1, 1]) < 1e-9:
        raise ValueError(f"{cam_path}: field 'P_rect_{cam}' has a zero focal length")
    offset = np.eye(4)
    offset[:3, 3] = np.linalg.solve(K, P[:, 3])
    return K, offset @ R_rect @ Tr


def locate_drive(path: Path) -> Tuple[Path, Path]:
    """(date folder with the calib files, drive folder) for a root, date folder or drive folder."""
    path = Path(path)
    if (path / "velodyne_points").is_dir() or any((path / c).is_dir() for c in CAMERAS):
        if not (path.parent / CALIB_CAM).is_file():
            raise FileNotFoundError(f"{path.parent / CALIB_CAM}: KITTI calibration file is missing "
                                    f"(the drive folder's parent must hold the calib_*.txt files)")
        return path.parent, path
    date_dirs = [path] if (path / CALIB_CAM).is_file() else sorted(
        d for d in path.iterdir() if d.is_dir() and (d / CALIB_CAM).is_file())
    if not date_dirs:
        raise ValueError(f"{path}: not a KITTI raw folder (no {CALIB_CAM} here or in a date folder below)")
    drives = [d for date in date_dirs for d in sorted(date.iterdir())
              if d.is_dir() and ((d / "velodyne_points").is_dir() or (d / "image_02").is_dir())]
    if not drives:
        raise ValueError(f"{path}: KITTI raw folder has no drive folder with image_02/ or velodyne_points/")
    if len(drives) > 1:
        raise ValueError(f"{path}: holds {len(drives)} KITTI drives ({', '.join(d.name for d in drives[:6])}); "
                         f"pass one drive folder")
    return drives[0].parent, drives[0]


def is_kitti_raw(path: Path) -> bool:
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / CALIB_CAM).is_file():
        return True
    if (path.parent / CALIB_CAM).is_file() and ((path / "image_02").is_dir() or (path / "velodyne_points").is_dir()):
        return True
    return any(d.is_dir() and _DATE_RE.match(d.name) and (d / CALIB_CAM).is_file() for d in path.iterdir())


def _numbered(folder: Path, suffix: str) -> Dict[int, Path]:
    out = {}
    for p in folder.glob(f"*{suffix}") if folder.is_dir() else []:
        if p.stem.isdigit():
            out[int(p.stem)] = p
    return out


def _timestamps(drive: Path, frame_ids: List[int]) -> Tuple[List[float], str]:
    for sub in ("velodyne_points", "image_02", "oxts"):
        path = drive / sub / "timestamps.txt"
        if path.is_file():
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
            try:
                times = [datetime.strptime(ln[:26], "%Y-%m-%d %H:%M:%S.%f").timestamp() for ln in lines]
            except ValueError:
                raise ValueError(f"{path}: timestamps must read 'YYYY-MM-DD HH:MM:SS.ffffff'") from None
            if max(frame_ids) >= len(times):
                raise ValueError(f"{path}: has {len(times)} lines but frame {max(frame_ids)} is used")
            t0 = times[frame_ids[0]]
            return [times[i] - t0 for i in frame_ids], str(path)
    return [0.1 * (i - frame_ids[0]) for i in frame_ids], "none (10 Hz assumed from frame numbers)"


def _oxts_poses(drive: Path, frame_ids: List[int], imu_to_velo: np.ndarray) -> Optional[List[np.ndarray]]:
    """Velodyne -> world poses from OXTS (Mercator projection as in the KITTI devkit), first frame at the origin."""
    folder = drive / "oxts" / "data"
    files = _numbered(folder, ".txt")
    if not files or any(i not in files for i in frame_ids):
        return None
    poses, scale, origin = [], None, None
    velo_to_imu = np.linalg.inv(imu_to_velo)
    for i in frame_ids:
        vals = np.array(files[i].read_text().split()[:6], dtype=np.float64)
        if vals.size < 6 or not np.isfinite(vals).all():
            raise ValueError(f"{files[i]}: OXTS record (frame {i}) needs lat lon alt roll pitch yaw")
        lat, lon, alt, roll, pitch, yaw = vals
        if scale is None:
            scale = np.cos(np.radians(lat))
        er = 6378137.0
        t = np.array([scale * np.radians(lon) * er, scale * er * np.log(np.tan(np.radians(90 + lat) / 2)), alt])
        cx, sx, cy, sy, cz, sz = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
        rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rz @ ry @ rx, t
        if origin is None:
            origin = np.linalg.inv(pose)
        poses.append(origin @ pose @ velo_to_imu)
    first_inv = np.linalg.inv(poses[0])
    return [first_inv @ p for p in poses]


def read_kitti_raw(path: Path) -> DrivingLog:
    """A KITTI raw drive as a DrivingLog (ego = Velodyne). Frames are paired by number across image_02, image_03
    (when present) and velodyne_points; what is dropped is said in the log's notes."""
    date_dir, drive = locate_drive(Path(path))
    cam_path, velo_path = date_dir / CALIB_CAM, date_dir / CALIB_VELO
    cam_calib, velo_calib = read_calib_file(cam_path), read_calib_file(velo_path)
    notes: List[str] = []
    image_sets: Dict[str, Dict[int, Path]] = {}
    for folder, cam in CAMERAS.items():
        files = _numbered(drive / folder / "data", ".png")
        if files:
            image_sets[cam] = files
    if "02" not in image_sets:
        raise FileNotFoundError(f"{drive / 'image_02' / 'data'}: no NNNNNNNNNN.png images (the left colour camera)")
    scans = _numbered(drive / "velodyne_points" / "data", ".bin")
    if not scans:
        raise FileNotFoundError(f"{drive / 'velodyne_points' / 'data'}: no NNNNNNNNNN.bin LiDAR scans")
    images = image_sets["02"]
    if "03" in image_sets:
        images = {i: p for i, p in images.items() if i in image_sets["03"]}
        if len(images) < len(image_sets["02"]):
            notes.append(f"{drive}: dropped {len(image_sets['02']) - len(images)} image_02 frame(s) without image_03")
    frame_ids, note = pair_by_frame(images, scans, drive)
    if note:
        notes.append(note)
    cameras = {}
    for cam in image_sets:
        K, velo_to_cam = velo_to_rect_camera(cam_calib, velo_calib, cam, cam_path, velo_path)
        size = cam_calib.get(f"S_rect_{cam}")
        if size is None or size.size != 2:
            import cv2

            img = cv2.imread(str(image_sets[cam][frame_ids[0]]), cv2.IMREAD_UNCHANGED)
            if img is None:
                raise ValueError(f"{image_sets[cam][frame_ids[0]]}: cannot read image (frame {frame_ids[0]})")
            size = np.array([img.shape[1], img.shape[0]])
        name = f"cam{cam}"
        cameras[name] = CameraSensor(name, K[0, 0], K[1, 1], K[0, 2], K[1, 2], int(round(size[0])),
                                     int(round(size[1])), np.linalg.inv(velo_to_cam))
    times, time_source = _timestamps(drive, frame_ids)
    frames = [Frame(i, t, {f"cam{c}": image_sets[c][i] for c in image_sets}, scans[i]) for i, t in zip(frame_ids, times)]
    poses, pose_source = None, "none"
    if (drive / "oxts" / "data").is_dir():
        imu = read_calib_file(date_dir / CALIB_IMU)
        imu_to_velo = np.eye(4)
        imu_to_velo[:3, :3] = _field(imu, "R", 9, date_dir / CALIB_IMU).reshape(3, 3)
        imu_to_velo[:3, 3] = _field(imu, "T", 3, date_dir / CALIB_IMU)
        poses = _oxts_poses(drive, frame_ids, imu_to_velo)
        pose_source = "oxts" if poses is not None else "none"
        if poses is None:
            notes.append(f"{drive / 'oxts'}: not every frame has an OXTS record; poses will come from LiDAR odometry")
    notes.append(f"KITTI raw {drive.name}: {len(frames)} frames ({frame_ids[0]}..{frame_ids[-1]}), cameras "
                 f"{', '.join(cameras)}, timestamps: {time_source}")
    return DrivingLog(drive, cameras, frames, np.eye(4), poses, pose_source, notes)
