"""Frequency-adaptive training of Gabor scenes: which terms are on, at what frequencies, and how sparse.

`GaborTraining` wraps the configured densification strategy (default, MCMC, fixed) and adds, at the same hooks:
  - a probe: inactive terms carry a zero weight whose gradient still flows (scenes.gabor_scene.effective_weights with
    `probe`), so dL/dw of each inactive term is the correlation of the image residual with that term's wave inside
    its envelope; after each backward the signed gradients are summed per term (and the Adam step sees none of them);
  - every `refine_every` steps from `refine_start` to `refine_stop`: on the primitives whose best inactive term has the
    strongest consistent residual correlation (top `activate_fraction` of the primitives seen), that term is switched
    on with a small weight in the descent direction; active terms whose weight decayed below `deactivate_below` are
    switched off; inactive terms draw new candidate frequencies (random direction in the primitive frame, magnitude
    up to the current cap) and phases. The cap rises linearly from `nu_start` to `nu_end` cycles per sigma over the
    refine window (a max-frequency schedule: coarse texture first, finer later);
  - an L1 penalty `weight_l1` x mean over primitives of sum_k |w_k| (sparsity: terms that do not pay for themselves
    decay to zero and get switched off).
Densification needs nothing more: splits go through GaborScene.split_rows (the texture is not doubled), MCMC
relocation through GaborScene.scale_dependent_rows, clones and pruning copy / drop whole rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional

import torch

from scenes import GaborScene, SplatScene

from .strategies.base import Strategy
from .strategies.ops import Optimizers


@dataclass
class GaborTrainingConfig:
    """Gabor scenes only (`--model gabor`): term count, sparsity and the frequency-adaptive schedule."""

    num_terms: int = 4
    """Gabor terms per primitive (K)."""
    weight_l1: float = 1e-3
    """Sparsity: weight of the L1 penalty on the effective Gabor weights (mean over primitives of sum_k |w_k|).
    1e-3 is the one value of {1e-3, 2e-3} that kept Gabor >= 0.5 dB over Gaussians at both 20k and 100k primitives on
    lego and fern in 1,000-2,000 step runs (BENCHMARKS.md, "Gabor vs Gaussian"): 2e-3 was 0.1-0.2 dB better at 20k
    but switched off terms the small primitives of a 100k scene need (fern: +0.38 against +0.66 dB)."""
    refine_start: int = 500
    """First step at which terms are switched on."""
    refine_stop: int = 15_000
    refine_every: int = 100
    activate_fraction: float = 0.05
    """Per refinement, switch on one term on at most this fraction of the primitives (those seen with the strongest
    residual correlation)."""
    initial_weight: float = 0.05
    """Raw weight a term starts with when switched on (sign: the descent direction of its probe)."""
    deactivate_below: float = 0.005
    """Switch off active terms whose |effective weight| fell below this."""
    nu_start: float = 0.5
    """Frequency cap (cycles per sigma) of new candidate terms at refine_start."""
    nu_end: float = 2.0
    """... rising linearly to this at refine_stop; also the hard limit on learned frequencies."""
    seed: int = 0

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"--gabor.{name.replace('_', '-')} must be {what}, got {getattr(self, name)}")

        check("num_terms", 1 <= self.num_terms <= 8, "in 1..8")
        check("weight_l1", self.weight_l1 >= 0, ">= 0")
        check("refine_every", self.refine_every >= 1, ">= 1")
        check("activate_fraction", 0 <= self.activate_fraction <= 1, "in [0, 1]")
        check("initial_weight", 0 < self.initial_weight < 1, "in (0, 1)")
        check("deactivate_below", 0 <= self.deactivate_below < 1, "in [0, 1)")
        check("nu_start", self.nu_start > 0, "> 0")
        check("nu_end", self.nu_end >= self.nu_start, ">= --gabor.nu-start")


class GaborTraining(Strategy):
    """The configured strategy plus the Gabor term schedule (see the module docstring)."""

    def __init__(self, inner: Strategy, config: GaborTrainingConfig):
        self.inner = inner
        self.config = config
        self.total_steps = inner.total_steps
        self.last_report: Dict[str, float] = {}

    # ----- bookkeeping ---------------------------------------------------------------------------------
    def initialise(self, scene: GaborScene, scene_scale: float) -> None:
        if not isinstance(scene, GaborScene):
            raise TypeError(f"GaborTraining needs a GaborScene, got {type(scene).__name__}")
        self.inner.total_steps = self.total_steps
        self.inner.initialise(scene, scene_scale)
        self.scene_scale = scene_scale
        scene.probe_inactive = True
        self._gen = torch.Generator().manual_seed(self.config.seed)
        self._first_candidates(scene)
        self._last_probe_step = -1
        self._reset_stats(scene)
        self.last_report = self._counts(scene)

    def _reset_stats(self, scene: GaborScene) -> None:
        device = scene.means.device
        self.probe = torch.zeros(len(scene), scene.num_terms, device=device)
        self.seen = torch.zeros(len(scene), device=device)

    def _counts(self, scene: GaborScene) -> Dict[str, float]:
        active = scene.num_active_terms()
        return {"gabor_active_terms": float(active), "gabor_terms_per_primitive": active / max(len(scene), 1)}

    def nu_cap(self, step: int) -> float:
        cfg = self.config
        span = max(cfg.refine_stop - cfg.refine_start, 1)
        t = min(max((step - cfg.refine_start) / span, 0.0), 1.0)
        return cfg.nu_start + (cfg.nu_end - cfg.nu_start) * t

    # ----- hooks -----------------------------------------------------------------------------------------
    def pre_backward(self, meta: Dict[str, torch.Tensor]) -> None:
        self.inner.pre_backward(meta)

    def regularisation(self, scene: GaborScene) -> torch.Tensor:
        reg = self.inner.regularisation(scene)
        if self.config.weight_l1 > 0:
            reg = reg + self.config.weight_l1 * scene.gabor_weights.abs().sum(dim=-1).mean()
        return reg

    def post_backward(self, scene, optimizers, meta, step, image_size) -> None:
        self.inner.post_backward(scene, optimizers, meta, step, image_size)
        raw = scene.params["gabor_raw_weights"]
        if raw.grad is None:
            return
        inactive = scene.params["gabor_active"].detach() == 0
        if step != self._last_probe_step:  # once per step (a batch calls this per view with the summed gradient)
            self._last_probe_step = step
            if self.probe.shape != raw.shape:
                self._reset_stats(scene)
            if self.config.refine_start - self.config.refine_every <= step < self.config.refine_stop:
                self.probe += torch.where(inactive, raw.grad.detach(), torch.zeros_like(raw.grad))
                radii = meta.get("radii")
                if radii is not None and meta.get("primitive_index") is None and radii.shape[0] == len(scene):
                    self.seen += (radii > 0).all(dim=-1).to(self.seen.dtype)
        raw.grad.masked_fill_(inactive, 0.0)  # the probe is a measurement: inactive weights stay at 0
        for name in ("gabor_nu", "gabor_phases"):  # inactive terms are not optimised (their gradient is 0 times
            grad = scene.params[name].grad         # something; overwritten, so a 0 * inf there cannot reach Adam)
            if grad is not None:
                grad.masked_fill_(inactive if grad.dim() == 2 else inactive[..., None], 0.0)

    def post_step(self, scene, optimizers, step) -> Dict[str, float]:
        cfg = self.config
        report: Dict[str, float] = {}
        refine = cfg.refine_start <= step <= cfg.refine_stop and step % cfg.refine_every == 0
        if refine:
            report.update(self.refine_terms(scene, optimizers, step))
        report.update(self.inner.post_step(scene, optimizers, step) or {})
        if refine or self.probe.shape[0] != len(scene):
            self._reset_stats(scene)
            self.last_report = self._counts(scene)
        report.update(self.last_report)
        return report

    @torch.no_grad()
    def refine_terms(self, scene: GaborScene, optimizers: Optimizers, step: int) -> Dict[str, float]:
        """Switch terms on where the probe says so, off where they decayed; draw new candidates; cap frequencies."""
        cfg = self.config
        n, k = len(scene), scene.num_terms
        if n == 0 or self.probe.shape != (n, k):
            return {}
        device = scene.means.device
        active = scene.params["gabor_active"].detach().clone()
        raw = scene.params["gabor_raw_weights"].detach().clone()
        nu = scene.params["gabor_nu"].detach().clone()
        phases = scene.params["gabor_phases"].detach().clone()
        weights = scene.gabor_weights.detach()
        # switch off what decayed
        off = (active == 1) & (weights.abs() < cfg.deactivate_below)
        active[off] = 0.0
        raw[off] = 0.0
        # switch on the best inactive term of the primitives with the strongest residual correlation
        score = (self.probe.abs() / self.seen.clamp(min=1)[:, None]).masked_fill(active == 1, 0.0)
        best, term = score.max(dim=-1)
        candidates = torch.nonzero(best > 0).squeeze(-1)
        budget = int(cfg.activate_fraction * n)
        if candidates.numel() > budget:
            order = torch.argsort(best[candidates], descending=True)[:budget]
            candidates = candidates[order]
        if candidates.numel():
            # also require an above-average signal, so a flat residual switches nothing on
            candidates = candidates[best[candidates] >= best[best > 0].mean()]
        on_rows, on_terms = candidates, term[candidates]
        active[on_rows, on_terms] = 1.0
        raw[on_rows, on_terms] = -torch.sign(self.probe[on_rows, on_terms]) * cfg.initial_weight
        # new candidates for every inactive term
        idle = active == 0
        nu, phases = self._candidates(idle, nu, phases, self.nu_cap(step))
        raw = torch.where(idle, torch.zeros_like(raw), raw)
        # the hard frequency limit
        norm = nu.norm(dim=-1, keepdim=True)
        nu = torch.where(norm > cfg.nu_end, nu * (cfg.nu_end / norm.clamp(min=1e-12)), nu)
        rows = torch.arange(n, device=device)
        values = {"gabor_active": active, "gabor_raw_weights": raw, "gabor_nu": nu, "gabor_phases": phases}
        changed = idle | off
        changed[on_rows, on_terms] = True
        self._overwrite_terms(scene, optimizers, rows, values, changed)
        return {"gabor_switched_on": float(on_rows.numel()), "gabor_switched_off": float(off.sum())}

    def _candidates(self, idle: torch.Tensor, nu: torch.Tensor, phases: torch.Tensor, cap: float):
        """(nu, phases) with the `idle` terms' replaced by new candidates: a random direction in the primitive frame,
        a magnitude in [cap / 2, cap] cycles per sigma, a random phase."""
        n, k = idle.shape
        device = nu.device
        direction = torch.nn.functional.normalize(torch.randn(n, k, 3, generator=self._gen), dim=-1).to(device)
        magnitude = (0.5 + 0.5 * torch.rand(n, k, generator=self._gen)).to(device) * cap
        nu = torch.where(idle[..., None], direction * magnitude[..., None], nu)
        phases = torch.where(idle, (torch.rand(n, k, generator=self._gen).to(device) * 2 - 1) * math.pi, phases)
        return nu, phases

    @torch.no_grad()
    def _first_candidates(self, scene: GaborScene) -> None:
        """Inactive terms that have no frequency yet (a fresh scene) get candidates, so the probe measures texture
        from the first step instead of a constant (nu = 0) modulation."""
        blank = (scene.params["gabor_active"] == 0) & (scene.params["gabor_nu"].abs().sum(-1) == 0)
        if bool(blank.any()):
            nu, phases = self._candidates(blank, scene.params["gabor_nu"].detach(), scene.params["gabor_phases"].detach(),
                                          self.config.nu_start)
            scene.params["gabor_nu"].data.copy_(nu)
            scene.params["gabor_phases"].data.copy_(phases)

    @staticmethod
    def _overwrite_terms(scene, optimizers, rows, values, changed: torch.Tensor) -> None:
        """Write `values`; zero the Adam moments of the changed terms only (active terms keep theirs)."""
        for name, value in values.items():
            param = scene.params[name]
            param.data.copy_(value)
            optimizer = optimizers.get(name)
            if optimizer is None:
                continue
            state = optimizer.state.get(param)
            if not state:
                continue
            mask = changed if param.dim() == 2 else changed[..., None].expand_as(param)
            for key, moment in state.items():
                if torch.is_tensor(moment) and moment.shape == param.shape:
                    moment.masked_fill_(mask, 0.0)

    # ----- state ---------------------------------------------------------------------------------------
    def statistics(self) -> Dict[str, torch.Tensor]:
        return dict(self.inner.statistics(), gabor_probe=self.probe, gabor_seen=self.seen)

    def state_dict(self) -> Dict[str, object]:
        return {"inner": self.inner.state_dict(), "probe": self.probe.clone(), "seen": self.seen.clone(),
                "generator": self._gen.get_state(), "last_probe_step": self._last_probe_step}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        if "inner" not in state:
            raise ValueError("checkpoint's strategy state has no Gabor schedule: it was not written by a --model gabor run")
        self.inner.load_state_dict(state["inner"])
        device = self.probe.device
        self.probe, self.seen = state["probe"].clone().to(device), state["seen"].clone().to(device)
        self._gen.set_state(state["generator"])
        self._last_probe_step = int(state.get("last_probe_step", -1))


def with_gabor_training(strategy: Strategy, scene: SplatScene, config: GaborTrainingConfig) -> Strategy:
    """`strategy` wrapped in GaborTraining for a GaborScene (unwrapping an earlier wrap); unchanged otherwise."""
    inner = strategy.inner if isinstance(strategy, GaborTraining) else strategy
    return GaborTraining(inner, config) if isinstance(scene, GaborScene) else inner


def check_resume_model(model: str, scene: SplatScene, path: object) -> None:
    """`--model X` (not auto) resuming a checkpoint of another scene kind: a clear error."""
    if model != "auto" and scene.KIND != model:
        raise ValueError(f"{path}: the checkpoint holds a {scene.KIND!r} scene but --model {model} was asked for; "
                         f"pass --model {scene.KIND} (or auto) to resume it")


def gabor_summary(scene: SplatScene) -> Optional[str]:
    """One log line about the terms of a Gabor scene (None for other scenes)."""
    if not isinstance(scene, GaborScene):
        return None
    active = scene.num_active_terms()
    return (f"[gabor] {active} of {len(scene) * scene.num_terms} terms active "
            f"({active / max(len(scene), 1):.2f} per primitive, K = {scene.num_terms})")
