"""Geometry from LiDAR: scans accumulated in the world, coloured from the cameras, meshed, and depth maps.

- `accumulate_points`: every scan in the world frame, voxel-down-sampled, with normals oriented towards the sensor.
- `colour_points`: each return takes the colour of the pixel it projects to in its own frame's camera(s); returns
  no camera sees are dropped (they cannot be supervised).
- `build_mesh`: open3d screened Poisson, trimmed to the surface the returns support (vertices farther than
  `trim_m` from any return are removed, so Poisson's extrapolated blobs and sky domes go).
- `mesh_depth`: camera-axis z depth of the mesh per pixel (open3d RaycastingScene), 0 where the ray misses.
- `lidar_depth`: one scan projected into a camera, z-buffered (nearest return per pixel), 0 elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from render.system_libs import import_open3d

from .driving_log import DrivingLog, transform_points


@dataclass
class LidarGeometry:
    """Accumulated LiDAR: points (M, 3) world, colours (M, 3) in [0, 1], normals (M, 3), and the trimmed mesh."""

    points: np.ndarray
    colors: np.ndarray
    normals: np.ndarray
    mesh: object  # open3d.geometry.TriangleMesh

    def raycasting_scene(self):
        o3d = import_open3d()
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(self.mesh))
        return scene


def project(points_cam: np.ndarray, K: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(u, v) pixel coordinates (pixel centres at +0.5) and z of camera-frame points."""
    z = points_cam[:, 2]
    safe = np.where(np.abs(z) < 1e-9, 1e-9, z)
    u = K[0, 0] * points_cam[:, 0] / safe + K[0, 2]
    v = K[1, 1] * points_cam[:, 1] / safe + K[1, 2]
    return np.stack([u, v], axis=1), z


def lidar_depth(scan_cam: np.ndarray, K: np.ndarray, width: int, height: int,
                min_depth: float = 1.0, max_depth: float = 80.0) -> np.ndarray:
    """(H, W) z-buffered sparse depth of camera-frame points `scan_cam` (N, 3); 0 where no return lands."""
    uv, z = project(scan_cam, K)
    keep = (z >= min_depth) & (z <= max_depth)
    col, row = np.floor(uv[keep, 0]).astype(np.int64), np.floor(uv[keep, 1]).astype(np.int64)
    z = z[keep]
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    col, row, z = col[inside], row[inside], z[inside]
    depth = np.full(height * width, np.inf)
    np.minimum.at(depth, row * width + col, z)
    depth[~np.isfinite(depth)] = 0.0
    return depth.reshape(height, width).astype(np.float32)


def _frame_points(log: DrivingLog, i: int, max_range: float) -> np.ndarray:
    scan = log.scan(i)[:, :3]
    return scan[np.linalg.norm(scan, axis=1) <= max_range]


def _angles(points: np.ndarray, bin_deg: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = np.linalg.norm(points, axis=1)
    az = np.degrees(np.arctan2(points[:, 1], points[:, 0]))
    el = np.degrees(np.arcsin(np.clip(points[:, 2] / np.maximum(r, 1e-9), -1, 1)))
    return np.floor((az + 180) / bin_deg).astype(np.int64), np.floor((el + 90) / bin_deg).astype(np.int64), r


def dynamic_mask(log: DrivingLog, i: int, points_world: np.ndarray, neighbours: Tuple[int, ...] = (-4, -2, 2, 4),
                 bin_deg: float = 0.5, margin: float = 0.8, rel_margin: float = 0.05) -> np.ndarray:
    """True for world points of frame `i` that another frame's LiDAR saw through (free-space carving): a return
    of frame k in the same direction lies clearly beyond the point, so the point's surface was not there at k (a
    moving car). Directions frame k never measured vote nothing."""
    dynamic = np.zeros(len(points_world), dtype=bool)
    n_az, n_el = int(np.ceil(360 / bin_deg)) + 1, int(np.ceil(180 / bin_deg)) + 1
    for step in neighbours:
        k = i + step
        if not 0 <= k < len(log.frames):
            continue
        to_k = np.linalg.inv(log.ego_poses[k] @ log.lidar_to_ego)
        scan_k = log.scan(k)[:, :3]
        ai, ei, r = _angles(scan_k, bin_deg)
        nearest = np.full(n_az * n_el, np.inf)
        np.minimum.at(nearest, ai * n_el + ei, r)
        aj, ej, rj = _angles(transform_points(to_k, points_world), bin_deg)
        seen = nearest[aj * n_el + ej]
        dynamic |= np.isfinite(seen) & (seen > rj + margin + rel_margin * rj)
    return dynamic


def accumulate_points(log: DrivingLog, images: List[dict], max_range: float = 60.0, voxel: float = 0.1,
                      frames: Optional[List[int]] = None, remove_dynamic: bool = True,
                      ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World points, colours and sensor-facing normals from the scans of `frames` (default: all; training uses
    only its own frames, so held-out frames' scans and images never reach the model), keeping the returns that a
    camera of their own frame sees. `images[i][camera]` is frame i's image (H, W, 3), any downscale.
    `remove_dynamic` drops returns that neighbouring scans saw through (`dynamic_mask`: moving traffic)."""
    o3d = import_open3d()
    all_pts, all_rgb, all_origin = [], [], []
    for i in (range(len(log.frames)) if frames is None else frames):
        scan = _frame_points(log, i, max_range)
        ego_scan = transform_points(log.lidar_to_ego, scan)
        world = transform_points(log.ego_poses[i], ego_scan)
        if remove_dynamic:
            moving = dynamic_mask(log, i, world)
            scan, ego_scan, world = scan[~moving], ego_scan[~moving], world[~moving]
        rgb = np.full((len(scan), 3), -1.0)
        for name, cam in log.cameras.items():
            img = images[i][name]
            h, w = img.shape[:2]
            sx, sy = w / cam.width, h / cam.height
            pc = transform_points(np.linalg.inv(cam.cam_to_ego), ego_scan)
            uv, z = project(pc, cam.K)
            col, row = np.floor(uv[:, 0] * sx).astype(np.int64), np.floor(uv[:, 1] * sy).astype(np.int64)
            ok = (z > 0.5) & (col >= 0) & (col < w) & (row >= 0) & (row < h) & (rgb[:, 0] < 0)
            rgb[ok] = img[row[ok], col[ok]]
        seen = rgb[:, 0] >= 0
        all_pts.append(world[seen])
        all_rgb.append(rgb[seen])
        all_origin.append(np.broadcast_to((log.ego_poses[i] @ log.lidar_to_ego)[:3, 3], (int(seen.sum()), 3)))
    pts, rgb, origin = (np.concatenate(a) for a in (all_pts, all_rgb, all_origin))
    if len(pts) == 0:
        raise ValueError(f"{log.source}: no LiDAR return projects into any camera image (check the calibration)")
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts))
    cloud.colors = o3d.utility.Vector3dVector(np.clip(rgb, 0, 1))
    cloud.normals = o3d.utility.Vector3dVector(origin)  # carried through the voxel average, replaced below
    cloud = cloud.voxel_down_sample(voxel)
    origins = np.asarray(cloud.normals).copy()
    cloud.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=max(4 * voxel, 0.3), max_nn=20))
    normals = np.asarray(cloud.normals)
    points = np.asarray(cloud.points)
    flip = np.einsum("ij,ij->i", normals, origins - points) < 0
    normals[flip] *= -1
    return points.copy(), np.asarray(cloud.colors).copy(), normals.copy()


def build_mesh(points: np.ndarray, normals: np.ndarray, colors: Optional[np.ndarray] = None, depth: int = 9,
               trim_m: float = 0.3):
    """Poisson mesh of oriented points, trimmed to within `trim_m` of a point."""
    o3d = import_open3d()
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    cloud.normals = o3d.utility.Vector3dVector(normals)
    if colors is not None:
        cloud.colors = o3d.utility.Vector3dVector(colors)
    mesh, _ = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(cloud, depth=depth, n_threads=1)
    from scipy.spatial import cKDTree

    verts = np.asarray(mesh.vertices)
    nearest, _ = cKDTree(points).query(verts, k=1)
    mesh.remove_vertices_by_mask(nearest > trim_m)
    mesh.compute_vertex_normals()
    return mesh


def build_geometry(log: DrivingLog, images: List[dict], voxel: float = 0.1, max_range: float = 60.0,
                   poisson_depth: int = 9, frames: Optional[List[int]] = None,
                   remove_dynamic: bool = True) -> LidarGeometry:
    points, colors, normals = accumulate_points(log, images, max_range, voxel, frames, remove_dynamic)
    mesh = build_mesh(points, normals, colors, poisson_depth, trim_m=max(3 * voxel, 0.25))
    return LidarGeometry(points, colors, normals, mesh)


def mesh_depth(scene, world_to_camera: np.ndarray, K: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W) camera-axis z depth of the first mesh hit through each pixel centre; 0 where the ray misses."""
    o3d = import_open3d()
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    dirs_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)
    c2w = np.linalg.inv(world_to_camera)
    dirs = dirs_cam.reshape(-1, 3) @ c2w[:3, :3].T
    origin = np.broadcast_to(c2w[:3, 3], dirs.shape)
    rays = o3d.core.Tensor(np.concatenate([origin, dirs], axis=1).astype(np.float32))
    t = scene.cast_rays(rays)["t_hit"].numpy().reshape(height, width)
    depth = np.where(np.isfinite(t), t, 0.0)  # direction has unit camera z, so t is the z depth
    return depth.astype(np.float32)
