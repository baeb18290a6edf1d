"""Depth error against LiDAR (monocular-depth convention, DESIGN.md section 9): AbsRel, RMSE, delta < 1.25."""

from __future__ import annotations

from typing import Dict, List

import torch

MIN_DEPTH_M, MAX_DEPTH_M = 1.0, 80.0


def depth_errors(rendered: torch.Tensor, lidar: torch.Tensor, min_depth: float = MIN_DEPTH_M,
                 max_depth: float = MAX_DEPTH_M) -> Dict[str, float]:
    """Sums over LiDAR hits with min_depth <= d* <= max_depth: {'count', 'abs_rel', 'sq', 'delta1'} (sums, so
    views can be pooled; `pool` turns them into means)."""
    target = lidar.to(rendered.device).reshape(-1)
    pred = rendered.reshape(-1)
    valid = (target >= min_depth) & (target <= max_depth)
    t, p = target[valid].double(), pred[valid].double().clamp(min=1e-3)
    ratio = torch.maximum(p / t, t / p)
    return {"count": float(valid.sum()), "abs_rel": float(((p - t).abs() / t).sum()),
            "sq": float(((p - t) ** 2).sum()), "delta1": float((ratio < 1.25).sum())}


def pool(records: List[Dict[str, float]]) -> Dict[str, float]:
    """Pooled depth_abs_rel, depth_rmse (metres), depth_delta1 and depth_points over all views' LiDAR hits."""
    n = sum(r["count"] for r in records)
    if n == 0:
        return {"depth_abs_rel": None, "depth_rmse": None, "depth_delta1": None, "depth_points": 0}
    return {"depth_abs_rel": sum(r["abs_rel"] for r in records) / n,
            "depth_rmse": (sum(r["sq"] for r in records) / n) ** 0.5,
            "depth_delta1": sum(r["delta1"] for r in records) / n,
            "depth_points": int(n)}
