"""GaborScene: 3D Gabor primitives, a Gaussian envelope times 1 + a sum of K directional cosine waves.

Density (DESIGN.md section 5): o G(x) (1 + sum_k w_k cos(f_k . (x - mu) + phi_k)).

Parameters (the names the optimiser, strategies and editor see), besides GaussianScene's:
  gabor_nu (N, K, 3): frequencies in the primitive's own frame, in cycles per sigma along each local axis; the
    world-space angular frequency is f_k = 2 pi R diag(1 / s) nu_k, so a term rotates and scales with its primitive
    (an editor transform or a split needs no extra work for them, beyond the split's rescale below);
  gabor_raw_weights (N, K): u; the effective weights are w = a u / (1 + sum_k a_k |u_k|), so sum_k |w_k| < 1 and the
    modulation stays in (0, 2); u = 0 is exactly a Gaussian;
  gabor_phases (N, K): phi_k in radians;
  gabor_active (N, K): the active mask a (0 / 1, not optimised): inactive terms contribute nothing. Training
    (trainers.gabor_schedule) switches terms on where the residual asks for them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch

from cuda_rasterizer.gabor_frequencies import world_frequencies  # f = 2 pi R diag(1 / s) nu: one native pass on CPU

from .base import SplatScene, num_sh_coeffs
from .gaussian_scene import GaussianScene, point_params

NUM_TERMS = 4
MAX_TERMS = 8  # cuda_rasterizer.gabor.MAX_TERMS: the native kernels handle 1..8 terms
GABOR_PARAMS = ("gabor_nu", "gabor_raw_weights", "gabor_phases", "gabor_active")
FROZEN_PARAMS = ("gabor_active",)
"""Parameters held in the ParameterDict (so every row edit carries them) but never optimised."""


def effective_weights(raw: torch.Tensor, active: torch.Tensor, probe: bool = False) -> torch.Tensor:
    """w = a u / (1 + sum_k a_k |u_k|): (N, K), sum_k |w_k| < 1, exactly 0 where u = 0 or a = 0.

    `probe`: inactive terms still weigh exactly 0 but pass their gradient, dL/dw = dL/du (1 / (1 + sum)), so training
    can measure which inactive terms the image residual asks for (trainers.gabor_schedule)."""
    masked = raw * active
    if probe:
        masked = masked + (raw - raw.detach()) * (1.0 - active)
    return masked / (1.0 + masked.abs().sum(dim=-1, keepdim=True))


def zero_terms(n: int, num_terms: int = NUM_TERMS) -> Dict[str, torch.Tensor]:
    """Gabor parameters of n exact Gaussians: every term off, weight, frequency and phase 0."""
    return {
        "gabor_nu": torch.zeros(n, num_terms, 3),
        "gabor_raw_weights": torch.zeros(n, num_terms),
        "gabor_phases": torch.zeros(n, num_terms),
        "gabor_active": torch.zeros(n, num_terms),
    }


class GaborScene(SplatScene):
    """3D Gabor splats: see the module docstring for the parameters and the density."""

    PARAM_NAMES = GaussianScene.PARAM_NAMES + GABOR_PARAMS
    KIND = "gabor"

    def __init__(
        self,
        params: Dict[str, torch.Tensor],
        sh_degree: int = 3,
        active_sh_degree: Optional[int] = None,
        num_terms: Optional[int] = None,
    ):
        if num_terms is None:
            nu = params.get("gabor_nu")
            num_terms = int(nu.shape[1]) if nu is not None and nu.dim() == 3 else NUM_TERMS
        if not 1 <= int(num_terms) <= MAX_TERMS:
            raise ValueError(f"GaborScene num_terms must be in 1..{MAX_TERMS}, got {num_terms}")
        self.num_terms = int(num_terms)  # before the base checks shapes against it
        super().__init__(params, sh_degree, active_sh_degree)
        active = self.params["gabor_active"]
        if not bool(((active == 0) | (active == 1)).all()):
            raise ValueError("GaborScene parameter 'gabor_active' must hold only 0 and 1")
        for name in FROZEN_PARAMS:
            self.params[name].requires_grad_(False)
        self.probe_inactive = False  # set by training: inactive terms' weights pass gradients (effective_weights)

    def expected_shapes(self, n: int, sh_degree: int) -> Dict[str, tuple]:  # instance method: K is per scene
        k = self.num_terms
        return {
            "means": (n, 3),
            "quats": (n, 4),
            "log_scales": (n, 3),
            "opacity_logits": (n,),
            "sh_dc": (n, 1, 3),
            "sh_rest": (n, num_sh_coeffs(sh_degree) - 1, 3),
            "gabor_nu": (n, k, 3),
            "gabor_raw_weights": (n, k),
            "gabor_phases": (n, k),
            "gabor_active": (n, k),
        }

    # ----- construction -------------------------------------------------------------------------------
    @classmethod
    def from_gaussian_params(cls, params: Dict[str, torch.Tensor], sh_degree: int = 3,
                             active_sh_degree: Optional[int] = None, num_terms: int = NUM_TERMS) -> "GaborScene":
        """Gaussian parameters (GaussianScene's names) as a GaborScene with every term off: renders identically."""
        n = params["means"].shape[0]
        full = {name: params[name] for name in GaussianScene.PARAM_NAMES}
        full.update(zero_terms(n, num_terms))
        return cls(full, sh_degree=sh_degree, active_sh_degree=active_sh_degree, num_terms=num_terms)

    @classmethod
    def from_gaussian_scene(cls, scene: GaussianScene, num_terms: int = NUM_TERMS) -> "GaborScene":
        params = {k: v.detach().cpu() for k, v in scene.params.items()}
        return cls.from_gaussian_params(params, scene.sh_degree, scene.active_sh_degree, num_terms)

    @classmethod
    def from_points(cls, points, colors=None, sh_degree: int = 3, initial_opacity: float = 0.1,
                    scale_multiplier: float = 1.0, num_terms: int = NUM_TERMS) -> "GaborScene":
        """As GaussianScene.from_points, every Gabor term off."""
        params = point_params(points, colors, sh_degree, initial_opacity, scale_multiplier)
        return cls.from_gaussian_params(params, sh_degree, active_sh_degree=0, num_terms=num_terms)

    def to_gaussian_scene(self) -> GaussianScene:
        """The envelopes alone (the Gabor terms dropped)."""
        params = {k: self.params[k].detach().cpu() for k in GaussianScene.PARAM_NAMES}
        return GaussianScene(params, sh_degree=self.sh_degree, active_sh_degree=self.active_sh_degree)

    # ----- the terms ------------------------------------------------------------------------------------
    @property
    def gabor_weights(self) -> torch.Tensor:
        """(N, K) effective weights."""
        return effective_weights(self.params["gabor_raw_weights"], self.params["gabor_active"], self.probe_inactive)

    @property
    def gabor_freqs(self) -> torch.Tensor:
        """(N, K, 3) world-space angular frequencies."""
        return world_frequencies(self.params["gabor_nu"], self.quats, self.scales)

    def num_active_terms(self) -> int:
        return int(self.params["gabor_active"].detach().sum().item())

    def extra_metrics(self) -> Dict[str, float]:
        """What logs and metrics report besides the primitive count."""
        n = max(len(self), 1)
        active = self.num_active_terms()
        return {"gabor_active_terms": float(active), "gabor_terms_per_primitive": active / n,
                "gabor_num_terms": float(self.num_terms)}

    def rasterizer_inputs(self, camera=None, sh_degree: Optional[int] = None) -> Dict[str, object]:
        """GaussianScene's keyword arguments for `cuda_rasterizer.rasterize_gaussians` plus `gabor_freqs`
        (N, K, 3), `gabor_weights` (N, K) and `gabor_phases` (N, K)."""
        coeffs, degree = self._sh_inputs(sh_degree)
        scales = self.scales
        on = self.params["gabor_active"] == 1
        freqs = world_frequencies(self.params["gabor_nu"], self.quats, scales)
        # Inactive terms weigh 0, so their frequencies and phases have no true gradient: detached, nothing the
        # rasterizer returns for them (0 times a large number) reaches nu, the scales or the rotations.
        freqs = torch.where(on[..., None], freqs, freqs.detach())
        phases = torch.where(on, self.params["gabor_phases"], self.params["gabor_phases"].detach())
        inputs = dict(
            means=self.means,
            quats=self.quats,
            scales=scales,
            opacities=self.opacities,
            colors=coeffs,
            sh_degree=degree,
            gabor_freqs=freqs,
            gabor_weights=self.gabor_weights,
            gabor_phases=phases,
        )
        return self._apply_render_hook(inputs)

    # ----- densification ------------------------------------------------------------------------------
    def split_rows(self, rows: Dict[str, torch.Tensor], generator: torch.Generator) -> List[Dict[str, torch.Tensor]]:
        """Two children per row as GaussianScene's split (means sampled from the parent, scales / 1.6), each keeping
        the parent's world-space pattern: nu rescaled by child / parent scale (same world frequencies) and phases
        shifted by f . (mu_child - mu_parent). The weights are kept, so the children's sum carries the parent's
        texture once, not twice."""
        children = GaussianScene.split_rows(self, rows, generator)
        freqs = world_frequencies(rows["gabor_nu"], rows["quats"], torch.exp(rows["log_scales"]))
        for child in children:
            child.update(self.rescaled_terms(rows, child["log_scales"]))
            shift = torch.einsum("nkj,nj->nk", freqs, child["means"] - rows["means"])
            child["gabor_phases"] = wrap_phase(rows["gabor_phases"] + shift)
        return children

    @staticmethod
    def rescaled_terms(rows: Dict[str, torch.Tensor], new_log_scales: torch.Tensor) -> Dict[str, torch.Tensor]:
        """`gabor_nu` for rows whose log-scales become `new_log_scales`, keeping their world-space frequencies."""
        ratio = torch.exp(new_log_scales - rows["log_scales"])
        return {"gabor_nu": rows["gabor_nu"] * ratio[:, None, :]}

    def scale_dependent_rows(self, index: torch.Tensor, new_log_scales: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Rows of parameters that must change with a scale change of primitives `index` (MCMC relocation) so their
        texture keeps its world-space frequencies."""
        rows = {k: self.params[k].detach()[index] for k in ("log_scales", "gabor_nu")}
        return self.rescaled_terms(rows, new_log_scales)

    # ----- files --------------------------------------------------------------------------------------
    def save_ply(self, path: Union[str, Path]) -> None:
        """The 3DGS PLY plus the Gabor terms as extra vertex properties (scenes.gabor_ply)."""
        from .gabor_ply import write_gabor_ply

        write_gabor_ply(path, {k: v.detach().cpu() for k, v in self.params.items()})

    @classmethod
    def from_ply(cls, path: Union[str, Path], num_terms: int = NUM_TERMS) -> "GaborScene":
        """A Gabor PLY exactly; a plain 3DGS PLY as exact Gaussians (`num_terms` terms, all off)."""
        from .gabor_ply import read_gabor_ply

        params, degree = read_gabor_ply(path, num_terms_if_plain=num_terms)
        return cls(params, sh_degree=degree)

    def settings(self) -> Dict[str, object]:
        return dict(super().settings(), num_terms=self.num_terms)

    @classmethod
    def from_state(cls, state: Dict[str, object]) -> "GaborScene":
        kind = state.get("kind", "gaussian")
        if kind != cls.KIND:
            raise ValueError(f"checkpoint holds a {kind!r} scene, not a {cls.KIND!r} one ({cls.__name__})")
        return cls(state["params"], sh_degree=state["sh_degree"], active_sh_degree=state["active_sh_degree"],
                   num_terms=state.get("num_terms"))


def wrap_phase(phase: torch.Tensor) -> torch.Tensor:
    """Phases wrapped into [-pi, pi) (cos is 2 pi periodic)."""
    return torch.remainder(phase + math.pi, 2.0 * math.pi) - math.pi


def dense_density(scene: GaborScene, points: torch.Tensor) -> torch.Tensor:
    """(P,) 3D density sum_i o_i G_i(x) m_i(x) at `points` (P, 3): a brute-force oracle for tests (O(N P))."""
    from cuda_rasterizer.reference import quat_scale_to_covar

    inputs = {k: v for k, v in scene.rasterizer_inputs().items()}
    d = points[:, None, :] - inputs["means"][None]  # (P, N, 3)
    precision = torch.linalg.inv(quat_scale_to_covar(inputs["quats"], inputs["scales"]))
    envelope = torch.exp(-0.5 * torch.einsum("pni,nij,pnj->pn", d, precision, d))
    arg = torch.einsum("nkj,pnj->pnk", inputs["gabor_freqs"], d) + inputs["gabor_phases"][None]
    modulation = 1.0 + (inputs["gabor_weights"][None] * torch.cos(arg)).sum(-1)
    return (inputs["opacities"][None] * envelope * modulation).sum(-1)
