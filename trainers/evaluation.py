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
    for i, view in enumerate(views):
        start = time.perf_counter()
        out = render(scene, view.camera, background=background, backend=backend)
        render_seconds += time.perf_counter() - start
        image = out.rgb.clamp(0, 1)
        per_image.append({"name": view.name, "psnr": psnr(image, view.image), "ssim": float(ssim(image, view.image))})
        if save_dir is not None and i < max_saved:
            write_image(Path(save_dir) / f"{i:03d}_{Path(view.name).stem}.png", torch.cat([image, view.image], dim=1))
    count = max(len(per_image), 1)
    return {
        "num_views": len(per_image),
        "psnr": sum(r["psnr"] for r in per_image) / count,
        "ssim": sum(r["ssim"] for r in per_image) / count,
        "render_ms_per_image": 1000.0 * render_seconds / count,
        "num_gaussians": len(scene),
        "per_image": per_image,
    }
