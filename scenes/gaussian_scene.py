"""GaussianScene: a set of 3D Gaussians with SH colour, in the parameterisation the optimiser works on."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np
import torch

SH_C0 = 0.28209479177387814
PARAM_NAMES = ("means", "quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest")


def rgb_to_sh_dc(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb - 0.5) / SH_C0


def sh_dc_to_rgb(dc: torch.Tensor) -> torch.Tensor:
    return dc * SH_C0 + 0.5


def num_sh_coeffs(degree: int) -> int:
    return (degree + 1) ** 2


def knn_mean_distance(points: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean distance from each point to its k nearest neighbours (scipy KD-tree)."""
    from scipy.spatial import cKDTree

    if len(points) < 2:
        return np.full(len(points), 0.01)
    k_eff = min(k, len(points) - 1)
    dist, _ = cKDTree(points).query(points, k=k_eff + 1)
    return dist[:, 1:].mean(axis=1)


class GaussianScene(torch.nn.Module):
    """3D Gaussians: means, quaternions (wxyz), log-scales, opacity logits, SH DC and rest coefficients.

    Parameters live in `self.params` (a ParameterDict) so strategies can grow and shrink them in place.
    """

    def __init__(self, params: Dict[str, torch.Tensor], sh_degree: int = 3, active_sh_degree: Optional[int] = None):
        super().__init__()
        if not 0 <= sh_degree <= 3:
            raise ValueError(f"sh_degree must be in 0..3, got {sh_degree}")
        missing = [name for name in PARAM_NAMES if name not in params]
        if missing:
            raise ValueError(f"GaussianScene is missing parameters: {missing}")
        n = params["means"].shape[0]
        expected = {
            "means": (n, 3),
            "quats": (n, 4),
            "log_scales": (n, 3),
            "opacity_logits": (n,),
            "sh_dc": (n, 1, 3),
            "sh_rest": (n, num_sh_coeffs(sh_degree) - 1, 3),
        }
        for name, shape in expected.items():
            got = tuple(params[name].shape)
            if got != shape:
                raise ValueError(f"GaussianScene parameter {name!r} must have shape {shape}, got {got}")
            if not torch.isfinite(params[name]).all():
                raise ValueError(f"GaussianScene parameter {name!r} contains NaN or Inf")
        self.params = torch.nn.ParameterDict(
            {name: torch.nn.Parameter(params[name].detach().clone().float()) for name in PARAM_NAMES}
        )
        self.sh_degree = sh_degree
        self.active_sh_degree = sh_degree if active_sh_degree is None else active_sh_degree

    # ----- construction -------------------------------------------------------------------------------
    @classmethod
    def from_points(
        cls,
        points: Union[np.ndarray, torch.Tensor],
        colors: Optional[Union[np.ndarray, torch.Tensor]] = None,
        sh_degree: int = 3,
        initial_opacity: float = 0.1,
        scale_multiplier: float = 1.0,
        seed: int = 0,
    ) -> "GaussianScene":
        """Isotropic Gaussians at `points` (N, 3) with colours (N, 3) in [0, 1], scale = mean 3-NN distance."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
            raise ValueError(f"points must have shape (N, 3) with N > 0, got {pts.shape}")
        if not np.isfinite(pts).all():
            raise ValueError("points contain NaN or Inf")
        n = len(pts)
        if colors is None:
            rgb = np.full((n, 3), 0.5)
        else:
            rgb = np.asarray(colors, dtype=np.float64)
            if rgb.shape != (n, 3):
                raise ValueError(f"colors must have shape ({n}, 3), got {rgb.shape}")
            if rgb.max() > 1.0:
                rgb = rgb / 255.0
        dist = np.clip(knn_mean_distance(pts) * scale_multiplier, 1e-7, None)
        gen = torch.Generator().manual_seed(seed)
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1.0
        del gen
        params = {
            "means": torch.from_numpy(pts).float(),
            "quats": quats,
            "log_scales": torch.from_numpy(np.log(dist)).float()[:, None].repeat(1, 3),
            "opacity_logits": torch.full((n,), math.log(initial_opacity / (1 - initial_opacity))),
            "sh_dc": rgb_to_sh_dc(torch.from_numpy(rgb).float())[:, None, :],
            "sh_rest": torch.zeros(n, num_sh_coeffs(sh_degree) - 1, 3),
        }
        return cls(params, sh_degree=sh_degree, active_sh_degree=0)

    # ----- activated views ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.params["means"].shape[0]

    @property
    def num_gaussians(self) -> int:
        return len(self)

    @property
    def means(self) -> torch.Tensor:
        return self.params["means"]

    @property
    def quats(self) -> torch.Tensor:
        return self.params["quats"]

    @property
    def scales(self) -> torch.Tensor:
        return torch.exp(self.params["log_scales"])

    @property
    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.params["opacity_logits"])

    @property
    def sh_coeffs(self) -> torch.Tensor:
        return torch.cat([self.params["sh_dc"], self.params["sh_rest"]], dim=1)

    def rasterizer_inputs(self, camera=None, sh_degree: Optional[int] = None) -> Dict[str, object]:
        """Keyword arguments for `cuda_rasterizer.rasterize_gaussians` (the scene's half of render())."""
        degree = self.active_sh_degree if sh_degree is None else min(sh_degree, self.sh_degree)
        coeffs = self.sh_coeffs[:, : num_sh_coeffs(degree)]
        inputs = dict(
            means=self.means,
            quats=self.quats,
            scales=self.scales,
            opacities=self.opacities,
            colors=coeffs,
            sh_degree=degree,
        )
        hook = getattr(self, "render_hook", None)  # optional: editing's hide / highlight (scenes.editing)
        return inputs if hook is None else hook(inputs)

    # ----- files --------------------------------------------------------------------------------------
    def save_ply(self, path: Union[str, Path]) -> None:
        from .ply import write_gaussian_ply

        write_gaussian_ply(path, {k: v.detach().cpu() for k, v in self.params.items()})

    @classmethod
    def from_ply(cls, path: Union[str, Path]) -> "GaussianScene":
        from .ply import read_gaussian_ply

        params, degree = read_gaussian_ply(path)
        return cls(params, sh_degree=degree)

    def state(self) -> Dict[str, object]:
        return {
            "params": {k: v.detach().cpu().clone() for k, v in self.params.items()},
            "sh_degree": self.sh_degree,
            "active_sh_degree": self.active_sh_degree,
        }

    @classmethod
    def from_state(cls, state: Dict[str, object]) -> "GaussianScene":
        return cls(state["params"], sh_degree=state["sh_degree"], active_sh_degree=state["active_sh_degree"])
