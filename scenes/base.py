"""What every Gaussian scene model shares: a ParameterDict checked against per-class shapes, activated views, SH
colour inputs, the editing render hook, and checkpoint state. Subclasses add how they become rasterizer inputs."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from .sh_inputs import gather_sh

SH_C0 = 0.28209479177387814


def num_sh_coeffs(degree: int) -> int:
    return (degree + 1) ** 2


class SplatScene(torch.nn.Module):
    """Base of GaussianScene and Gaussian4DScene. Parameters live in `self.params` (a ParameterDict, names in
    `PARAM_NAMES`) so densification strategies and the editor can grow, shrink and rewrite them by name."""

    PARAM_NAMES: Tuple[str, ...] = ()
    KIND = "base"

    @classmethod
    def expected_shapes(cls, n: int, sh_degree: int) -> Dict[str, tuple]:
        raise NotImplementedError

    def __init__(self, params: Dict[str, torch.Tensor], sh_degree: int = 3, active_sh_degree: Optional[int] = None):
        super().__init__()
        label = type(self).__name__
        if not 0 <= sh_degree <= 3:
            raise ValueError(f"sh_degree must be in 0..3, got {sh_degree}")
        missing = [name for name in self.PARAM_NAMES if name not in params]
        if missing:
            raise ValueError(f"{label} is missing parameters: {missing}")
        n = params["means"].shape[0]
        for name, shape in self.expected_shapes(n, sh_degree).items():
            got = tuple(params[name].shape)
            if got != shape:
                raise ValueError(f"{label} parameter {name!r} must have shape {shape}, got {got}")
            if not torch.isfinite(params[name]).all():
                raise ValueError(f"{label} parameter {name!r} contains NaN or Inf")
        self.params = torch.nn.ParameterDict(
            {name: torch.nn.Parameter(params[name].detach().clone().float()) for name in self.PARAM_NAMES}
        )
        self.sh_degree = sh_degree
        self.active_sh_degree = sh_degree if active_sh_degree is None else active_sh_degree

    # ----- activated views ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.params["means"].shape[0]

    @property
    def num_gaussians(self) -> int:
        return len(self)

    @property
    def means(self) -> torch.Tensor:
        """(N, 3) spatial means."""
        return self.params["means"]

    @property
    def quats(self) -> torch.Tensor:
        return self.params["quats"]

    @property
    def scales(self) -> torch.Tensor:
        """(N, 3) spatial scales (what size-based densification and pruning compare with the scene scale)."""
        return torch.exp(self.params["log_scales"])

    @property
    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.params["opacity_logits"])

    @property
    def sh_coeffs(self) -> torch.Tensor:
        return torch.cat([self.params["sh_dc"], self.params["sh_rest"]], dim=1)

    def _sh_inputs(self, sh_degree: Optional[int]) -> Tuple[torch.Tensor, int]:
        """SH coefficients cut to the degree rendered (the active one unless `sh_degree` asks for less)."""
        degree = self.active_sh_degree if sh_degree is None else min(sh_degree, self.sh_degree)
        return gather_sh(self.params["sh_dc"], self.params["sh_rest"], num_sh_coeffs(degree)), degree

    def _apply_render_hook(self, inputs: Dict[str, object]) -> Dict[str, object]:
        hook = getattr(self, "render_hook", None)  # optional: editing's hide / highlight (scenes.editing)
        return inputs if hook is None else hook(inputs)

    # ----- densification ------------------------------------------------------------------------------
    def split_rows(self, rows: Dict[str, torch.Tensor], generator: torch.Generator) -> List[Dict[str, torch.Tensor]]:
        """Two children per parameter row set `rows` (a strategy's split): sampled from the parent, scales / 1.6."""
        raise NotImplementedError

    def scale_dependent_rows(self, index: torch.Tensor, new_log_scales: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Other parameter rows that must change when a strategy sets primitives `index` to `new_log_scales`
        (MCMC relocation); none for Gaussians (GaborScene rescales its frame-relative frequencies)."""
        return {}

    # ----- checkpoints --------------------------------------------------------------------------------
    def settings(self) -> Dict[str, object]:
        """Everything in `state()` except the parameters."""
        return {"kind": self.KIND, "sh_degree": self.sh_degree, "active_sh_degree": self.active_sh_degree}

    def state(self) -> Dict[str, object]:
        return dict(self.settings(), params={k: v.detach().cpu().clone() for k, v in self.params.items()})

    @classmethod
    def from_state(cls, state: Dict[str, object]) -> "SplatScene":
        kind = state.get("kind", "gaussian")
        if kind != cls.KIND:
            raise ValueError(f"checkpoint holds a {kind!r} scene, not a {cls.KIND!r} one ({cls.__name__})")
        return cls(state["params"], sh_degree=state["sh_degree"], active_sh_degree=state["active_sh_degree"])
