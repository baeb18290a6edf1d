"""Viewer benchmark: frames per second while the camera moves, and latency of the full-resolution frame after it
stops, for a 300k-Gaussian scene, through the real per-client render loop (viewer.ClientRenderLoop).

The browser is replaced by a stand-in client that does the same encoding work viser does for each frame
(JPEG of the image, PNG of the 16-bit-packed depth), so the figures include encoding but not the network.
Run: python scripts/bench_viewer.py [--num-gaussians 300000] [--out viewer_bench.json]
Radiance fields: python -m scripts.bench_viewer --field outputs/quality/lego200_nerf/field.pt --width 640 --height 360
--orbit-radius 4 (the field instead of random Gaussians; the camera orbits at the dataset cameras' distance).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import List, Optional

import cv2
import numpy as np
import torch
import tyro

from render.conventions import look_at_w2c, opencv_w2c_to_viser_pose
from scenes import GaussianScene
from viewer import ClientRenderLoop, ViewSettings


@dataclass
class BenchViewerConfig:
    num_gaussians: int = 300_000
    width: int = 1280
    height: int = 720
    move_seconds: float = 4.0
    move_hz: float = 30.0
    """How often the stand-in browser reports a new camera pose while moving."""
    seed: int = 0
    out: Optional[Path] = None
    field: Optional[Path] = None
    """Benchmark this radiance field (field.pt) instead of random Gaussians."""
    orbit_radius: float = 6.0
    orbit_height: float = 2.0


def random_scene(n: int, seed: int) -> GaussianScene:
    """Gaussians in a 4 x 4 x 4 volume around the origin, sizes log-normal around 1.5 cm (a trained-scene-like mix)."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * 4.0
    log_scales = torch.randn(n, 3, generator=g) * 0.5 + math.log(0.015)
    params = {
        "means": means,
        "quats": torch.randn(n, 4, generator=g),
        "log_scales": log_scales,
        "opacity_logits": torch.randn(n, generator=g) * 2.0,
        "sh_dc": torch.randn(n, 1, 3, generator=g),
        "sh_rest": torch.randn(n, 15, 3, generator=g) * 0.1,
    }
    return GaussianScene(params, sh_degree=3)


class EncodingClient:
    """Stands in for a viser client: a movable camera, and frames encoded as viser encodes them."""

    def __init__(self, width: int, height: int, radius: float = 6.0, height_z: float = 2.0):
        self.radius, self.height_z = radius, height_z
        self.client_id = 1
        self.width, self.height = width, height
        self.camera = SimpleNamespace(wxyz=(1, 0, 0, 0), position=(0, 0, 0), fov=math.radians(60), image_width=width, image_height=height)
        self.scene = SimpleNamespace(set_background_image=self._send)
        self.sent: List[tuple] = []
        self.move_to(0.0)

    def move_to(self, angle: float) -> None:
        eye = (self.radius * math.cos(angle), self.radius * math.sin(angle), self.height_z)
        wxyz, position = opencv_w2c_to_viser_pose(look_at_w2c(eye, (0.0, 0.0, 0.0)))
        self.camera.wxyz, self.camera.position = wxyz, position

    def _send(self, image, format="jpeg", jpeg_quality=None, depth=None):
        ok, _jpeg = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality or 90)])
        packed = (np.clip(depth[..., 0], 0, 167.0) / 167.0 * 65535).astype(np.uint16)
        ok2, _png = cv2.imencode(".png", packed)
        assert ok and ok2
        self.sent.append((time.perf_counter(), image.shape[1], image.shape[0]))


def run(config: BenchViewerConfig) -> dict:
    if config.field is not None:
        from scenes import load_scene

        scene = load_scene(config.field)
    else:
        scene = random_scene(config.num_gaussians, config.seed)
    client = EncodingClient(config.width, config.height, config.orbit_radius, config.orbit_height)
    lock = threading.RLock()
    loop = ClientRenderLoop(
        client,
        settings=lambda: ViewSettings(max_resolution=max(config.width, config.height)),
        render_context=lambda: (scene, lock),
        on_frame=lambda cid, rec: None,
    )
    loop.start()
    loop.notify()
    # Warm up: wait for the first full frame (compiles/loads the backend, measures throughput).
    deadline = time.perf_counter() + 300
    while not any(w == config.width for _, w, _ in client.sent) and time.perf_counter() < deadline:
        time.sleep(0.01)
    client.sent.clear()
    start = time.perf_counter()
    step = 0
    while time.perf_counter() - start < config.move_seconds:
        step += 1
        client.move_to(0.02 * step)
        loop.notify()
        time.sleep(1.0 / config.move_hz)
    stopped = time.perf_counter()
    while time.perf_counter() - stopped < 30:
        full = [t for t, w, _ in client.sent if t > stopped and w == config.width]
        if full:
            break
        time.sleep(0.005)
    loop.stop(join_timeout=5.0)
    moving = [(t, w, h) for t, w, h in client.sent if start <= t <= stopped]
    result = {
        "scene": str(config.field) if config.field is not None else f"{config.num_gaussians} random Gaussians",
        "full_resolution": [config.width, config.height],
        "moving_fps": len(moving) / (stopped - start),
        "moving_resolutions": sorted({(w, h) for _, w, h in moving}),
        "full_frame_latency_s": (full[0] - stopped) if full else None,
        "settle_s": loop.settle_s,
        "threads": torch.get_num_threads(),
        "loadavg": list(os.getloadavg()),
    }
    return result


def main() -> None:
    config = tyro.cli(BenchViewerConfig)
    result = run(config)
    print(json.dumps(result, indent=1))
    if config.out is not None:
        config.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
