"""Settings of `sf-train --model nerf` (the radiance-field trainer), nested in TrainConfig as `--nerf.*`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from scenes.radiance_field import FieldConfig


@dataclass
class FieldTrainConfig:
    """Radiance-field training (instant-ngp recipe, DESIGN.md section 10, sized for CPUs)."""

    net: FieldConfig = field(default_factory=FieldConfig)
    space: Literal["auto", "box", "contract"] = "auto"
    """box: a cube around the cameras' focus point (object captures); contract: mip-NeRF 360 contraction for
    unbounded scenes; auto: box when the images have alpha (Blender-style objects), else contract."""
    box_extent: float = 0.375
    """Box half-size as a fraction of the cameras' mean distance to the focus point (1.5 for NeRF-synthetic)."""
    rays_per_step: int = 2048
    """Rays in the first step; later steps aim at `samples_per_step` samples."""
    samples_per_step: int = 1 << 16
    max_rays_per_step: int = 16384
    lr: float = 1e-2
    lr_final_ratio: float = 0.1
    """Learning rate decays exponentially to this fraction of itself over max_steps."""
    weight_decay: float = 1e-6
    """On the MLP weights (instant-ngp)."""
    occupancy_every: int = 16
    occupancy_warmup: int = 256
    """Until this step every occupancy update evaluates all cells; after, a random quarter."""
    random_background: bool = True
    """With alpha images, a random background colour per ray (the field must learn true transparency)."""

    def __post_init__(self) -> None:
        positive = ("box_extent", "rays_per_step", "samples_per_step", "max_rays_per_step", "lr", "occupancy_every")
        for name in positive:
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"--nerf.{name.replace('_', '-')} must be > 0, got {value}")
        if not 0 < self.lr_final_ratio <= 1:
            raise ValueError(f"--nerf.lr-final-ratio must be in (0, 1], got {self.lr_final_ratio}")
        if self.weight_decay < 0 or self.occupancy_warmup < 0:
            raise ValueError("--nerf.weight-decay and --nerf.occupancy-warmup must be >= 0")
