"""One compositor for splats, a radiance field and meshes, front to back per pixel by camera depth.

Along each pixel's ray: field samples in front of the splats' expected depth, then the splats (premultiplied, with
their alpha), then the field samples behind them, then the mesh colour or the background. A mesh terminates the
ray at its depth: field samples stop there, and splats behind it are hidden (splats nearly transparent at a pixel,
alpha < LOW_ALPHA, have no trustworthy depth: there the mesh and field are drawn as if no splat were in front).
With field_mode "background" the field is drawn only behind the splats (sky / far field).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch

from .camera import Camera
from .field_render import camera_rays, render_field_rays
from .render import RenderOutput, render

LOW_ALPHA = 0.02  # as render.composite: splat pixels less opaque than this have no trustworthy depth

# shade(rgb premultiplied (N, 3), alpha (N,), camera z (N,), pixel ids (N,)) -> darkened rgb (shadows)
Shade = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _layers(scene):
    """(splats or None, field or None, field mode) of a hybrid scene, a field alone or splats alone."""
    if hasattr(scene, "render_rays"):
        return None, scene, "volume"
    if hasattr(scene, "field") and hasattr(scene, "splats"):
        return scene.visible_splats, scene.visible_field, scene.field_mode
    return scene, None, "volume"


@torch.no_grad()
def render_layers(
    scene, camera: Camera, background: Optional[Union[Sequence[float], torch.Tensor]] = None, backend: str = "auto",
    sh_degree: Optional[int] = None, mesh=None, shade: Optional[Shade] = None,
) -> RenderOutput:
    """Composite `scene`'s layers (see module docstring) and an optional `MeshRender` (render.composite).

    Returns rgb on `background`, alpha (coverage by anything), expected camera z (weights of every layer).
    `shade` darkens each layer's premultiplied colour at its own depth (mesh shadows falling on splats and field).
    """
    splats, field, mode = _layers(scene)
    h, w = camera.height, camera.width
    n = h * w
    device = field.table.device if field is not None else torch.device("cpu")
    bg = torch.zeros(3) if background is None else torch.as_tensor(background, dtype=torch.float32).cpu()
    pix = torch.arange(n)
    zero3, zero1 = torch.zeros(n, 3), torch.zeros(n)
    # splats: premultiplied colour, alpha, expected z
    s_rgb, s_a, s_z = zero3, zero1, zero1
    if splats is not None:
        out = render(splats, camera, background=torch.zeros(3), backend=backend, sh_degree=sh_degree)
        s_rgb, s_a, s_z = out.rgb.reshape(n, 3).float().cpu(), out.alpha.reshape(n).float().cpu(), out.depth.reshape(n).float().cpu()
    # mesh: colour and z (inf where none)
    m_rgb, m_z = zero3, torch.full((n,), float("inf"))
    if mesh is not None:
        m_rgb = torch.from_numpy(np.ascontiguousarray(mesh.rgb.reshape(n, 3))).float()
        m_z = torch.from_numpy(np.ascontiguousarray(mesh.depth.reshape(n))).float()
    hit = torch.isfinite(m_z)
    trusted = s_a >= LOW_ALPHA
    splat_seen = trusted & ~(hit & (m_z <= s_z))  # a mesh in front of the splats hides them
    s_rgb = torch.where(splat_seen[:, None] | ~trusted[:, None], s_rgb, zero3)
    s_a = torch.where(splat_seen | ~trusted, s_a, zero1)
    if hit.any():  # faint splats over a mesh: the mesh wins (as render.composite)
        s_rgb = torch.where((hit & ~trusted)[:, None], zero3, s_rgb)
        s_a = torch.where(hit & ~trusted, zero1, s_a)
    if shade is not None and splats is not None:
        s_rgb = shade(s_rgb, s_a, s_z, pix)
    # field: a front segment up to the splats (volume mode), a back segment from there to the mesh / far plane
    f1_rgb, f1_a, f1_z, f2_rgb, f2_a, f2_z = zero3, zero1, zero1, zero3, zero1, zero1
    if field is not None:
        origins, dirs, zscale = camera_rays(camera, device=device)
        zs = zscale.cpu()
        near = torch.full((n,), camera.near)
        end = torch.minimum(torch.full((n,), min(camera.far, 1e6)), m_z)
        split = torch.where(splat_seen, s_z, end) if mode == "volume" else near
        split = torch.minimum(torch.maximum(split, near), end)
        segments = []
        for a, b in ((near, split), (split, end)):
            seg = render_field_rays(field, origins, dirs, (a * zs).to(device), (b * zs).to(device))
            rgb, alpha = seg["rgb"].float().cpu(), seg["opacity"].float().cpu()
            z = seg["depth"].float().cpu() / zs
            if shade is not None:
                rgb = shade(rgb, alpha, torch.where(alpha > 0, z / alpha.clamp(min=1e-10), zero1), pix)
            segments.append((rgb, alpha, z))
        (f1_rgb, f1_a, f1_z), (f2_rgb, f2_a, f2_z) = segments
    tail = torch.where(hit[:, None], m_rgb, bg.expand(n, 3))
    t1, ts, t2 = 1 - f1_a, 1 - s_a, 1 - f2_a
    rgb = f1_rgb + t1[:, None] * (s_rgb + ts[:, None] * (f2_rgb + t2[:, None] * tail))
    remaining = t1 * ts * t2
    alpha = 1 - remaining * (~hit).float()
    mesh_z = torch.where(hit, m_z, zero1)
    depth_sum = f1_z + t1 * (s_a * s_z + ts * (f2_z + t2 * mesh_z * hit.float()))
    depth = torch.where(alpha > 0, depth_sum / alpha.clamp(min=1e-10), zero1)
    meta = {"splat_alpha": s_a.reshape(h, w, 1), "field_alpha": (1 - t1 * t2).reshape(h, w, 1)}
    return RenderOutput(rgb.clamp(0, 1).reshape(h, w, 3), alpha.reshape(h, w, 1), depth.reshape(h, w, 1), meta)
