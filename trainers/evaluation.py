"""Evaluate a scene on held-out views: per-image and mean PSNR and SSIM, render time."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

from render import render
from render.writers import write_image

from .data.dataset import View
from .depth_metrics import depth_errors, pool
from .losses import psnr, ssim
from .lpips_metric import lpips_status, make_lpips


def _scene_device(scene) -> torch.device:
    """The device of a scene's means (cpu for scene-like objects without them)."""
    means = getattr(scene, "means", None)
    return means.device if torch.is_tensor(means) else torch.device("cpu")


@torch.no_grad()
def evaluate(
    scene,
    views: Sequence[View],
    background,
    backend: str = "auto",
    save_dir: Optional[Path] = None,
    max_saved: int = 8,
    compose: Optional[Callable] = None,
) -> Dict[str, object]:
    """Render every view; optionally save (render | ground truth) side by side for the first `max_saved`.

    `compose(out, camera, background) -> rgb` replaces the render's image (driving logs: the sky behind the
    splats). Views with LiDAR depth (driving logs) add depth_abs_rel / depth_rmse / depth_delta1 (1-80 m, pooled
    over all LiDAR hits of all views) and per-image depth_abs_rel.

    Metrics are computed on the device the scene renders on (each view's image is copied there); PNGs are written
    from CPU copies.
    """
    per_image: List[Dict[str, object]] = []
    depth_records: List[Dict[str, float]] = []
    render_seconds = 0.0
    lpips_fn = make_lpips(_scene_device(scene))
    for i, view in enumerate(views):
        start = time.perf_counter()
        out = render(scene, view.camera, background=background, backend=backend)
        if out.rgb.is_cuda:
            torch.cuda.synchronize(out.rgb.device)  # kernels run asynchronously: time the render, not its launch
        render_seconds += time.perf_counter() - start
        image = (out.rgb if compose is None else compose(out, view.camera, background)).clamp(0, 1)
        target = view.image.to(image.device)
        record = {"name": view.name, "psnr": psnr(image, target), "ssim": float(ssim(image, target))}
        if view.lidar_depth is not None:
            errors = depth_errors(out.depth, view.lidar_depth)
            depth_records.append(errors)
            record["depth_abs_rel"] = errors["abs_rel"] / max(errors["count"], 1)
        if view.camera.time is not None:
            record["time"] = float(view.camera.time)
        if lpips_fn is not None:
            record["lpips"] = lpips_fn(image, target)
        per_image.append(record)
        if save_dir is not None and i < max_saved:
            side_by_side = torch.cat([image, target], dim=1).cpu()
            write_image(Path(save_dir) / f"{i:03d}_{Path(view.name).stem}.png", side_by_side)
    count = max(len(per_image), 1)
    lpips_ok, lpips_reason = lpips_status()
    depth = pool(depth_records) if depth_records else {}
    return {
        **depth,
        "num_views": len(per_image),
        "psnr": sum(r["psnr"] for r in per_image) / count,
        "ssim": sum(r["ssim"] for r in per_image) / count,
        "lpips": sum(r["lpips"] for r in per_image) / count if lpips_fn is not None else None,
        "lpips_note": lpips_reason if not lpips_ok else "LPIPS (AlexNet)",
        "render_ms_per_image": 1000.0 * render_seconds / count,
        "num_gaussians": len(scene) if hasattr(scene, "__len__") else 0,
        **(scene.extra_metrics() if hasattr(scene, "extra_metrics") else {}),  # Gabor scenes: active terms
        "per_image": per_image,
        "per_time": per_time(per_image),
    }


def per_time(per_image: List[Dict[str, object]]) -> List[Dict[str, float]]:
    """Mean PSNR / SSIM per distinct view time, sorted by time (empty for untimed views)."""
    groups: Dict[float, List[Dict[str, object]]] = {}
    for record in per_image:
        if "time" in record:
            groups.setdefault(round(float(record["time"]), 6), []).append(record)
    return [
        {"time": t, "num_views": len(rs), "psnr": sum(r["psnr"] for r in rs) / len(rs), "ssim": sum(r["ssim"] for r in rs) / len(rs)}
        for t, rs in sorted(groups.items())
    ]
