"""Pinhole camera in OpenCV axes (x right, y down, z forward), the one convention used inside splatforge."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import torch


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: world-to-camera 4x4 (OpenCV axes), intrinsics in pixels, image size, clip range, time.

    Pixel centres sit at +0.5 (pixel (0, 0) covers [0, 1) x [0, 1)).
    """

    world_to_camera: torch.Tensor
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    near: float = 0.01
    far: float = 1e10
    time: Optional[float] = None

    def __post_init__(self) -> None:
        w2c = torch.as_tensor(self.world_to_camera)
        if w2c.shape != (4, 4):
            raise ValueError(f"Camera.world_to_camera must have shape (4, 4), got {tuple(w2c.shape)}")
        if not torch.isfinite(w2c).all():
            raise ValueError("Camera.world_to_camera contains NaN or Inf")
        for name in ("fx", "fy"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"Camera.{name} must be a positive finite focal length, got {value}")
        for name in ("cx", "cy"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"Camera.{name} must be finite, got {getattr(self, name)}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ValueError(f"Camera image size must be positive, got {self.width}x{self.height}")
        if not (0 < self.near < self.far):
            raise ValueError(f"Camera needs 0 < near < far, got near={self.near}, far={self.far}")
        object.__setattr__(self, "world_to_camera", w2c.detach().to(torch.float32).clone())
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    @staticmethod
    def from_fov(
        world_to_camera: torch.Tensor,
        fov_y: float,
        width: int,
        height: int,
        **kwargs,
    ) -> "Camera":
        """Build a centred camera from a vertical field of view in radians (square pixels)."""
        if not (0 < fov_y < math.pi):
            raise ValueError(f"fov_y must be in (0, pi) radians, got {fov_y}")
        focal = 0.5 * height / math.tan(0.5 * fov_y)
        return Camera(world_to_camera, focal, focal, width / 2.0, height / 2.0, width, height, **kwargs)

    @property
    def K(self) -> torch.Tensor:
        """3x3 intrinsic matrix in pixels."""
        return torch.tensor(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=torch.float32
        )

    @property
    def camera_to_world(self) -> torch.Tensor:
        return torch.linalg.inv(self.world_to_camera.double()).float()

    @property
    def center(self) -> torch.Tensor:
        """Camera centre in world coordinates."""
        return self.camera_to_world[:3, 3]

    @property
    def fov_y(self) -> float:
        return 2.0 * math.atan(0.5 * self.height / self.fy)

    @property
    def fov_x(self) -> float:
        return 2.0 * math.atan(0.5 * self.width / self.fx)

    def scaled(self, factor: float) -> "Camera":
        """The same view at `factor` times the resolution (intrinsics scaled to match)."""
        width = max(1, int(round(self.width * factor)))
        height = max(1, int(round(self.height * factor)))
        sx, sy = width / self.width, height / self.height
        return replace(self, fx=self.fx * sx, fy=self.fy * sy, cx=self.cx * sx, cy=self.cy * sy, width=width, height=height)

    def with_time(self, time: Optional[float]) -> "Camera":
        return replace(self, time=time)
