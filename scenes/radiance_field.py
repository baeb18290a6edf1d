"""A radiance field (instant-ngp style): multi-resolution hash-grid encoding, a density MLP and a view-dependent
colour MLP, an occupancy grid for empty-space skipping, and a box or mip-NeRF 360 contraction for the space.

Rays are rendered with the native marcher and compositor (`cuda_rasterizer.field_ops`). The field lives in its own
frame; `field_from_world` (4x4, a similarity) places it in the world, and edits (crop box, erased boxes) act on the
density in the field frame (`scenes.field_edits`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from cuda_rasterizer import field_ops

from .field_edits import FieldEdits


@dataclass
class FieldConfig:
    """Hash grid, MLPs, occupancy grid and marching (DESIGN.md section 10; CPU-sized defaults noted)."""

    levels: int = 16
    features: int = 2
    log2_table: int = 19
    base_res: int = 16
    finest_res: int = 1024
    """Finest grid resolution over the field's unit cube (instant-ngp: 2048 x extent; 1024 suits 200-800 px images)."""
    hidden: int = 64
    geo_features: int = 16
    """Density MLP outputs: log-density first, all of them feed the colour MLP."""
    grid_res: int = 64
    """Occupancy grid cells per axis (instant-ngp: 128; 64 costs 1/8 of the updates on a CPU)."""
    march_steps: int = 512
    """Marching steps across the box diagonal (box) or the unit ball's diameter x sqrt(3) (contraction)."""
    cone: float = 1.0 / 256
    """Contraction only: steps grow as t x cone (instant-ngp's cone tracing) up to `dt_max_ratio` x the base step."""
    dt_max_ratio: float = 64.0
    max_samples: int = 1024
    """Most samples kept per ray."""

    def __post_init__(self) -> None:
        checks = {"levels": (1, 32), "features": (1, 8), "log2_table": (4, 30), "base_res": (1, 1 << 16),
                  "finest_res": (self.base_res, 1 << 20), "hidden": (1, 1024), "geo_features": (1, 256),
                  "grid_res": (4, 1024), "march_steps": (8, 1 << 16), "max_samples": (1, 1 << 16)}
        for name, (low, high) in checks.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"--nerf.net.{name.replace('_', '-')} must be in [{low}, {high}], got {value}")
        if not (self.cone >= 0 and self.dt_max_ratio >= 1):
            raise ValueError(f"--nerf.net.cone must be >= 0 and --nerf.net.dt-max-ratio >= 1, got {self.cone}, {self.dt_max_ratio}")

    def table_bytes(self) -> int:
        """Bytes of the hash tables (float32) plus Adam's two moments."""
        _, offsets = field_ops.hash_grid_levels(self.levels, self.log2_table, self.base_res, self.finest_res)
        return int(offsets[-1]) * self.features * 4 * 3


class FieldTooLargeError(MemoryError, ValueError):
    """The field's tables would not fit in memory (a ValueError too, so the CLIs print it as one line)."""


def check_memory(config: FieldConfig) -> None:
    """Refuse a hash table / occupancy grid the machine cannot hold, saying how much it needs."""
    need = config.table_bytes() + config.grid_res**3 * 5
    available = _available_memory()
    if available is not None and need > 0.8 * available:
        raise FieldTooLargeError(
            f"radiance field needs {need / 2**30:.2f} GiB for its hash tables (2^{config.log2_table} rows x "
            f"{config.levels} levels x {config.features} features, with Adam state) and {config.grid_res}^3 occupancy "
            f"grid, but only {available / 2**30:.2f} GiB is available; lower --nerf.net.log2-table or --nerf.net.grid-res"
        )


def _available_memory() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def sh_encode(d: torch.Tensor) -> torch.Tensor:
    """(N, 16) real spherical-harmonic basis up to degree 3 of unit directions (instant-ngp's SH degree 4)."""
    x, y, z = d.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    return torch.stack([
        torch.full_like(x, 0.28209479177387814),
        -0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x,
        1.0925484305920792 * x * y, -1.0925484305920792 * y * z, 0.94617469575755997 * zz - 0.31539156525251999,
        -1.0925484305920792 * x * z, 0.54627421529603959 * (xx - yy),
        0.59004358992664352 * y * (-3 * xx + yy), 2.8906114426405538 * x * y * z,
        0.45704579946446572 * y * (1 - 5 * zz), 0.3731763325901154 * z * (5 * zz - 3),
        0.45704579946446572 * x * (1 - 5 * zz), 1.4453057213202769 * z * (xx - yy),
        0.59004358992664352 * x * (-xx + 3 * yy),
    ], dim=-1)


INFERENCE_CHUNK = 8192  # samples per MLP call when rendering without gradients


class RadianceField(nn.Module):
    """Hash-grid radiance field. `space` is ("box", lo, hi) or ("contract", centre, radius) in the field frame."""

    KIND = "nerf"

    def __init__(self, config: FieldConfig, mode: int, space_params, seed: int = 0):
        super().__init__()
        self.config = config
        self.mode = int(mode)
        res, offsets = field_ops.hash_grid_levels(config.levels, config.log2_table, config.base_res, config.finest_res)
        self.register_buffer("grid_res_levels", res, persistent=False)
        self.register_buffer("grid_offsets", offsets, persistent=False)
        gen = torch.Generator().manual_seed(seed)
        table = (torch.rand(int(offsets[-1]), config.features, generator=gen) * 2 - 1) * 1e-4
        self.table = nn.Parameter(table)
        torch.manual_seed(seed)
        width = config.levels * config.features
        self.density_mlp = nn.Sequential(nn.Linear(width, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.geo_features))
        self.color_mlp = nn.Sequential(
            nn.Linear(config.geo_features + 16, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.hidden),
            nn.ReLU(), nn.Linear(config.hidden, 3),
        )
        self.register_buffer("space", torch.as_tensor(space_params, dtype=torch.float32).reshape(6))
        g = config.grid_res
        self.register_buffer("occupancy", torch.ones(g, g, g, dtype=torch.uint8))
        self.register_buffer("density_ema", torch.full((g, g, g), -1.0))
        self.edits = FieldEdits()

    # ----- geometry of the field's space ----------------------------------------------------------------------
    @property
    def base_step(self) -> float:
        """Length of one marching step in the field frame."""
        s = self.space
        if self.mode == field_ops.MODE_BOX:
            return float((s[3:6] - s[:3]).norm()) / self.config.march_steps
        return float(s[3]) * 2 * math.sqrt(3) / self.config.march_steps

    def world_center_radius(self) -> Tuple[torch.Tensor, float]:
        """Centre and radius of the field's box (or contraction's unit ball) in the world, after placement."""
        s = self.space.double().cpu()
        centre, radius = ((s[:3] + s[3:6]) / 2, float((s[3:6] - s[:3]).norm()) / 2) if self.mode == field_ops.MODE_BOX else (s[:3], float(s[3]))
        world_from_field = torch.linalg.inv(self.edits.field_from_world)
        scale = abs(float(torch.linalg.det(world_from_field[:3, :3]))) ** (1 / 3)
        return (world_from_field[:3, :3] @ centre + world_from_field[:3, 3]).float(), radius * scale

    def unit_points(self, points: torch.Tensor) -> torch.Tensor:
        """Field-frame points -> the encoding's unit cube."""
        return field_ops.map_points(points, self.mode, self.space)

    # ----- queries ------------------------------------------------------------------------------------------
    def _geo(self, points: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        u = self.unit_points(points).clamp(0, 1)
        feats = field_ops.hash_encode(u, self.table, self.grid_res_levels, self.grid_offsets)
        h = self.density_mlp(feats)
        sigma = torch.exp(h[:, 0].clamp(max=15.0))
        return self.edits.mask_density(points, sigma), h

    def density(self, points: torch.Tensor) -> torch.Tensor:
        """(N,) density at field-frame points (edits applied)."""
        if not torch.is_grad_enabled() and len(points) > INFERENCE_CHUNK:
            return torch.cat([self._geo(p)[0] for p in points.split(INFERENCE_CHUNK)])
        return self._geo(points)[0]

    def query(self, points: torch.Tensor, sh_dirs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(density (N,), colour (N, 3)) at field-frame points seen along directions encoded by `sh_encode`.

        Without autograd, evaluated in chunks of INFERENCE_CHUNK samples (the activations stay in cache)."""
        if not torch.is_grad_enabled() and len(points) > INFERENCE_CHUNK:
            parts = [self._query(p, s) for p, s in zip(points.split(INFERENCE_CHUNK), sh_dirs.split(INFERENCE_CHUNK))]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return self._query(points, sh_dirs)

    def _query(self, points: torch.Tensor, sh_dirs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        sigma, h = self._geo(points)
        rgb = torch.sigmoid(self.color_mlp(torch.cat([h, sh_dirs], dim=1)))
        return sigma, rgb

    # ----- rendering ------------------------------------------------------------------------------------------
    def render_rays(
        self, origins: torch.Tensor, dirs: torch.Tensor, t_near: torch.Tensor, t_far: torch.Tensor,
        jitter: Optional[torch.Tensor] = None, density_only: bool = False,
    ) -> Dict[str, torch.Tensor]:
        """Volume-render world rays (origins, unit dirs (R, 3); t in world units along each ray).

        Returns rgb (R, 3) (premultiplied: no background), opacity (R,), depth (R,) (sum of w t), samples (int).
        `density_only` skips the colour MLP (shadow rays): rgb is zero.
        """
        a, b = self.edits.field_from_world_rt(origins.device)
        o = origins @ a.T + b
        d = dirs @ a.T
        scale = d.norm(dim=1, keepdim=True).clamp(min=1e-12)  # field-frame length per world length
        d = d / scale
        t0, t1 = t_near * scale[:, 0], t_far * scale[:, 0]
        t0, t1 = self._clip(o, d, t0, t1)
        if jitter is None and not torch.is_grad_enabled():
            out = self._render_rounds(o, d, t0, t1, density_only)
            out["depth"] = out["depth"] / scale[:, 0]
            return out
        if jitter is None:
            jitter = torch.zeros_like(t0)
        offsets, t, dt, ray_ids = self._march(o, d, t0, t1, jitter, self.config.max_samples)
        points = o[ray_ids] + t[:, None] * d[ray_ids]
        if density_only:
            sigma = self.density(points)
            rgb = torch.zeros(len(t), 3, dtype=sigma.dtype, device=sigma.device)
        else:
            sigma, rgb = self.query(points, sh_encode(d)[ray_ids])
        out_rgb, opacity, depth = field_ops.composite(sigma, rgb, t, dt, offsets)
        return {"rgb": out_rgb, "opacity": opacity, "depth": depth / scale[:, 0], "samples": int(t.numel())}

    def _march(self, o, d, t0, t1, jitter, max_samples: int):
        step = self.base_step
        cone = 0.0 if self.mode == field_ops.MODE_BOX else self.config.cone
        return field_ops.march(o.detach(), d.detach(), t0.detach(), t1.detach(), jitter, self.occupancy, self.space,
                               self.mode, step, step * self.config.dt_max_ratio, cone, max_samples)

    def _render_rounds(self, o, d, t0, t1, density_only: bool, first: int = 16, t_min: float = 1e-4):
        """Inference: march and shade rays in rounds of growing sample counts, dropping rays once opaque (or
        done), so occluded samples are never evaluated. Field-frame t; the same result as one pass up to the
        transmittance cut-off."""
        n = len(o)
        rgb, opacity, depth = o.new_zeros(n, 3), o.new_zeros(n), o.new_zeros(n)
        trans = o.new_ones(n)
        alive = torch.arange(n, device=o.device)
        start, budget, total = t0.clone(), first, 0
        while len(alive):
            offsets, t, dt, ids = self._march(o[alive], d[alive], start[alive], t1[alive], torch.zeros(len(alive), device=o.device), budget)
            total += int(t.numel())
            if t.numel() == 0:
                break
            points = o[alive][ids] + t[:, None] * d[alive][ids]
            if density_only:
                sigma = self.density(points)
                colour = torch.zeros(len(t), 3, device=o.device, dtype=sigma.dtype)
            else:
                sigma, colour = self.query(points, sh_encode(d[alive])[ids])
            seg_rgb, seg_op, seg_depth = field_ops.composite(sigma, colour, t, dt, offsets, t_min)
            tr = trans[alive]
            rgb[alive] += tr[:, None] * seg_rgb
            depth[alive] += tr * seg_depth
            trans[alive] = tr * (1 - seg_op)
            counts = offsets[1:] - offsets[:-1]
            last = torch.where(counts > 0, offsets[1:] - 1, offsets[:-1]).clamp(max=len(t) - 1)
            start[alive] = torch.where(counts > 0, t[last] + 0.5 * dt[last], start[alive])
            keep = (counts >= budget) & (trans[alive] > t_min)
            alive = alive[keep]
            budget = min(budget * 2, self.config.max_samples)
        opacity = 1 - trans
        return {"rgb": rgb, "opacity": opacity, "depth": depth, "samples": total}

    def _clip(self, o, d, t0, t1):
        """Box mode: limit [t0, t1] to the box (rays that miss it get t0 = t1)."""
        if self.mode != field_ops.MODE_BOX:
            return t0, t1
        lo, hi = self.space[:3].to(o), self.space[3:6].to(o)
        inv = 1.0 / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
        ta, tb = (lo - o) * inv, (hi - o) * inv
        enter = torch.minimum(ta, tb).amax(dim=1)
        leave = torch.maximum(ta, tb).amin(dim=1)
        t0 = torch.maximum(t0, enter)
        t1 = torch.minimum(t1, leave)
        return t0, torch.maximum(t1, t0)

    # ----- occupancy grid ---------------------------------------------------------------------------------------
    def cell_points(self, cells: torch.Tensor, jitter: torch.Tensor) -> torch.Tensor:
        """Field-frame points of flat occupancy cells (x fastest) offset by `jitter` in [0, 1)^3."""
        g = self.config.grid_res
        ijk = torch.stack([cells % g, (cells // g) % g, cells // (g * g)], dim=1).float()
        u = (ijk + jitter) / g
        s = self.space
        if self.mode == field_ops.MODE_BOX:
            return s[:3] + u * (s[3:6] - s[:3])
        q = u * 4 - 2  # contracted coordinates; invert the contraction
        n = q.norm(dim=1, keepdim=True)
        outer = n > 1
        inv = torch.where(outer, 1.0 / (2 - n.clamp(1, 2 - 1e-3)) / n.clamp(min=1), torch.ones_like(n))
        return s[:3] + q * inv * s[3]

    @torch.no_grad()
    def update_occupancy(self, fraction: float = 0.25, decay: float = 0.95, generator: Optional[torch.Generator] = None) -> float:
        """Re-evaluate density at a random `fraction` of the cells (a jittered point each), keep max(decayed, new),
        and mark a cell occupied when its alpha over one base step exceeds 0.01 (capped at the mean). Returns the
        occupied fraction."""
        g = self.config.grid_res
        total = g**3
        count = max(1, int(total * fraction))
        # Drawn on the CPU generator (the same cells on every device, and checkpoints resume them), used where the
        # field lives.
        dev = self.table.device
        cells = torch.randperm(total, generator=generator)[:count] if count < total else torch.arange(total)
        cells = cells.to(dev)
        jitter = torch.rand(count, 3, generator=generator).to(dev)
        ema = self.density_ema.view(-1)
        new = torch.empty(count, device=dev)
        for start in range(0, count, 1 << 16):
            pts = self.cell_points(cells[start:start + (1 << 16)], jitter[start:start + (1 << 16)])
            new[start:start + len(pts)] = self.density(pts).float()
        ema.mul_(decay)
        ema[cells] = torch.maximum(ema[cells], new)
        threshold = min(0.01 / self.base_step, float(ema.clamp(min=0).mean()))
        self.occupancy.copy_((self.density_ema > threshold).to(torch.uint8))
        return float(self.occupancy.float().mean())

    # ----- checkpoints ------------------------------------------------------------------------------------------
    def state(self) -> Dict[str, object]:
        return {
            "kind": self.KIND, "config": asdict(self.config), "mode": self.mode,
            "params": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()},
            "edits": self.edits.state(),
        }

    @classmethod
    def from_state(cls, state: Dict[str, object]) -> "RadianceField":
        kind = state.get("kind", "gaussian")
        if kind != cls.KIND:
            raise ValueError(f"checkpoint holds a {kind!r} scene, not a radiance field ({cls.KIND!r})")
        params = state["params"]
        field = cls(FieldConfig(**state["config"]), state["mode"], params["space"])
        field.load_state_dict(params)
        field.edits = FieldEdits.from_state(state.get("edits", {}))
        return field

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
