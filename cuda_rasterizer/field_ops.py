"""Radiance-field kernels: hash-grid encoding, occupancy-grid ray marching and volume compositing.

Native kernels (C++/OpenMP, CUDA; math in csrc/field_math.h) behind autograd Functions, and a PyTorch reference of
the same math (`reference_*`, differentiable, float64 capable) the kernels are tested against. Samples are packed
ray by ray: `offsets` (R + 1,) int64 gives each ray's [start, end) in the sample arrays.
"""

from __future__ import annotations

import math
from typing import Tuple

import torch

PRIME1, PRIME2 = 2654435761, 805459861
MODE_BOX, MODE_CONTRACT = 0, 1


def hash_grid_levels(levels: int, log2_table: int, base_res: int, finest_res: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(resolutions (L,) int32, row offsets (L + 1,) int32) of an instant-ngp grid: geometric growth from
    `base_res` to `finest_res`; a level whose (res + 1)^3 corners fit in 2^log2_table rows is stored densely."""
    if levels < 1 or base_res < 1 or finest_res < base_res:
        raise ValueError(f"hash grid needs levels >= 1 and 1 <= base_res <= finest_res, got {levels}, {base_res}, {finest_res}")
    growth = math.exp((math.log(finest_res) - math.log(base_res)) / max(levels - 1, 1))
    res, offsets = [], [0]
    for level in range(levels):
        r = int(math.floor(base_res * growth**level + 1e-6))
        res.append(r)
        offsets.append(offsets[-1] + min(2**log2_table, (r + 1) ** 3))
    if offsets[-1] >= 2**31:
        raise ValueError(f"hash grid of {offsets[-1]} rows does not fit 32-bit row indices")
    return torch.tensor(res, dtype=torch.int32), torch.tensor(offsets, dtype=torch.int32)


# ----- PyTorch reference -------------------------------------------------------------------------------------


def _corner_rows(cells: torch.Tensor, res: int, size: int) -> torch.Tensor:
    i, j, k = cells.unbind(-1)
    side = res + 1
    if side**3 <= size:
        return i + side * (j + side * k)
    h = (i ^ ((j * PRIME1) & 0xFFFFFFFF) ^ ((k * PRIME2) & 0xFFFFFFFF)) & 0xFFFFFFFF
    return h % size


def reference_hash_encode(x: torch.Tensor, table: torch.Tensor, res: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(N, L*F) trilinear hash-grid features of unit-cube points x (N, 3); differentiable in `table`."""
    outs = []
    for level in range(res.numel()):
        r, start, end = int(res[level]), int(offsets[level]), int(offsets[level + 1])
        p = (x * r).clamp(0, r)
        cell = p.floor().clamp(max=r - 1)
        frac = p - cell
        cell = cell.long()
        acc = 0
        for c in range(8):
            bits = torch.tensor([c & 1, (c >> 1) & 1, (c >> 2) & 1], device=x.device)
            w = torch.where(bits.bool(), frac, 1 - frac).prod(dim=1, keepdim=True)
            rows = _corner_rows(cell + bits, r, end - start) + start
            acc = acc + w * table[rows]
        outs.append(acc)
    return torch.cat(outs, dim=1)


def map_points(p: torch.Tensor, mode: int, params: torch.Tensor) -> torch.Tensor:
    """World points -> unit cube: box normalisation (mode 0, params = lo, hi) or the mip-NeRF 360 contraction of
    (p - centre) / radius (mode 1, params = centre, radius, unused) mapped from [-2, 2]^3."""
    params = params.to(p)
    if mode == MODE_BOX:
        return (p - params[:3]) / (params[3:6] - params[:3])
    q = (p - params[:3]) / params[3]
    n = q.norm(dim=-1, keepdim=True)
    scale = torch.where(n > 1, (2 - 1 / n.clamp(min=1)) / n.clamp(min=1), torch.ones_like(n))
    return (q * scale + 2) * 0.25


def reference_march(rays_o, rays_d, t0, t1, jitter, grid, params, mode, dt_min, dt_max, cone, max_samples):
    """Python loop version of the native marcher (tests only): (offsets, t, dt, ray ids)."""
    res = grid.shape[0]
    ts, dts, ids, offsets = [], [], [], [0]
    for i in range(rays_o.shape[0]):
        step = lambda t: min(max(t * cone, dt_min), dt_max)  # noqa: E731
        t, count = float(t0[i]) + float(jitter[i]) * step(float(t0[i])), 0
        while t < float(t1[i]) and count < max_samples:
            dt = min(step(t), float(t1[i]) - t)
            tm = t + 0.5 * dt
            u = map_points((rays_o[i] + tm * rays_d[i])[None], mode, params)[0]
            inside = mode == MODE_CONTRACT or bool(((u >= 0) & (u <= 1)).all())
            cell = (u * res).floor().long().clamp(0, res - 1)
            # the grid is indexed x fastest: flat row cx + G (cy + G cz), i.e. grid[cz, cy, cx]
            if inside and bool(grid[cell[2], cell[1], cell[0]]):
                ts.append(tm), dts.append(dt), ids.append(i)
                count += 1
            t += dt
        offsets.append(offsets[-1] + count)
    dtype = rays_o.dtype
    return (torch.tensor(offsets), torch.tensor(ts, dtype=dtype), torch.tensor(dts, dtype=dtype), torch.tensor(ids, dtype=torch.long))


def reference_composite(sigma, rgb, t, dt, offsets, t_min: float = 1e-4):
    """Per-ray front-to-back compositing in PyTorch (autograd): (rgb (R, 3), opacity (R,), depth (R,))."""
    out_rgb, out_op, out_depth = [], [], []
    for i in range(offsets.numel() - 1):
        s, e = int(offsets[i]), int(offsets[i + 1])
        trans = sigma.new_ones(())
        acc_c, acc_a, acc_d = sigma.new_zeros(3), sigma.new_zeros(()), sigma.new_zeros(())
        for k in range(s, e):
            if float(trans.detach()) <= t_min:
                break
            alpha = 1 - torch.exp(-sigma[k] * dt[k])
            w = trans * alpha
            acc_c, acc_a, acc_d = acc_c + w * rgb[k], acc_a + w, acc_d + w * t[k]
            trans = trans * (1 - alpha)
        out_rgb.append(acc_c), out_op.append(acc_a), out_depth.append(acc_d)
    if not out_rgb:
        return sigma.new_zeros(0, 3), sigma.new_zeros(0), sigma.new_zeros(0)
    return torch.stack(out_rgb), torch.stack(out_op), torch.stack(out_depth)


# ----- native kernels ---------------------------------------------------------------------------------------


def _ext(device: torch.device):
    if device.type == "cuda":
        from ._field_build import build_cuda_field_extension

        return build_cuda_field_extension()
    from ._field_build import build_cpu_field_extension

    return build_cpu_field_extension()


def _threads(device: torch.device) -> tuple:
    if device.type == "cuda":
        return ()
    from .cpu_backend import get_num_threads

    return (get_num_threads(),)


def ensure_built(device: torch.device = torch.device("cpu")) -> None:
    """Compile (first use) and load the field kernels for `device` now, so timed work never pays for the build."""
    _ext(torch.device(device))


class _HashEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, table, res, offsets):
        ctx.save_for_backward(x, res, offsets)
        ctx.rows = table.shape[0]
        return _ext(x.device).hash_encode_fwd(x, table.detach().contiguous(), res, offsets, *_threads(x.device))

    @staticmethod
    def backward(ctx, grad_out):
        x, res, offsets = ctx.saved_tensors
        grad = _ext(x.device).hash_encode_bwd(x, grad_out.contiguous(), res, offsets, ctx.rows, *_threads(x.device))
        return None, grad, None, None


def hash_encode(x: torch.Tensor, table: torch.Tensor, res: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """(N, L*F) hash-grid features of unit-cube points (N, 3), differentiable in `table` (rows, F)."""
    x = x.detach().to(table.dtype).contiguous()
    if x.device.type == "cuda":
        res, offsets = res.to(x.device), offsets.to(x.device)
    return _HashEncode.apply(x, table, res.to(torch.int32).contiguous(), offsets.to(torch.int32).contiguous())


@torch.no_grad()
def march(rays_o, rays_d, t0, t1, jitter, grid, params, mode: int, dt_min: float, dt_max: float, cone: float,
          max_samples: int):
    """Occupancy-grid ray marching: (offsets (R + 1,) int64, t (S,), dt (S,), ray ids (S,) int64)."""
    dev, dtype = rays_o.device, rays_o.dtype
    c = lambda v: v.to(device=dev, dtype=dtype).contiguous()  # noqa: E731
    grid = grid.to(device=dev, dtype=torch.uint8).contiguous()
    return _ext(dev).march(c(rays_o), c(rays_d), c(t0), c(t1), c(jitter), grid, c(params), int(mode), float(dt_min),
                           float(dt_max), float(cone), int(max_samples), *_threads(dev))


class _Composite(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sigma, rgb, t, dt, offsets, t_min):
        ext = _ext(sigma.device)
        out_rgb, out_op, out_depth = ext.composite_fwd(sigma, rgb, t, dt, offsets, t_min, *_threads(sigma.device))
        ctx.save_for_backward(sigma, rgb, t, dt, offsets, out_rgb, out_op, out_depth)
        ctx.t_min = t_min
        return out_rgb, out_op, out_depth

    @staticmethod
    def backward(ctx, v_rgb, v_op, v_depth):
        sigma, rgb, t, dt, offsets, out_rgb, out_op, out_depth = ctx.saved_tensors
        z = lambda v, like: torch.zeros_like(like) if v is None else v.contiguous()  # noqa: E731
        v_sigma, v_color = _ext(sigma.device).composite_bwd(
            sigma, rgb, t, dt, offsets, ctx.t_min, out_rgb, out_op, out_depth, z(v_rgb, out_rgb), z(v_op, out_op),
            z(v_depth, out_depth), *_threads(sigma.device),
        )
        return v_sigma, v_color, None, None, None, None


def composite(sigma: torch.Tensor, rgb: torch.Tensor, t: torch.Tensor, dt: torch.Tensor, offsets: torch.Tensor,
              t_min: float = 1e-4) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Volume-render packed samples: (rgb (R, 3), opacity (R,), depth (R,)), differentiable in sigma and rgb.

    Stops a ray once its transmittance falls to `t_min` (later samples get zero gradient)."""
    t, dt = t.detach().to(sigma.dtype).contiguous(), dt.detach().to(sigma.dtype).contiguous()
    return _Composite.apply(sigma.contiguous(), rgb.contiguous(), t, dt, offsets.to(sigma.device).contiguous(), float(t_min))
