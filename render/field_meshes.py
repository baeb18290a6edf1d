"""Meshes in a radiance field (after DMRF, simplified to direct light): the mesh shadow map darkens field and splat
samples at their depth, and the field's density shadows the meshes (shadow rays from each mesh pixel to the light
through the field: direct light times the field's transmittance)."""

from __future__ import annotations

import time
from typing import Optional, Sequence

import numpy as np
import torch

from .camera import Camera
from .field_render import render_field_rays
from .hybrid import _layers, render_layers
from .render import RenderOutput
from .shadows import backproject, build_shadow_map, camera_ray_directions, raycasting_scene


def field_transmittance_to_light(field, points: np.ndarray, to_light: np.ndarray, offset: float) -> np.ndarray:
    """(N,) transmittance of the field from world `points` towards the light (density-only shadow rays)."""
    if len(points) == 0:
        return np.ones(0)
    device = field.table.device
    o = torch.from_numpy(points + offset * to_light).float().to(device)
    d = torch.from_numpy(np.broadcast_to(to_light, points.shape).copy()).float().to(device)
    n = len(points)
    far = torch.full((n,), 1e6, device=device)
    with torch.no_grad():
        out = render_field_rays(field, o, d, torch.zeros(n, device=device), far, density_only=True)
    return (1.0 - out["opacity"].double().cpu().numpy()).clip(0.0, 1.0)


def field_light_factor(field, points: np.ndarray, normals: np.ndarray, light) -> np.ndarray:
    """(N,) factor that turns surface points' Lambert light (ambient + intensity n.l) into the light with the direct
    part attenuated by the field's transmittance towards the light: (ambient + intensity n.l T) / (ambient +
    intensity n.l); 1 where unlit. The one formula of sf-render's per-pixel pass and the viewer's per-vertex one."""
    ndotl = np.clip(normals @ light.unit_direction, 0.0, None)
    trans = field_transmittance_to_light(field, points, light.unit_direction, offset=1e-3 + 2 * field.base_step)
    lit = light.ambient + light.intensity * ndotl
    return np.where(lit > 0, (light.ambient + light.intensity * ndotl * trans) / np.maximum(lit, 1e-12), 1.0)


def shade_mesh_by_field(mesh, field, camera: Camera, light) -> None:
    """Scale each mesh pixel's direct light by the field's transmittance towards the light (in place)."""
    hit = mesh.mask
    if not hit.any():
        return
    points = backproject(camera, np.where(hit, mesh.depth, 0.0))[hit]
    mesh.rgb[hit] = mesh.rgb[hit] * field_light_factor(field, points, mesh.normals[hit], light)[:, None]


def field_vertex_shading(mesh_asset, field, light) -> np.ndarray:
    """(V,) field_light_factor at a MeshAsset's vertices (its pose applied): the viewer, where the browser lights
    the meshes, bakes it into their vertex colours so the field's density shadows them as in sf-render."""
    import trimesh

    local = trimesh.Trimesh(mesh_asset.vertices, mesh_asset.faces, process=False).vertex_normals
    linear = mesh_asset.transform[:3, :3]
    normals = local @ np.linalg.inv(linear)  # normals transform by the inverse transpose
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return field_light_factor(field, mesh_asset.world_vertices(), normals, light)


def composite_with_field(
    scene, camera: Camera, meshes: Sequence, light, background=(0.0, 0.0, 0.0), backend: str = "auto",
    sh_degree: Optional[int] = None, shadows: bool = True, self_shadow: bool = True, shadow_resolution: int = 512,
) -> RenderOutput:
    """`render.composite.composite` for scenes with a radiance field (alone or with splats)."""
    from .composite import rasterize_meshes

    t0 = time.perf_counter()
    _, field, _ = _layers(scene)
    mesh, shade, meta = None, None, {}
    if meshes:
        rc_scene = raycasting_scene(meshes)
        smap = None
        if shadows and light.shadow_strength > 0:
            smap = build_shadow_map(meshes, light.unit_direction, shadow_resolution, rc_scene=rc_scene)
            rays = torch.from_numpy(camera_ray_directions(camera).reshape(-1, 3)).double()
            center = camera.center.double()

            def shade(rgb, alpha, z, pix):
                covered = (alpha > 0.05) & (z > 0)  # as shadow_splats (the viewer's shadow pass)
                if not bool(covered.any()):
                    return rgb
                points = (center + rays[pix[covered]] * z[covered, None].double()).numpy()
                dark = torch.from_numpy(smap.lookup(points)).float()
                out = rgb.clone()
                out[covered] = rgb[covered] * (1 - light.shadow_strength * dark)[:, None]
                return out
        mesh = rasterize_meshes(meshes, camera, light, smap if self_shadow else None, rc_scene=rc_scene)
        if field is not None and shadows:
            shade_mesh_by_field(mesh, field, camera, light)
    meta["mesh_ms"] = (time.perf_counter() - t0) * 1e3
    out = render_layers(scene, camera, background, backend, sh_degree, mesh=mesh, shade=shade)
    out.meta.update(meta)
    return out
