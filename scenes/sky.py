"""Sky and exposure models for driving scenes, drawn behind / applied after the splats.

- `SkyEnvMap`: an equirectangular environment map (elevation x azimuth texels around the world up axis) looked up
  by each pixel's world ray direction and composited where the splats' alpha is low: rgb + (1 - alpha) * sky.
- `AffineExposure`: one 3x3 colour matrix and bias per training image (identity at the start, and for unseen
  images), absorbing auto-exposure and white-balance changes between frames.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F


def ray_directions(camera, device: torch.device) -> torch.Tensor:
    """(H, W, 3) unit world directions through the pixel centres of `camera` (a render.Camera)."""
    v, u = torch.meshgrid(torch.arange(camera.height, device=device) + 0.5,
                          torch.arange(camera.width, device=device) + 0.5, indexing="ij")
    dirs = torch.stack([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, torch.ones_like(u)], -1)
    rot = camera.world_to_camera[:3, :3].to(device)
    world = dirs @ rot  # R^T d for row vectors
    return world / world.norm(dim=-1, keepdim=True)


class SkyEnvMap(torch.nn.Module):
    """Equirectangular sky texture around `up`; colours through a sigmoid."""

    def __init__(self, up: np.ndarray, height: int = 16, width: int = 64, init_rgb=(0.6, 0.7, 0.85)):
        super().__init__()
        up = np.asarray(up, dtype=np.float64)
        up = up / np.linalg.norm(up)
        ref = np.array([1.0, 0, 0]) if abs(up[0]) < 0.9 else np.array([0, 1.0, 0])
        east = np.cross(up, ref)
        east /= np.linalg.norm(east)
        north = np.cross(up, east)
        self.register_buffer("frame", torch.tensor(np.stack([east, north, up]), dtype=torch.float32))
        logit = torch.logit(torch.tensor(init_rgb, dtype=torch.float32).clamp(0.01, 0.99))
        self.texels = torch.nn.Parameter(logit.view(1, 3, 1, 1).repeat(1, 1, height, width).contiguous())

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        """(..., 3) unit world directions -> (..., 3) sky colour in [0, 1]."""
        local = dirs @ self.frame.T
        azimuth = torch.atan2(local[..., 1], local[..., 0]) / math.pi  # [-1, 1]
        elevation = -torch.asin(local[..., 2].clamp(-1, 1)) / (math.pi / 2)  # up -> -1 (top row)
        grid = torch.stack([azimuth, elevation], -1).reshape(1, -1, 1, 2)
        rgb = F.grid_sample(torch.sigmoid(self.texels), grid, mode="bilinear", padding_mode="border",
                            align_corners=False)
        return rgb[0, :, :, 0].T.reshape(*dirs.shape[:-1], 3)

    def behind(self, rgb_on_bg: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor,
               camera) -> torch.Tensor:
        """Replace the flat background of a render (rgb composited on `background`) by the sky."""
        sky = self(ray_directions(camera, rgb_on_bg.device))
        return rgb_on_bg + (1.0 - alpha) * (sky - background.view(1, 1, 3))

    def save(self, path: Path) -> None:
        torch.save({"frame": self.frame.cpu(), "texels": self.texels.detach().cpu()}, path)

    @staticmethod
    def load(path: Path) -> "SkyEnvMap":
        payload = torch.load(path, map_location="cpu", weights_only=True)
        sky = SkyEnvMap(payload["frame"][2].numpy(), *payload["texels"].shape[2:])
        sky.frame.copy_(payload["frame"])
        with torch.no_grad():
            sky.texels.copy_(payload["texels"])
        return sky


class AffineExposure(torch.nn.Module):
    """Per-image colour transform rgb' = A_i rgb + b_i (identity at the start)."""

    def __init__(self, num_images: int):
        super().__init__()
        self.matrices = torch.nn.Parameter(torch.eye(3).repeat(num_images, 1, 1))
        self.biases = torch.nn.Parameter(torch.zeros(num_images, 3))

    def forward(self, rgb: torch.Tensor, index: Optional[int]) -> torch.Tensor:
        if index is None:
            return rgb
        return rgb @ self.matrices[index].T + self.biases[index]
