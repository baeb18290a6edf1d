"""Render one viewer frame: RGB / depth / alpha display image plus the depth viser composites with."""

from __future__ import annotations

import contextlib
import time as _time
from dataclasses import dataclass, replace
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch

from render import Camera, render

RENDER_MODES = ("RGB", "Depth", "Depth (metric)", "Alpha")
METRIC_DEPTH_MAX = 80.0  # "Depth (metric)": a fixed turbo scale, red at 0 to blue at this many scene units (metres
# for driving logs), so colours read as distances and stay put while the camera moves

# viser packs depth as 24-bit fixed point with 1e-5 precision: anything beyond this many scene units is clamped.
VISER_MAX_DEPTH = (2**24 - 1) / 100_000.0
# Pixels less opaque than this are "empty": they get the far depth so viser's own meshes show through.
EMPTY_ALPHA = 0.5


class FrameAborted(Exception):
    """Raised by `render_frame` when `should_abort()` turned true between strips."""


@dataclass(frozen=True)
class FrameRecord:
    """What was sent to one client: size, kind, timing and a small image summary (for tests and diagnostics)."""

    seq: int
    width: int
    height: int
    full_res: bool
    timestamp: float  # time.time() when sent
    render_ms: float
    mode: str
    scene_time: Optional[float]
    mean: float  # of the display image in [0, 1]
    std: float
    mean_rgb: Tuple[float, float, float]
    jpeg_quality: int


@dataclass
class Frame:
    image: np.ndarray  # (H, W, 3) uint8, what the user sees
    depth: np.ndarray  # (H, W, 1) float32 camera-axis z in scene units, far where empty, clamped for viser
    render_s: float


def _render_strips(scene, camera: Camera, background, backend: str, sh_degree, strips: int, should_abort, lock):
    """render() in horizontal strips, checking `should_abort` and taking `lock` per strip.

    Strip pixels match a single render up to the rasterizer's off-screen Jacobian clamp, which depends on the
    principal point (differences of ~1% for Gaussians near the frame edge).
    """
    if strips <= 1:
        with lock:
            return render(scene, camera, background=background, backend=backend, sh_degree=sh_degree)
    bounds = np.linspace(0, camera.height, strips + 1).round().astype(int)
    parts = []
    for y0, y1 in zip(bounds[:-1], bounds[1:]):
        if y1 <= y0:
            continue
        if should_abort is not None and should_abort():
            raise FrameAborted()
        strip = replace(camera, cy=camera.cy - float(y0), height=int(y1 - y0))
        with lock:  # released between strips so a trainer sharing the scene can step
            parts.append(render(scene, strip, background=background, backend=backend, sh_degree=sh_degree))
    out = parts[0]
    out.rgb = torch.cat([p.rgb for p in parts], dim=0)
    out.alpha = torch.cat([p.alpha for p in parts], dim=0)
    out.depth = torch.cat([p.depth for p in parts], dim=0)
    return out


def colorize_depth(depth: np.ndarray, alpha: np.ndarray, background: Sequence[float],
                   fixed_range: Optional[Tuple[float, float]] = None) -> np.ndarray:
    """Turbo-coloured depth (near = red end), robustly normalised over covered pixels (or over `fixed_range`, in
    scene units); background elsewhere."""
    import cv2

    d = depth[..., 0]
    valid = alpha[..., 0] > 0.05
    out = np.empty((*d.shape, 3), dtype=np.float32)
    out[:] = np.asarray(background, dtype=np.float32)
    if valid.any():
        lo, hi = np.percentile(d[valid], [2, 98]) if fixed_range is None else fixed_range
        norm = np.clip((d - lo) / max(hi - lo, 1e-8), 0, 1)
        gray = ((1.0 - norm) * 255).astype(np.uint8)
        turbo = cv2.applyColorMap(gray, cv2.COLORMAP_TURBO)[..., ::-1].astype(np.float32) / 255.0
        out[valid] = turbo[valid]
    return out


def render_frame(
    scene,
    camera: Camera,
    mode: str = "RGB",
    background: Sequence[float] = (0.0, 0.0, 0.0),
    backend: str = "auto",
    sh_degree: Optional[int] = None,
    strips: int = 1,
    should_abort: Optional[Callable[[], bool]] = None,
    lock=None,
    post_process: Optional[Callable] = None,
) -> Frame:
    """Render `scene` from `camera` into a display image for `mode` and a compositing depth map.

    strips > 1 renders in horizontal strips so `should_abort()` can cancel between them; `lock` (a context
    manager, e.g. the scene's RLock) is held around each render call.
    """
    if mode not in RENDER_MODES:
        raise ValueError(f"render mode must be one of {RENDER_MODES}, got {mode!r}")
    start = _time.perf_counter()
    with torch.no_grad():
        out = _render_strips(
            scene, camera, tuple(background), backend, sh_degree, strips, should_abort, lock or contextlib.nullcontext()
        )
    rgb = out.rgb.detach().float().cpu().numpy()
    alpha = out.alpha.detach().float().cpu().numpy()
    depth = out.depth.detach().float().cpu().numpy()
    if post_process is not None and mode == "RGB":  # e.g. mesh shadows: (camera, rgb, alpha, depth, background) -> rgb
        rgb = post_process(camera, rgb, alpha, depth, tuple(background))
    if mode == "RGB":
        display = rgb
    elif mode == "Alpha":
        display = np.repeat(alpha, 3, axis=-1)
    elif mode == "Depth (metric)":
        display = colorize_depth(depth, alpha, background, (0.0, METRIC_DEPTH_MAX))
    else:
        display = colorize_depth(depth, alpha, background)
    image = (np.clip(display, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    composite = np.where(alpha > EMPTY_ALPHA, depth, VISER_MAX_DEPTH)
    composite = np.clip(composite, 0.0, VISER_MAX_DEPTH).astype(np.float32)
    return Frame(image=np.ascontiguousarray(image), depth=composite, render_s=_time.perf_counter() - start)


def summarize(image: np.ndarray) -> Tuple[float, float, Tuple[float, float, float]]:
    """(mean, std, per-channel mean) of a uint8 image, in [0, 1]."""
    f = image.astype(np.float32) / 255.0
    per_channel = f.reshape(-1, f.shape[-1]).mean(axis=0)
    return float(f.mean()), float(f.std()), tuple(float(c) for c in per_channel[:3])
