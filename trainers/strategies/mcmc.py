"""3DGS as Markov chain Monte Carlo (Kheradmand et al. 2024): relocate dead Gaussians, add up to a cap, jitter."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict

import torch

from cuda_rasterizer.reference import quat_scale_to_covar
from scenes import GaussianScene

from . import ops
from .base import Strategy
from .ops import Optimizers

MAX_SPLIT = 51  # most copies one Gaussian can be split into in one relocation


def relocated_opacity_and_scale(opacities: torch.Tensor, scales: torch.Tensor, copies: torch.Tensor):
    """Opacity and scale for each of `copies` Gaussians that together render like the original (eq. 9 of the paper).

    new_o = 1 - (1 - o)^(1/n);  new_s = s * o / sum_{i=1..n} sum_{k=0..i-1} C(i-1, k) (-1)^k new_o^(k+1) / sqrt(k+1)
    """
    copies = copies.clamp(1, MAX_SPLIT).to(opacities.dtype)
    new_o = 1.0 - torch.pow(1.0 - opacities, 1.0 / copies)
    denom = torch.zeros_like(opacities)
    n_max = int(copies.max().item()) if copies.numel() else 1
    for i in range(1, n_max + 1):
        active = copies >= i
        inner = torch.zeros_like(opacities)
        for k in range(i):
            inner = inner + math.comb(i - 1, k) * (-1) ** k * new_o ** (k + 1) / math.sqrt(k + 1)
        denom = denom + torch.where(active, inner, torch.zeros_like(inner))
    coeff = opacities / denom.clamp(min=1e-12)
    return new_o, scales * coeff[:, None]


def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p / (1 - p))


@dataclass
class MCMCStrategy(Strategy):
    """Keeps the count growing 5% per refinement up to `cap_max`; dead Gaussians are moved onto live ones."""

    cap_max: int = 300_000
    noise_lr: float = 5e5
    min_opacity: float = 0.005
    refine_start: int = 500
    refine_stop: int = 25_000
    refine_every: int = 100
    growth: float = 1.05
    opacity_reg: float = 0.01
    scale_reg: float = 0.01
    seed: int = 0

    def initialise(self, scene: GaussianScene, scene_scale: float) -> None:
        self.scene_scale = scene_scale
        self._gen = torch.Generator().manual_seed(self.seed)  # CPU: the same draws on every device

    def regularisation(self, scene: GaussianScene) -> torch.Tensor:
        return self.opacity_reg * scene.opacities.mean() + self.scale_reg * scene.scales.mean()

    def post_step(self, scene, optimizers, step) -> Dict[str, int]:
        report: Dict[str, int] = {}
        if self.refine_start < step < self.refine_stop and step % self.refine_every == 0:
            report["relocated"] = self.relocate(scene, optimizers)
            report["added"] = self.add(scene, optimizers)
        self.inject_noise(scene, optimizers["means"].param_groups[0]["lr"] * self.noise_lr)
        return report

    def _sample_by_opacity(self, scene: GaussianScene, candidates: torch.Tensor, count: int) -> torch.Tensor:
        """`count` candidates drawn with replacement, proportional to opacity (drawn on the CPU generator)."""
        probs = scene.opacities.detach()[candidates].cpu()
        picks = torch.multinomial(probs, count, replacement=True, generator=self._gen)
        return candidates[picks.to(candidates.device)]

    @torch.no_grad()
    def _share(self, scene: GaussianScene, optimizers: Optimizers, sources: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Rescale the sampled sources so each and its new copies keep the original's look; return copy params."""
        counts = torch.bincount(sources, minlength=len(scene))[sources] + 1
        new_o, new_s = relocated_opacity_and_scale(scene.opacities[sources], scene.scales[sources], counts)
        new_o = new_o.clamp(self.min_opacity, 1 - 1e-6)
        values = {"opacity_logits": _logit(new_o), "log_scales": torch.log(new_s.clamp(min=1e-12))}
        values.update(scene.scale_dependent_rows(sources, values["log_scales"]))  # Gabor terms keep their frequencies
        ops.overwrite(scene, optimizers, sources, values)
        return ops.gather(scene, sources)

    @torch.no_grad()
    def relocate(self, scene: GaussianScene, optimizers: Optimizers) -> int:
        dead = scene.opacities <= self.min_opacity
        n_dead = int(dead.sum())
        alive = torch.nonzero(~dead).squeeze(-1)
        if n_dead == 0 or alive.numel() == 0:
            return 0
        sources = self._sample_by_opacity(scene, alive, n_dead)
        copies = self._share(scene, optimizers, sources)
        ops.overwrite(scene, optimizers, torch.nonzero(dead).squeeze(-1), copies)
        return n_dead

    @torch.no_grad()
    def add(self, scene: GaussianScene, optimizers: Optimizers) -> int:
        n = len(scene)
        n_new = max(0, min(self.cap_max, int(self.growth * n)) - n)
        if n_new == 0:
            return 0
        sources = self._sample_by_opacity(scene, torch.arange(n, device=scene.means.device), n_new)
        ops.append(scene, optimizers, self._share(scene, optimizers, sources))
        return n_new

    @torch.no_grad()
    def inject_noise(self, scene: GaussianScene, scale: float) -> None:
        """Jitter low-opacity Gaussians along their own covariance (the SGLD noise term)."""
        covars = quat_scale_to_covar(scene.quats.detach(), scene.scales.detach())
        gate = torch.sigmoid(100.0 * ((1 - scene.opacities.detach()) - 0.995))
        noise = torch.randn(scene.means.shape, generator=self._gen).to(gate.device) * gate[:, None] * scale
        scene.params["means"].add_((covars @ noise[..., None])[..., 0])

    def state_dict(self) -> Dict[str, object]:
        return {"generator": self._gen.get_state()}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        self._gen.set_state(state["generator"])
