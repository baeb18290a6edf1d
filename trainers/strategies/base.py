"""The strategy interface: small objects with hooks around the backward pass (after gsplat's strategies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import torch

from scenes import GaussianScene

from .ops import Optimizers


class Strategy:
    """Densification strategy; this base keeps a fixed primitive count. The trainer calls, each step:

    1. `pre_backward(render_meta)` after the render (e.g. to retain the means2d gradient),
    2. `regularisation(scene)` added to the loss,
    3. `post_backward(scene, optimizers, render_meta, step, image_size)` after backward, before the optimiser step
       (statistics gathering),
    4. `post_step(scene, optimizers, step)` after the optimiser step (grow, prune, relocate, reset).
    """

    # Steps the run will take, set by the trainer (not a config field), so a strategy can avoid changes it cannot
    # recover from before the run ends; None: unknown.
    total_steps = None

    def initialise(self, scene: GaussianScene, scene_scale: float) -> None:
        self.scene_scale = scene_scale

    def pre_backward(self, meta: Dict[str, torch.Tensor]) -> None:
        means2d = meta.get("means2d")
        if means2d is not None and means2d.requires_grad:
            means2d.retain_grad()

    def regularisation(self, scene: GaussianScene) -> torch.Tensor:
        """A loss term on the scene's device (none here)."""
        return torch.zeros((), device=scene.means.device)

    def post_backward(self, scene: GaussianScene, optimizers: Optimizers, meta: Dict[str, torch.Tensor], step: int, image_size) -> None:
        """Gather statistics from the gradients. The base strategy keeps a fixed count and gathers none."""
        return None

    def post_step(self, scene: GaussianScene, optimizers: Optimizers, step: int) -> Dict[str, int]:
        return {}

    def statistics(self) -> Dict[str, torch.Tensor]:
        """Tensors `post_backward` adds to (summed across ranks each step in distributed training); none here."""
        return {}

    def state_dict(self) -> Dict[str, object]:
        return {}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        """Restore what `state_dict` returned (the base strategy has no state)."""
        return None


@dataclass
class FixedStrategy(Strategy):
    """No densification: the primitive count stays at its initial value."""
