"""GaussianScene: a set of 3D Gaussians with SH colour, in the parameterisation the optimiser works on."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch

from .base import SH_C0, SplatScene, num_sh_coeffs

PARAM_NAMES = ("means", "quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest")


def rgb_to_sh_dc(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb - 0.5) / SH_C0


def sh_dc_to_rgb(dc: torch.Tensor) -> torch.Tensor:
    return dc * SH_C0 + 0.5


def knn_mean_distance(points: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean distance from each point to its k nearest neighbours (scipy KD-tree)."""
    from scipy.spatial import cKDTree

    if len(points) < 2:
        return np.full(len(points), 0.01)
    k_eff = min(k, len(points) - 1)
    dist, _ = cKDTree(points).query(points, k=k_eff + 1)
    return dist[:, 1:].mean(axis=1)


def point_params(
    points: Union[np.ndarray, torch.Tensor],
    colors: Optional[Union[np.ndarray, torch.Tensor]],
    sh_degree: int,
    initial_opacity: float,
    scale_multiplier: float = 1.0,
) -> Dict[str, torch.Tensor]:
    """GaussianScene parameters of isotropic Gaussians at `points`, scale = mean 3-NN distance (shared by the 4D
    scene's initialisation)."""
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
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1.0
    params = {
        "means": torch.from_numpy(pts).float(),
        "quats": quats,
        "log_scales": torch.from_numpy(np.log(dist)).float()[:, None].repeat(1, 3),
        "opacity_logits": torch.full((n,), math.log(initial_opacity / (1 - initial_opacity))),
        "sh_dc": rgb_to_sh_dc(torch.from_numpy(rgb).float())[:, None, :],
        "sh_rest": torch.zeros(n, num_sh_coeffs(sh_degree) - 1, 3),
    }
    return params


class GaussianScene(SplatScene):
    """3D Gaussians: means, quaternions (wxyz), log-scales, opacity logits, SH DC and rest coefficients.

    Parameters live in `self.params` (a ParameterDict) so strategies can grow and shrink them in place.
    """

    PARAM_NAMES = PARAM_NAMES
    KIND = "gaussian"

    @classmethod
    def expected_shapes(cls, n: int, sh_degree: int) -> Dict[str, tuple]:
        return {
            "means": (n, 3),
            "quats": (n, 4),
            "log_scales": (n, 3),
            "opacity_logits": (n,),
            "sh_dc": (n, 1, 3),
            "sh_rest": (n, num_sh_coeffs(sh_degree) - 1, 3),
        }

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
        params = point_params(points, colors, sh_degree, initial_opacity, scale_multiplier)
        return cls(params, sh_degree=sh_degree, active_sh_degree=0)

    def rasterizer_inputs(self, camera=None, sh_degree: Optional[int] = None) -> Dict[str, object]:
        """Keyword arguments for `cuda_rasterizer.rasterize_gaussians` (the scene's half of render())."""
        coeffs, degree = self._sh_inputs(sh_degree)
        inputs = dict(
            means=self.means,
            quats=self.quats,
            scales=self.scales,
            opacities=self.opacities,
            colors=coeffs,
            sh_degree=degree,
        )
        return self._apply_render_hook(inputs)

    def split_rows(self, rows: Dict[str, torch.Tensor], generator: torch.Generator) -> List[Dict[str, torch.Tensor]]:
        """Two children per row: means sampled from the parent Gaussian, scales divided by 1.6."""
        from cuda_rasterizer.reference import quat_to_rotmat

        scales = torch.exp(rows["log_scales"])
        rot = quat_to_rotmat(rows["quats"])
        children = []
        for _ in range(2):
            offset = torch.randn(scales.shape, generator=generator).to(scales.device) * scales
            child = dict(rows)
            child["means"] = rows["means"] + (rot @ offset[..., None])[..., 0]
            child["log_scales"] = torch.log(scales / 1.6)
            children.append(child)
        return children

    # ----- files --------------------------------------------------------------------------------------
    def save_ply(self, path: Union[str, Path]) -> None:
        from .ply import write_gaussian_ply

        write_gaussian_ply(path, {k: v.detach().cpu() for k, v in self.params.items()})

    @classmethod
    def from_ply(cls, path: Union[str, Path]) -> "GaussianScene":
        from .ply import read_gaussian_ply

        params, degree = read_gaussian_ply(path)
        return cls(params, sh_degree=degree)
