"""Directional-light shadow maps of meshes (orthographic, ray cast with open3d) and PCF lookups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .camera import Camera
from .system_libs import import_open3d


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64).reshape(3)
    n = np.linalg.norm(v)
    if not np.isfinite(n) or n == 0:
        raise ValueError(f"direction must be a finite non-zero 3-vector, got {v}")
    return v / n


def light_basis(to_light) -> np.ndarray:
    """(3, 3) rows right, up, forward; forward is the direction light travels (away from the light)."""
    forward = -unit(to_light)
    helper = np.array([0.0, 0.0, 1.0]) if abs(forward[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    right = np.cross(helper, forward)
    right /= np.linalg.norm(right)
    up = np.cross(forward, right)
    return np.stack([right, up, forward])


def raycasting_scene(meshes: Sequence):
    """An open3d RaycastingScene holding every mesh's world-space triangles (geometry id = list index)."""
    o3d = import_open3d()

    scene = o3d.t.geometry.RaycastingScene()
    for mesh in meshes:
        scene.add_triangles(
            o3d.core.Tensor(mesh.world_vertices().astype(np.float32)),
            o3d.core.Tensor(mesh.faces.astype(np.uint32)),
        )
    return scene


def cast(scene, origins: np.ndarray, directions: np.ndarray) -> dict:
    """Cast rays (N, 3) + (N, 3); returns numpy arrays (t_hit in units of |direction|, inf on a miss)."""
    o3d = import_open3d()

    rays = np.concatenate([np.broadcast_to(origins, directions.shape), directions], axis=1).astype(np.float32)
    out = scene.cast_rays(o3d.core.Tensor(np.ascontiguousarray(rays)))
    return {k: v.numpy() for k, v in out.items()}


@dataclass
class ShadowMap:
    """Orthographic depth map along `basis[2]`: texel (i, j) covers light-plane coords origin + (j, i) * texel."""

    basis: np.ndarray  # (3, 3) rows right, up, forward
    origin: np.ndarray  # (3,) world point of texel (0, 0)'s corner on the near plane
    texel: float
    depth: np.ndarray  # (R, R) distance along forward from the near plane, inf where no mesh

    def lookup(self, points: np.ndarray, bias: float = None, pcf: int = 1) -> np.ndarray:
        """Fraction in [0, 1] of the (2*pcf+1)^2 texels around each (N, 3) world point that shadow it."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        bias = 2.0 * self.texel if bias is None else bias
        res = self.depth.shape[0]
        local = (points - self.origin) @ self.basis.T
        ci = np.floor(local[:, 1] / self.texel).astype(np.int64)
        cj = np.floor(local[:, 0] / self.texel).astype(np.int64)
        result = np.zeros(len(points))
        near = (ci >= -pcf) & (ci < res + pcf) & (cj >= -pcf) & (cj < res + pcf)
        if not near.any():
            return result
        padded = np.pad(self.depth, pcf + 1, constant_values=np.inf)  # outside the map: no occluder
        ci, cj, d = ci[near] + pcf + 1, cj[near] + pcf + 1, local[near, 2] - bias
        total = np.zeros(len(ci))
        for di in range(-pcf, pcf + 1):
            for dj in range(-pcf, pcf + 1):
                total += d > padded[ci + di, cj + dj]
        result[near] = total / (2 * pcf + 1) ** 2
        return result


def build_shadow_map(meshes: Sequence, to_light, resolution: int = 512, rc_scene=None) -> ShadowMap:
    """Ray cast the meshes along the light: the map covers their light-plane footprint plus a 2-texel margin.

    Receivers outside the footprint cannot be shadowed by these meshes, so nothing beyond it is needed.
    """
    if not meshes:
        raise ValueError("build_shadow_map needs at least one mesh")
    basis = light_basis(to_light)
    verts = np.concatenate([m.world_vertices() for m in meshes])
    local = verts @ basis.T
    lo, hi = local.min(axis=0), local.max(axis=0)
    extent = float(max(hi[0] - lo[0], hi[1] - lo[1], 1e-6))
    texel = extent / (resolution - 4)
    near = lo[2] - 0.01 * extent - 1e-4
    origin = basis[0] * (lo[0] - 2 * texel) + basis[1] * (lo[1] - 2 * texel) + basis[2] * near
    jj, ii = np.meshgrid(np.arange(resolution) + 0.5, np.arange(resolution) + 0.5)
    starts = origin + (jj.reshape(-1, 1) * texel) * basis[0] + (ii.reshape(-1, 1) * texel) * basis[1]
    rc_scene = rc_scene if rc_scene is not None else raycasting_scene(meshes)
    hits = cast(rc_scene, starts, np.broadcast_to(basis[2], starts.shape))
    depth = hits["t_hit"].astype(np.float64).reshape(resolution, resolution)
    return ShadowMap(basis=basis, origin=origin, texel=texel, depth=depth)


def camera_ray_directions(camera: Camera) -> np.ndarray:
    """(H, W, 3) world-space ray directions through pixel centres, scaled so each has camera z = 1."""
    u = (np.arange(camera.width) + 0.5 - camera.cx) / camera.fx
    v = (np.arange(camera.height) + 0.5 - camera.cy) / camera.fy
    uu, vv = np.meshgrid(u, v)
    local = np.stack([uu, vv, np.ones_like(uu)], axis=-1)
    rot = camera.camera_to_world.double().numpy()[:3, :3]
    return local @ rot.T


def backproject(camera: Camera, depth: np.ndarray) -> np.ndarray:
    """(H, W, 3) world points at camera-z `depth` (H, W) along each pixel's ray."""
    center = camera.center.double().numpy()
    return center + camera_ray_directions(camera) * np.asarray(depth, dtype=np.float64)[..., None]
