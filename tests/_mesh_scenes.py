"""Procedural scenes for mesh tests: axis-aligned splat planes, a light-probe shell and an analytic slab field."""

from __future__ import annotations

import math

import numpy as np
import torch

from scenes import GaussianScene
from scenes.gaussian_scene import num_sh_coeffs, rgb_to_sh_dc


def gaussians(means, colors, scales, opacity=0.99) -> GaussianScene:
    """A degree-0 GaussianScene from (N, 3) means, colours in [0, 1] and (N, 3) axis-aligned scales."""
    means = torch.as_tensor(np.asarray(means), dtype=torch.float32)
    n = len(means)
    colors = torch.as_tensor(np.broadcast_to(np.asarray(colors, dtype=np.float32), (n, 3)).copy())
    scales = torch.as_tensor(np.broadcast_to(np.asarray(scales, dtype=np.float32), (n, 3)).copy())
    opacity = torch.as_tensor(np.broadcast_to(np.asarray(opacity, dtype=np.float32), (n,)).copy())
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    params = {
        "means": means,
        "quats": quats,
        "log_scales": torch.log(scales),
        "opacity_logits": torch.log(opacity / (1 - opacity)),
        "sh_dc": rgb_to_sh_dc(colors)[:, None, :],
        "sh_rest": torch.zeros(n, num_sh_coeffs(0) - 1, 3),
    }
    return GaussianScene(params, sh_degree=0)


def splat_plane(axis: int, offset: float, size=(2.0, 2.0), center=(0.0, 0.0), spacing=0.08, color=(0.2, 0.8, 0.3), opacity=0.99):
    """A square grid of flat Gaussians in the plane `coordinate[axis] = offset` (thin along `axis`)."""
    others = [i for i in range(3) if i != axis]
    us = np.arange(-size[0] / 2, size[0] / 2 + 1e-9, spacing) + center[0]
    vs = np.arange(-size[1] / 2, size[1] / 2 + 1e-9, spacing) + center[1]
    uu, vv = np.meshgrid(us, vs)
    means = np.zeros((uu.size, 3))
    means[:, others[0]], means[:, others[1]], means[:, axis] = uu.ravel(), vv.ravel(), offset
    scales = np.full(3, spacing * 0.8)
    scales[axis] = 1e-3
    return means, scales, color, opacity


def scene_of(*planes) -> GaussianScene:
    means = np.concatenate([p[0] for p in planes])
    scales = np.concatenate([np.broadcast_to(p[1], (len(p[0]), 3)) for p in planes])
    colors = np.concatenate([np.broadcast_to(p[2], (len(p[0]), 3)) for p in planes])
    opac = np.concatenate([np.full(len(p[0]), p[3]) for p in planes])
    return gaussians(means, colors, scales, opac)


def probe_scene(light_dir, seed: int = 0) -> GaussianScene:
    """A dim grey shell of radius 3 around the origin plus a bright white cluster toward `light_dir`."""
    rng = np.random.default_rng(seed)
    shell = rng.normal(size=(600, 3))
    shell = shell / np.linalg.norm(shell, axis=1, keepdims=True) * 3.0
    d = np.asarray(light_dir, dtype=np.float64) / np.linalg.norm(light_dir)
    cluster = d * 2.7 + rng.normal(scale=0.12, size=(40, 3))
    means = np.concatenate([shell, cluster])
    colors = np.concatenate([np.full((600, 3), 0.12), np.full((40, 3), 1.0)])
    scales = np.concatenate([np.full((600, 3), 0.25), np.full((40, 3), 0.08)])
    return gaussians(means, colors, scales, 0.95)


def angle_deg(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return math.degrees(math.acos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1)))


BLUE = (0.1, 0.2, 0.9)


class SlabField:
    """Density `sigma` and colour `color` inside the box z0 <= z <= z1 (and xlim in x): RadianceField's ray
    interface, in closed form."""

    def __init__(self, z0, z1, sigma=60.0, color=BLUE, xlim=(-1e3, 1e3)):
        self.lo = torch.tensor([xlim[0], -1e3, z0])
        self.hi = torch.tensor([xlim[1], 1e3, z1])
        self.sigma, self.color = sigma, torch.tensor(color, dtype=torch.float32)
        self.table = torch.zeros(1)
        self.base_step = 0.01

    def render_rays(self, origins, dirs, t_near, t_far, jitter=None, density_only=False):
        d = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
        ta, tb = (self.lo - origins) / d, (self.hi - origins) / d
        a = torch.maximum(t_near, torch.minimum(ta, tb).amax(dim=1))
        b = torch.minimum(t_far, torch.maximum(ta, tb).amin(dim=1))
        length = (b - a).clamp(min=0)
        opacity = 1 - torch.exp(-self.sigma * length)
        rgb = torch.zeros(len(dirs), 3) if density_only else opacity[:, None] * self.color
        return {"rgb": rgb, "opacity": opacity, "depth": opacity * (a + b) / 2, "samples": 0}

    def world_center_radius(self):
        """Where the viewer frames its first camera: the slab's centre (x, z; y = 0) and half its x/z extent."""
        lo, hi = self.lo.clamp(-50, 50), self.hi.clamp(-50, 50)
        center = (lo + hi) / 2
        center[1] = 0.0
        return center, float((hi - lo)[[0, 2]].norm() / 2)
