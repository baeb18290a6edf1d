"""Meshes + splats: ray cast meshes into colour and camera-z depth, depth composite, and mesh shadows on splats.

Mesh colours: texture (bilinear at the interpolated uv) or vertex colours via barycentrics, Lambert shaded
(`ambient + intensity * max(n . l, 0)`, two-sided). Composite per pixel: the mesh wins where it is in front
of the splats' expected depth or the splats are nearly transparent; behind, it shows through the splats'
transparency: `out = splat_premultiplied + (1 - alpha) * mesh`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .camera import Camera
from .render import RenderOutput, render
from .shadows import ShadowMap, backproject, build_shadow_map, camera_ray_directions, cast, raycasting_scene, unit

# Splat pixels less opaque than this have no trustworthy depth: a mesh there is drawn over them.
LOW_ALPHA = 0.02


@dataclass(frozen=True)
class Light:
    """A directional light: `direction` points from the scene toward the light (z up by default)."""

    direction: Tuple[float, float, float] = (0.3, 0.2, 1.0)
    intensity: float = 0.8
    ambient: float = 0.35
    shadow_strength: float = 0.6

    @property
    def unit_direction(self) -> np.ndarray:
        return unit(self.direction)

    @staticmethod
    def from_angles(azimuth_deg: float, elevation_deg: float, **kwargs) -> "Light":
        """Light from azimuth (about +z, from +x) and elevation (above the xy plane), in degrees."""
        return Light(direction=angles_to_direction(azimuth_deg, elevation_deg), **kwargs)


def angles_to_direction(azimuth_deg: float, elevation_deg: float) -> Tuple[float, float, float]:
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))


def direction_to_angles(direction) -> Tuple[float, float]:
    """(azimuth, elevation) in degrees of a direction (inverse of `angles_to_direction`)."""
    d = unit(direction)
    return math.degrees(math.atan2(d[1], d[0])), math.degrees(math.asin(float(np.clip(d[2], -1, 1))))


@dataclass
class MeshRender:
    rgb: np.ndarray  # (H, W, 3) shaded colour, 0 where no mesh
    depth: np.ndarray  # (H, W) camera-axis z, inf where no mesh
    normals: np.ndarray = field(repr=False, default=None)  # (H, W, 3) world normals facing the camera

    @property
    def mask(self) -> np.ndarray:
        return np.isfinite(self.depth)


def rasterize_meshes(
    meshes: Sequence, camera: Camera, light: Light = Light(), shadow_map: Optional[ShadowMap] = None, rc_scene=None
) -> MeshRender:
    """Ray cast `meshes` from `camera` (CPU, open3d): shaded colour and camera-z depth per pixel."""
    h, w = camera.height, camera.width
    rgb = np.zeros((h, w, 3))
    if not meshes:
        return MeshRender(rgb, np.full((h, w), np.inf), np.zeros((h, w, 3)))
    rc_scene = rc_scene if rc_scene is not None else raycasting_scene(meshes)
    dirs = camera_ray_directions(camera).reshape(-1, 3)
    hits = cast(rc_scene, camera.center.double().numpy(), dirs)
    t = hits["t_hit"].astype(np.float64)  # rays have camera z = 1, so t is camera z
    hit = np.isfinite(t)
    normals = np.zeros((h * w, 3))
    if hit.any():
        geo, prim = hits["geometry_ids"][hit].astype(np.int64), hits["primitive_ids"][hit].astype(np.int64)
        bary_uv = hits["primitive_uvs"][hit].astype(np.float64)
        bary = np.stack([1 - bary_uv[:, 0] - bary_uv[:, 1], bary_uv[:, 0], bary_uv[:, 1]], axis=1)
        colour = np.zeros((len(geo), 3))
        for gid, mesh in enumerate(meshes):
            sel = geo == gid
            if sel.any():
                colour[sel] = _surface_colour(mesh, prim[sel], bary[sel])
        n = hits["primitive_normals"][hit].astype(np.float64)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        n[(n * dirs[hit]).sum(axis=1) > 0] *= -1  # two-sided: face the camera
        normals[hit] = n
        ndotl = np.clip(n @ light.unit_direction, 0.0, None)
        if shadow_map is not None:  # self-shadowing, offset along the normal against acne
            points = camera.center.double().numpy() + dirs[hit] * t[hit, None] + n * 2.0 * shadow_map.texel
            ndotl = ndotl * (1.0 - shadow_map.lookup(points))
        rgb.reshape(-1, 3)[hit] = np.clip(colour * (light.ambient + light.intensity * ndotl)[:, None], 0.0, 1.0)
    return MeshRender(rgb, t.reshape(h, w), normals.reshape(h, w, 3))


def _surface_colour(mesh, prim: np.ndarray, bary: np.ndarray) -> np.ndarray:
    from scenes.meshes import sample_texture  # data-only helper; scenes never import render

    corners = mesh.faces[prim]  # (N, 3) vertex ids
    if mesh.texture is not None:
        uv = (mesh.uv[corners] * bary[..., None]).sum(axis=1)
        return sample_texture(mesh.texture, uv)
    vc = mesh.vertex_rgb()
    return (vc[corners] * bary[..., None]).sum(axis=1)


def composite_images(
    splat_rgb: np.ndarray,
    splat_alpha: np.ndarray,
    splat_depth: np.ndarray,
    mesh: MeshRender,
    background: Sequence[float] = (0.0, 0.0, 0.0),
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth composite of a splat render ((H, W, 3), (H, W, 1), (H, W, 1) numpy) with a `MeshRender`."""
    a = splat_alpha[..., 0]
    bg = np.asarray(background, dtype=np.float64)
    premult = splat_rgb - (1.0 - a)[..., None] * bg
    hit = mesh.mask
    front = hit & ((a < LOW_ALPHA) | (mesh.depth <= splat_depth[..., 0]))
    behind = hit & ~front
    rgb = splat_rgb.astype(np.float64).copy()
    rgb[front] = mesh.rgb[front]
    rgb[behind] = premult[behind] + (1.0 - a[behind])[:, None] * mesh.rgb[behind]
    alpha = np.where(hit, 1.0, a)[..., None]
    depth = np.where(front, mesh.depth, splat_depth[..., 0])[..., None]
    return rgb, alpha, depth


def shadow_splats(
    rgb: np.ndarray,
    alpha: np.ndarray,
    depth: np.ndarray,
    camera: Camera,
    shadow_map: ShadowMap,
    strength: float,
    background: Sequence[float] = (0.0, 0.0, 0.0),
    min_alpha: float = 0.05,
    pcf: int = 1,
) -> Tuple[np.ndarray, np.ndarray]:
    """Darken splat pixels whose back-projected surface point is shadowed; returns (rgb, shadow (H, W) in [0, 1]).

    Only the splats' own contribution is darkened (`rgb - (1 - alpha) * background`), by `1 - strength * shadow`.
    """
    a = alpha[..., 0]
    shadow = np.zeros(a.shape)
    covered = a > min_alpha
    if strength <= 0 or not covered.any():
        return rgb, shadow
    points = backproject(camera, depth[..., 0])[covered]
    shadow[covered] = shadow_map.lookup(points, pcf=pcf)
    dark = shadow > 0
    if not dark.any():
        return rgb, shadow
    bg = np.asarray(background, dtype=np.float64)
    out = rgb.copy()
    empty = (1.0 - a[dark])[:, None] * bg
    out[dark] = (rgb[dark] - empty) * (1.0 - strength * shadow[dark])[:, None] + empty
    return out, shadow


def composite(
    scene,
    camera: Camera,
    meshes: Sequence,
    light: Light = Light(),
    background: Sequence[float] = (0.0, 0.0, 0.0),
    backend: str = "auto",
    sh_degree: Optional[int] = None,
    shadows: bool = True,
    self_shadow: bool = True,
    shadow_resolution: int = 512,
) -> RenderOutput:
    """Render splats and meshes together (see module docstring); shadows of the meshes fall on splats and meshes.

    Returns a `RenderOutput` (torch, CPU) with rgb, alpha (1 where a mesh is), depth; `meta` holds timings (ms)
    and the splat shadow mask.
    """
    background = tuple(float(c) for c in background)
    if hasattr(scene, "render_rays") or hasattr(scene, "field"):  # a radiance field, alone or with splats
        from .field_meshes import composite_with_field

        return composite_with_field(scene, camera, meshes, light, background, backend, sh_degree, shadows,
                                    self_shadow, shadow_resolution)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = render(scene, camera, background=background, backend=backend, sh_degree=sh_degree)
    rgb = out.rgb.detach().double().cpu().numpy()
    alpha = out.alpha.detach().double().cpu().numpy()
    depth = out.depth.detach().double().cpu().numpy()
    t1 = time.perf_counter()
    meta = {"splat_ms": (t1 - t0) * 1e3}
    if not meshes:
        return RenderOutput(out.rgb.cpu(), out.alpha.cpu(), out.depth.cpu(), meta)
    rc_scene = raycasting_scene(meshes)
    smap = None
    shadow = np.zeros(alpha.shape[:2])
    if shadows and light.shadow_strength > 0:
        smap = build_shadow_map(meshes, light.unit_direction, shadow_resolution, rc_scene=rc_scene)
        rgb, shadow = shadow_splats(rgb, alpha, depth, camera, smap, light.shadow_strength, background)
    t2 = time.perf_counter()
    mesh = rasterize_meshes(meshes, camera, light, smap if self_shadow else None, rc_scene=rc_scene)
    t3 = time.perf_counter()
    rgb, alpha, depth = composite_images(rgb, alpha, depth, mesh, background)
    meta.update(shadow_ms=(t2 - t1) * 1e3, mesh_ms=(t3 - t2) * 1e3, composite_ms=(time.perf_counter() - t3) * 1e3)
    meta["shadow"] = torch.from_numpy(shadow).float()
    as_t = lambda x: torch.from_numpy(np.ascontiguousarray(x)).float()  # noqa: E731
    return RenderOutput(as_t(np.clip(rgb, 0, 1)), as_t(alpha), as_t(depth), meta)


def mesh_view(mesh_paths: Sequence = (), layout=None, fallback=None, shadow_resolution: int = 512):
    """A `view(scene, camera, background, backend) -> rgb` for batch renders: `composite` with meshes loaded from
    files (at their own coordinates) and/or a scene-edit JSON `layout` (see `scenes.meshes.load_mesh_layout`).

    Returns `fallback` unchanged when there are no meshes.
    """
    from scenes.meshes import load_mesh, load_mesh_layout

    meshes = [load_mesh(p) for p in mesh_paths]
    light = Light()
    if layout is not None:
        extra, light_doc = load_mesh_layout(layout)
        meshes += extra
        unknown = set(light_doc) - {"direction", "intensity", "ambient", "shadow_strength"}
        if unknown:
            raise ValueError(f"{layout}: unknown light fields {sorted(unknown)}")
        try:
            light = Light(**{k: (tuple(float(x) for x in v) if k == "direction" else float(v)) for k, v in light_doc.items()})
            light.unit_direction
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{layout}: bad light: {exc}") from exc
    if not meshes:
        return fallback

    def view(scene, camera: Camera, background=None, backend: str = "auto") -> torch.Tensor:
        bg = (0.0, 0.0, 0.0) if background is None else background
        # no mesh self-shadowing: the browser's meshes are not self-shadowed either, so renders match the viewer
        return composite(scene, camera, meshes, light, bg, backend, self_shadow=False, shadow_resolution=shadow_resolution).rgb

    return view
