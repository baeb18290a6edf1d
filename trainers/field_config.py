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
