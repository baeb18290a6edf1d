"""Evaluate a scene on held-out views: per-image and mean PSNR and SSIM, render time."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from render import render
from render.writers import write_image

from .data.dataset import View
from .losses import psnr, ssim
from .lpips_metric import lpips_status, make_lpips


@torch.no_grad()
def evaluate(
    scene,
    views: Sequence[View],
    background,
    backend: str = "auto",
    save_dir: Optional[Path] = None,
    max_saved: int = 8,
) -> Dict[str, object]:
    """Render every view; optionally save (render | ground truth) side by side for the first `max_saved`."""
    per_image: List[Dict[str, object]] = []
    render_seconds = 0.0
    lpips_fn = make_lpips()
    for i, view in enumerate(views):
        start = time.perf_counter()
        out = render(scene, view.camera, background=background, backend=backend)
        render_seconds += time.perf_counter() - start
        image = out.rgb.clamp(0, 1)
        record = {"name": view.name, "psnr": psnr(image, view.image), "ssim": float(ssim(image, view.image))}
        if lpips_fn is not None:
            record["lpips"] = lpips_fn(image, view.image)
        per_image.append(record)
        if save_dir is not None and i < max_saved:
            write_image(Path(save_dir) / f"{i:03d}_{Path(view.name).stem}.png", torch.cat([image, view.image], dim=1))
    count = max(len(per_image), 1)
    lpips_ok, lpips_reason = lpips_status()
    return {
        "num_views": len(per_image),
        "psnr": sum(r["psnr"] for r in per_image) / count,
        "ssim": sum(r["ssim"] for r in per_image) / count,
        "lpips": sum(r["lpips"] for r in per_image) / count if lpips_fn is not None else None,
        "lpips_note": lpips_reason if not lpips_ok else "LPIPS (AlexNet)",
        "render_ms_per_image": 1000.0 * render_seconds / count,
        "num_gaussians": len(scene),
        "per_image": per_image,
    }
