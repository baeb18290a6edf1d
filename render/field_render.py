"""Radiance fields through a camera: pixel rays, chunked volume rendering into a `RenderOutput`."""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch

from .camera import Camera

CHUNK_RAYS = 1 << 15


def camera_rays(camera: Camera, pixels: Optional[torch.Tensor] = None, device=None) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(origins, unit directions, zscale) of pixel-centre rays, all pixels row-major or the flat `pixels` indices.

    zscale = |direction with camera z 1|: a point at distance t along the ray has camera z = t / zscale.
    """
    device = device or torch.device("cpu")
    if pixels is None:
        pixels = torch.arange(camera.width * camera.height, device=device)
    pixels = pixels.to(device)
    u = (pixels % camera.width).float() + 0.5
    v = torch.div(pixels, camera.width, rounding_mode="floor").float() + 0.5
    local = torch.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, torch.ones_like(u)], dim=1)
    c2w = camera.camera_to_world.to(device)
    dirs = local @ c2w[:3, :3].T
    zscale = dirs.norm(dim=1)
    return c2w[:3, 3].expand_as(dirs), dirs / zscale[:, None], zscale


def render_field_rays(field, origins, dirs, t_near, t_far, chunk: int = CHUNK_RAYS, **kwargs):
    """`field.render_rays` over chunks of rays (bounded memory); returns the concatenated dict."""
    parts = [field.render_rays(origins[s:s + chunk], dirs[s:s + chunk], t_near[s:s + chunk], t_far[s:s + chunk], **kwargs)
             for s in range(0, len(origins), chunk)]
    if not parts:
        z = torch.zeros(0, device=origins.device)
        return {"rgb": z.reshape(0, 3), "opacity": z, "depth": z, "samples": 0}
    out = {k: torch.cat([p[k] for p in parts]) for k in ("rgb", "opacity", "depth")}
    out["samples"] = sum(p["samples"] for p in parts)
    return out


def render_field(field, camera: Camera, background: Optional[Union[Sequence[float], torch.Tensor]] = None,
                 far: Optional[torch.Tensor] = None):
    """Render a radiance field from `camera`: a `RenderOutput` (rgb on `background`, alpha, expected camera z).

    `far` (H, W) camera-z depths, optional: rays stop there (meshes terminate them)."""
    from .render import RenderOutput

    device = field.table.device
    origins, dirs, zscale = camera_rays(camera, device=device)
    n = len(origins)
    t_near = torch.full((n,), camera.near, device=device) * zscale
    t_far = torch.full((n,), min(camera.far, 1e6), device=device) * zscale
    if far is not None:
        t_far = torch.minimum(t_far, far.reshape(-1).to(device).float() * zscale)
    out = render_field_rays(field, origins, dirs, t_near, t_far)
    h, w = camera.height, camera.width
    bg = torch.zeros(3, device=device) if background is None else torch.as_tensor(background, dtype=torch.float32, device=device)
    alpha = out["opacity"]
    rgb = out["rgb"] + (1 - alpha)[:, None] * bg
    depth = torch.where(alpha > 0, out["depth"] / zscale / alpha.clamp(min=1e-10), torch.zeros_like(alpha))
    meta = {"samples": out["samples"], "premultiplied": out["rgb"].reshape(h, w, 3)}
    return RenderOutput(rgb.reshape(h, w, 3), alpha.reshape(h, w, 1), depth.reshape(h, w, 1), meta)
