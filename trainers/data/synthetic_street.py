"""A synthetic driving log with exact ground truth: a procedural street ray-cast with open3d.

A car drives ~1 m per frame down a straight street with a gentle S-curve (road with lane markings, kerbs and
pavements, textured building fronts with windows, poles, parked cars, a gradient sky). It carries the left colour
camera of KITTI (rectified, KITTI's own calibration, intrinsics scaled to the image size) and a 64-beam spinning
LiDAR (elevation -24.8 to +2 degrees, like the HDL-64E) at the Velodyne origin. Written as:

- `OUT/kitti/2011_09_26/` with calib_cam_to_cam.txt, calib_velo_to_cam.txt, calib_imu_to_velo.txt and
  `2011_09_26_drive_0001_sync/{image_02,velodyne_points}/data/NNNNNNNNNN.{png,bin}` (no OXTS: poses must come from
  LiDAR odometry, as for the shared snippet);
- `OUT/canonical/`: the canonical layout (trainers/data/driving_layout.py) with the exact ego poses;
- `OUT/ground_truth/ground_truth.npz`: ego poses, camera z depth per frame, and calibration check points (LiDAR-frame
  3D points with the pixel the camera ray through them started from).
Ego = Velodyne frame (x forward, y left, z up); world = the first ego frame. Everything is seeded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from scenes.atomic import atomic_folder
from render.system_libs import import_open3d

from .driving_layout import write_canonical_log
from .driving_log import CameraSensor, DrivingLog, Frame

GENERATOR_VERSION = 2
MARKER_FILE = "synthetic_street.json"
DATE, DRIVE = "2011_09_26", "2011_09_26_drive_0001_sync"
SENSOR_HEIGHT = 1.73  # Velodyne above the road (m)
SUN = np.array([0.4, 0.3, 0.85]) / np.linalg.norm([0.4, 0.3, 0.85])
# KITTI 2011_09_26 calibration (rectification, Velodyne -> camera 0, rectified camera 2 at full size 1242x375)
R_RECT_00 = np.array([9.999239e-01, 9.837760e-03, -7.445048e-03, -9.869795e-03, 9.999421e-01, -4.278459e-03,
                      7.402527e-03, 4.351614e-03, 9.999631e-01]).reshape(3, 3)
VELO_R = np.array([7.533745e-03, -9.999714e-01, -6.166020e-04, 1.480249e-02, 7.280733e-04, -9.998902e-01,
                   9.998621e-01, 7.523790e-03, 1.480755e-02]).reshape(3, 3)
VELO_T = np.array([-4.069766e-03, -7.631618e-02, -2.717806e-01])
KITTI_K = (721.5377, 721.5377, 609.5593, 172.854, 1242, 375)
CAM2_OFFSET = np.array([0.0599, -0.0003, 0.0027])  # rectified camera 2 relative to camera 0 (m)


@dataclass
class SyntheticStreetConfig:
    """Synthetic driving log settings (defaults: ~2 s to generate)."""

    output: Path = Path("outputs/synthetic_street")
    num_frames: int = 40
    width: int = 248
    height: int = 75
    step_m: float = 1.0
    """Distance driven per frame (10 m/s at 10 Hz)."""
    lidar_azimuths: int = 1024
    """Azimuth samples per LiDAR spin (64 beams each)."""
    supersample: int = 2
    seed: int = 0

    def digest(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if k != "output"}
        fields["generator_version"] = GENERATOR_VERSION
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]

    def validate(self) -> None:
        for name in ("num_frames", "width", "height", "lidar_azimuths", "supersample"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SyntheticStreetConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.step_m <= 5:
            raise ValueError(f"SyntheticStreetConfig.step_m must be in [0, 5], got {self.step_m}")


# ----------------------------------------------------------------------------------------------- geometry
def _boxes(rng: np.random.Generator, length: float) -> List[Tuple[str, np.ndarray, np.ndarray, int]]:
    """(kind, min corner, max corner, variant) of every box in the street."""
    boxes = [("road", np.array([-30, -6, -0.2]), np.array([length + 60, 6, 0.0]), 0)]
    for side in (-1, 1):
        lo, hi = sorted((side * 6.0, side * 9.5))
        boxes.append(("pavement", np.array([-30, lo, -0.2]), np.array([length + 60, hi, 0.15]), 0))
        x = -30.0
        while x < length + 60:
            width = rng.uniform(7, 13)
            depth0 = 9.5 + rng.uniform(0, 1.5)
            lo, hi = sorted((side * depth0, side * (depth0 + 6)))
            boxes.append(("building", np.array([x, lo, 0.0]), np.array([x + width, hi, rng.uniform(6, 16)]),
                          int(rng.integers(1 << 30))))
            x += width + rng.uniform(0.0, 2.5)
        for px in np.arange(-20, length + 60, 14.0) + (7 if side > 0 else 0):
            y = side * 6.5
            boxes.append(("pole", np.array([px - 0.1, y - 0.1, 0.15]), np.array([px + 0.1, y + 0.1, 5.5]), 0))
        for cx in np.arange(-10, length + 50, 17.0) + rng.uniform(0, 6):
            y = side * 4.9
            boxes.append(("car", np.array([cx, y - 0.9, 0.0]), np.array([cx + 4.2, y + 0.9, 1.5]),
                          int(rng.integers(1 << 30))))
    return boxes


def _build_scene(boxes):
    o3d = import_open3d()
    scene = o3d.t.geometry.RaycastingScene()
    for kind, lo, hi, _ in boxes:
        mesh = o3d.geometry.TriangleMesh.create_box(*(hi - lo))
        mesh.translate(lo)
        scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
    return scene


def _hash01(*ints: np.ndarray) -> np.ndarray:
    h = np.zeros_like(ints[0], dtype=np.uint64)
    for k, a in enumerate(ints):
        h ^= (a.astype(np.int64).astype(np.uint64) + np.uint64(0x9E3779B9 + k)) * np.uint64(0x85EBCA77C2B2AE63)
        h ^= h >> np.uint64(29)
    return (h % np.uint64(10007)).astype(np.float64) / 10007.0


def _noise(p: np.ndarray, cell: float) -> np.ndarray:
    """Blocky deterministic noise in [0, 1] on a grid of `cell` metres (over x and the larger of y, z)."""
    c = np.floor(p / cell).astype(np.int64)
    return _hash01(c[:, 0], c[:, 1], c[:, 2])


def _albedo(kind_ids: np.ndarray, p: np.ndarray, boxes, kinds: List[str]) -> np.ndarray:
    """Colour of surface points `p` (N, 3) on the boxes `kind_ids` (index into boxes)."""
    out = np.zeros((len(p), 3))
    for b, (kind, lo, hi, variant) in enumerate(boxes):
        sel = kind_ids == b
        if not sel.any():
            continue
        q = p[sel]
        n = _noise(q, 0.25)[:, None]
        if kind == "road":
            col = 0.22 + 0.08 * n + np.zeros((1, 3))
            dashed = (np.abs(q[:, 1]) < 0.08) & (np.mod(q[:, 0], 6.0) < 3.0)
            edge = np.abs(np.abs(q[:, 1]) - 5.6) < 0.08
            col[dashed | edge] = 0.9
        elif kind == "pavement":
            col = np.array([[0.55, 0.53, 0.5]]) + 0.1 * n
            grid = (np.mod(q[:, 0], 1.0) < 0.05) | (np.mod(q[:, 1], 1.0) < 0.05)
            col[grid] *= 0.6
        elif kind == "building":
            r = np.random.default_rng(variant)
            base = r.uniform(0.3, 0.85, 3)
            col = base[None] * (0.85 + 0.3 * n)
            along, up = q[:, 0] - lo[0], q[:, 2]
            window = (np.mod(along, 2.5) > 0.7) & (np.mod(along, 2.5) < 1.8) & (np.mod(up, 3.0) > 1.0) & \
                     (np.mod(up, 3.0) < 2.4) & (up > 2.0)
            col[window] = np.array([0.15, 0.2, 0.3]) + 0.15 * n[window]
            brick = np.mod(up, 0.3) < 0.04
            col[brick & ~window] *= 0.75
        elif kind == "pole":
            col = np.array([[0.3, 0.3, 0.32]]) + 0.05 * n
        else:  # car
            base = np.random.default_rng(variant).uniform(0.1, 0.9, 3)
            col = base[None] + 0.05 * n
            col[q[:, 2] > 1.0] = np.array([0.12, 0.14, 0.18])
            col[q[:, 2] < 0.35] = np.array([0.05, 0.05, 0.05])
        out[sel] = np.clip(col, 0, 1)
    return out


def sky_colour(dirs: np.ndarray) -> np.ndarray:
    """Sky by elevation: pale at the horizon, deeper blue above."""
    e = np.clip(dirs[:, 2], 0, 1)[:, None]
    return (1 - e) * np.array([0.78, 0.84, 0.9]) + e * np.array([0.35, 0.55, 0.85])


def _shade(scene, boxes, origins: np.ndarray, dirs: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb (N, 3), hit distance t (inf on a miss), box index) of rays."""
    o3d = import_open3d()
    rays = o3d.core.Tensor(np.concatenate([origins, dirs], 1).astype(np.float32))
    hit = scene.cast_rays(rays)
    t = hit["t_hit"].numpy().astype(np.float64)
    geom = hit["geometry_ids"].numpy().astype(np.int64)
    normals = hit["primitive_normals"].numpy().astype(np.float64)
    ok = np.isfinite(t)
    rgb = sky_colour(dirs)
    p = origins[ok] + dirs[ok] * t[ok, None]
    albedo = _albedo(geom[ok], p, boxes, [b[0] for b in boxes])
    lambert = np.clip(normals[ok] @ SUN, 0, 1)[:, None]
    rgb[ok] = albedo * (0.45 + 0.6 * lambert)
    return np.clip(rgb, 0, 1), np.where(ok, t, np.inf), np.where(ok, geom, -1)


# ----------------------------------------------------------------------------------------------- rig
def velo_to_cam2() -> np.ndarray:
    """4x4 Velodyne -> rectified camera 2, as the written calibration files encode it."""
    tr = np.eye(4)
    tr[:3, :3], tr[:3, 3] = VELO_R, VELO_T
    rect = np.eye(4)
    rect[:3, :3] = R_RECT_00
    offset = np.eye(4)
    offset[:3, 3] = CAM2_OFFSET
    return offset @ rect @ tr


def intrinsics(config: SyntheticStreetConfig) -> np.ndarray:
    fx, fy, cx, cy, w, h = KITTI_K
    sx, sy = config.width / w, config.height / h
    return np.array([[fx * sx, 0, cx * sx], [0, fy * sy, cy * sy], [0, 0, 1.0]])


def street_poses(config: SyntheticStreetConfig) -> List[np.ndarray]:
    """Ego -> street frame (road surface at z = 0): along x with a lateral S-curve, heading along the path,
    sensor at SENSOR_HEIGHT."""
    poses = []
    for i in range(config.num_frames):
        x = i * config.step_m
        y = 0.8 * np.sin(x / 12.0) - 0.0
        yaw = np.arctan(0.8 / 12.0 * np.cos(x / 12.0))
        c, s = np.cos(yaw), np.sin(yaw)
        pose = np.eye(4)
        pose[:3, :3] = [[c, -s, 0], [s, c, 0], [0, 0, 1]]
        pose[:3, 3] = [x, y, SENSOR_HEIGHT]
        poses.append(pose)
    return poses


def ego_poses(config: SyntheticStreetConfig) -> List[np.ndarray]:
    """Ego -> world, world = the first ego frame (what the written logs hold)."""
    poses = street_poses(config)
    first = np.linalg.inv(poses[0])
    return [first @ p for p in poses]


def lidar_directions(azimuths: int) -> np.ndarray:
    elev = np.radians(np.linspace(2.0, -24.8, 64))
    az = np.linspace(-np.pi, np.pi, azimuths, endpoint=False)
    e, a = np.meshgrid(elev, az, indexing="ij")
    return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1).reshape(-1, 3)


# ----------------------------------------------------------------------------------------------- writing
def _calib_text(config: SyntheticStreetConfig) -> Dict[str, str]:
    K = intrinsics(config)
    P0 = np.concatenate([K, np.zeros((3, 1))], 1)
    P2 = np.concatenate([K, (K @ CAM2_OFFSET)[:, None]], 1)
    fmt = lambda a: " ".join(f"{v:.12e}" for v in np.ravel(a))  # noqa: E731
    cam = (f"calib_time: synthetic\ncorner_dist: 9.950000e-02\nS_rect_00: {config.width} {config.height}\n"
           f"R_rect_00: {fmt(R_RECT_00)}\nP_rect_00: {fmt(P0)}\nS_rect_02: {config.width} {config.height}\n"
           f"R_rect_02: {fmt(np.eye(3))}\nP_rect_02: {fmt(P2)}\n")
    velo = f"calib_time: synthetic\nR: {fmt(VELO_R)}\nT: {fmt(VELO_T)}\ndelta_f: 0 0\ndelta_c: 0 0\n"
    imu = f"calib_time: synthetic\nR: {fmt(np.eye(3))}\nT: {fmt(np.array([-0.81, 0.32, -0.8]))}\n"
    return {"calib_cam_to_cam.txt": cam, "calib_velo_to_cam.txt": velo, "calib_imu_to_velo.txt": imu}


def _write(folder: Path, config: SyntheticStreetConfig) -> None:
    rng = np.random.default_rng(config.seed)
    poses = street_poses(config)
    length = poses[-1][0, 3]
    boxes = _boxes(rng, length)
    scene = _build_scene(boxes)
    K = intrinsics(config)
    w, h, ss = config.width, config.height, config.supersample
    cam_to_ego = np.linalg.inv(velo_to_cam2())
    date_dir = folder / "kitti" / DATE
    drive = date_dir / DRIVE
    for sub in ("image_02/data", "velodyne_points/data"):
        (drive / sub).mkdir(parents=True)
    for name, text in _calib_text(config).items():
        (date_dir / name).write_text(text)
    # camera rays (supersampled) and pixel-centre rays for depth, in the camera frame
    offs = (np.arange(ss) + 0.5) / ss
    u = (np.arange(w)[None, :, None, None] + offs[None, None, None, :]) + 0 * offs[None, None, :, None]
    v = (np.arange(h)[:, None, None, None] + offs[None, None, :, None]) + 0 * offs[None, None, None, :]
    u, v = np.broadcast_arrays(u, v)
    d_ss = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u, dtype=float)], -1).reshape(-1, 3)
    uc, vc = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    d_c = np.stack([(uc - K[0, 2]) / K[0, 0], (vc - K[1, 2]) / K[1, 1], np.ones_like(uc)], -1).reshape(-1, 3)
    lidar_dirs = lidar_directions(config.lidar_azimuths)
    depths, checks, frames, scans = [], [], [], []
    for i, pose in enumerate(poses):
        c2w = pose @ cam_to_ego
        dirs = d_ss @ c2w[:3, :3].T
        norm = np.linalg.norm(dirs, axis=1, keepdims=True)
        rgb, _, _ = _shade(scene, boxes, np.broadcast_to(c2w[:3, 3], dirs.shape).copy(), dirs / norm)
        img = rgb.reshape(h, w, ss * ss, 3).mean(axis=2)
        png = drive / "image_02" / "data" / f"{i:010d}.png"
        cv2.imwrite(str(png), (np.clip(img, 0, 1)[..., ::-1] * 255 + 0.5).astype(np.uint8))
        dc = d_c @ c2w[:3, :3].T
        _, t, _ = _shade(scene, boxes, np.broadcast_to(c2w[:3, 3], dc.shape).copy(), dc)  # unit camera z: t = z
        depths.append(np.where(np.isfinite(t), t, 0).reshape(h, w).astype(np.float32))
        # calibration check: pixel centres' hit points in the LiDAR frame
        pick = rng.choice(np.flatnonzero(np.isfinite(t)), 8, replace=False)
        hit_world = c2w[:3, 3] + dc[pick] * t[pick, None]
        hit_velo = (hit_world - pose[:3, 3]) @ pose[:3, :3]
        checks.append(np.concatenate([np.full((8, 1), i), hit_velo, uc.reshape(-1)[pick, None],
                                      vc.reshape(-1)[pick, None]], 1))
        world_dirs = lidar_dirs @ pose[:3, :3].T
        _, t, geom = _shade(scene, boxes, np.broadcast_to(pose[:3, 3], world_dirs.shape).copy(), world_dirs)
        ok = np.isfinite(t) & (t < 120)
        pts = lidar_dirs[ok] * t[ok, None]
        intensity = np.where(np.isin(geom[ok], [b for b, x in enumerate(boxes) if x[0] == "road"]), 0.3, 0.5)
        scan = np.concatenate([pts, intensity[:, None]], 1).astype(np.float32)
        scan.tofile(drive / "velodyne_points" / "data" / f"{i:010d}.bin")
        scans.append(scan)
        frames.append(Frame(i, 0.1 * i, {"cam02": png}, drive / "velodyne_points" / "data" / f"{i:010d}.bin"))
    camera = CameraSensor("cam02", K[0, 0], K[1, 1], K[0, 2], K[1, 2], w, h, cam_to_ego)
    to_world = np.linalg.inv(poses[0])  # street frame -> world (the first ego frame)
    poses = [to_world @ p for p in poses]
    log = DrivingLog(Path(f"synthetic street {config.digest()}"), {"cam02": camera}, frames, np.eye(4), poses, "synthetic ground truth")
    write_canonical_log(log, folder / "canonical")
    (folder / "ground_truth").mkdir()
    np.savez_compressed(folder / "ground_truth" / "ground_truth.npz", ego_poses=np.stack(poses),
                        depth=np.stack(depths), calib_checks=np.concatenate(checks), K=K, cam_to_ego=cam_to_ego)
    (folder / MARKER_FILE).write_text(json.dumps({"digest": config.digest(), "config": asdict(config)}, default=str))


def generate_synthetic_street(config: Optional[SyntheticStreetConfig] = None) -> Path:
    """Write the synthetic log to `config.output` (temp folder + rename; skipped when up to date)."""
    config = config or SyntheticStreetConfig()
    config.validate()
    out = Path(config.output)
    if is_up_to_date(out, config):
        return out
    with atomic_folder(out) as tmp:
        _write(tmp, config)
    return out


def is_up_to_date(folder: Path, config: SyntheticStreetConfig) -> bool:
    marker = Path(folder) / MARKER_FILE
    try:
        return json.loads(marker.read_text()).get("digest") == config.digest()
    except (OSError, json.JSONDecodeError):
        return False


def kitti_root(folder: Path) -> Path:
    """The KITTI raw root inside a generated synthetic log."""
    return Path(folder) / "kitti"


def canonical_root(folder: Path) -> Path:
    return Path(folder) / "canonical"


def main() -> None:
    """CLI: `python -m trainers.data.synthetic_street --output outputs/synthetic_street`."""
    import tyro

    print(generate_synthetic_street(tyro.cli(SyntheticStreetConfig)))


if __name__ == "__main__":
    main()
