"""Adaptive density control of 3DGS: clone small, split large high-gradient Gaussians, prune, reset opacity."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional

import torch

from scenes import GaussianScene

from . import ops
from .base import Strategy
from .ops import Optimizers


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


@dataclass
class DefaultStrategy(Strategy):
    """3DGS densification with gsplat's defaults (the 2D gradient is measured in NDC units, as Inria's)."""

    grow_grad2d: float = 2e-4
    """Mean NDC-space screen gradient above which a Gaussian is cloned or split."""
    grow_scale3d: float = 0.01
    """Clone when the largest scale is below this fraction of the scene scale, else split."""
    prune_opacity: float = 0.005
    prune_scale3d: float = 0.1
    """After the first opacity reset, prune Gaussians larger than this fraction of the scene scale."""
    refine_start: int = 500
    refine_stop: int = 15_000
    refine_every: int = 100
    reset_every: int = 3000
    reset_recovery_steps: int = 1000
    """No opacity reset with fewer steps than this left in the run: after a reset every opacity starts again from
    0.01, and a reset at (or just before) the last step would leave the final scene nearly transparent."""
    max_gaussians: Optional[int] = None
    """Stop growing beyond this count (None: unbounded)."""
    seed: int = 0

    def initialise(self, scene: GaussianScene, scene_scale: float) -> None:
        self.scene_scale = scene_scale
        self._reset_stats(scene)
        self._gen = torch.Generator().manual_seed(self.seed)  # CPU: the same draws on every device

    def _reset_stats(self, scene: GaussianScene) -> None:
        """Zero the gradient statistics, one entry per Gaussian, on the scene's device."""
        self.grad2d = torch.zeros(len(scene), device=scene.means.device)
        self.count = torch.zeros(len(scene), device=scene.means.device)

    def post_backward(self, scene, optimizers, meta, step, image_size) -> None:
        means2d = meta.get("means2d")
        if step >= self.refine_stop or means2d is None or means2d.grad is None:
            return
        width, height = image_size
        grad = means2d.grad.detach().clone()
        grad[:, 0] *= width / 2.0
        grad[:, 1] *= height / 2.0
        visible = (meta["radii"] > 0).all(dim=-1)
        index = meta.get("primitive_index")  # rows -> primitives when the scene culled some (4D, in time)
        if index is None:
            self.grad2d[visible] += grad[visible].norm(dim=-1)
            self.count[visible] += 1
        else:
            rows = index[visible]
            self.grad2d.index_add_(0, rows, grad[visible].norm(dim=-1))
            self.count.index_add_(0, rows, torch.ones_like(rows, dtype=self.count.dtype))

    def statistics(self) -> Dict[str, torch.Tensor]:
        return {"grad2d": self.grad2d, "count": self.count}

    def post_step(self, scene, optimizers, step) -> Dict[str, int]:
        report: Dict[str, int] = {}
        if step <= self.refine_start or step > self.refine_stop:
            return report
        if step % self.refine_every == 0:
            report.update(self._grow(scene, optimizers))
            report.update(self._prune(scene, optimizers, step))
            self._reset_stats(scene)
        if step % self.reset_every == 0 and self._can_recover_from_reset(step):
            self.reset_opacity(scene, optimizers)
            report["opacity_reset"] = 1
        return report

    def _can_recover_from_reset(self, step: int) -> bool:
        return self.total_steps is None or self.total_steps - step >= self.reset_recovery_steps

    @torch.no_grad()
    def _grow(self, scene: GaussianScene, optimizers: Optimizers) -> Dict[str, int]:
        mean_grad = self.grad2d / self.count.clamp(min=1)
        high = mean_grad > self.grow_grad2d
        small = scene.scales.max(dim=-1).values <= self.grow_scale3d * self.scene_scale
        if self.max_gaussians is not None:
            budget = max(self.max_gaussians - len(scene), 0)
            candidates = torch.nonzero(high).squeeze(-1)
            if candidates.numel() > budget:
                order = torch.argsort(mean_grad[candidates], descending=True)
                high = torch.zeros_like(high)
                high[candidates[order[:budget]]] = True
        clone, split = high & small, high & ~small
        n_clone, n_split = int(clone.sum()), int(split.sum())
        if n_clone:
            ops.append(scene, optimizers, ops.gather(scene, clone))
        if n_split:
            split = torch.cat([split, torch.zeros(n_clone, dtype=torch.bool, device=split.device)])
            self.split(scene, optimizers, split)
        return {"cloned": n_clone, "split": n_split}

    @torch.no_grad()
    def split(self, scene: GaussianScene, optimizers: Optimizers, mask: torch.Tensor) -> None:
        """Replace each masked Gaussian by two sampled from it (the scene's `split_rows`: in 4D for 4D scenes),
        scales divided by 1.6."""
        source = ops.gather(scene, mask)
        children = scene.split_rows(source, self._gen)
        ops.keep(scene, optimizers, ~mask)
        ops.append(scene, optimizers, {k: torch.cat([children[0][k], children[1][k]]) for k in source})

    @torch.no_grad()
    def _prune(self, scene: GaussianScene, optimizers: Optimizers, step: int) -> Dict[str, int]:
        remove = scene.opacities < self.prune_opacity
        if step > self.reset_every:
            remove |= scene.scales.max(dim=-1).values > self.prune_scale3d * self.scene_scale
        n = int(remove.sum())
        if n:
            ops.keep(scene, optimizers, ~remove)
        return {"pruned": n}

    @torch.no_grad()
    def reset_opacity(self, scene: GaussianScene, optimizers: Optimizers) -> None:
        """Clamp every opacity to at most twice the pruning threshold."""
        ceiling = _logit(2 * self.prune_opacity)
        index = torch.arange(len(scene), device=scene.means.device)
        ops.overwrite(scene, optimizers, index, {"opacity_logits": scene.params["opacity_logits"].detach().clamp(max=ceiling)})

    def state_dict(self) -> Dict[str, object]:
        return {"grad2d": self.grad2d.clone(), "count": self.count.clone(), "generator": self._gen.get_state()}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        """Restore statistics (onto the device `initialise` saw) and the generator."""
        device = self.grad2d.device
        self.grad2d, self.count = state["grad2d"].clone().to(device), state["count"].clone().to(device)
        self._gen.set_state(state["generator"])
