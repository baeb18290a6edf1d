"""Velocity rigidity for 4D scenes: neighbouring primitives that live at the same time should move alike.

A monocular dynamic capture (D-NeRF: one photograph per time) sees each moment from a single camera, so the
photometric loss alone lets every primitive pick the velocity that fits its one or two photographs; between the
training times (and from other viewpoints) the moving parts then fall apart. Real-time 4DGS (Yang et al.) adds a
rigidity term on the sliced velocities v = Sigma_xyz,t / Sigma_tt of spatial nearest neighbours; this is our
version of that prior (over the time-varying rows only: a scene's static rows have v = 0 by construction):

  loss = weight * E_edges[ w_ij |v_i - v_j| ] * horizon * time_span / scene_scale

over the edges (i, j) of a k-nearest-neighbour graph of the primitives' 4D means (time scaled by a typical
primitive's size over its duration), each edge weighted by spatial closeness exp(-d_ij / median d) and temporal overlap
exp(-(t_i - t_j)^2 / (2 (Stt_i + Stt_j))), so a part that is near another only at different times (an arm that
swings back through where it was) is not tied to it. The velocity difference is measured as the displacement
it causes over `horizon` of the time span, relative to the scene scale, so the weight does not depend on the
capture's units. The graph is rebuilt every `refresh_every` steps and whenever densification changed the rows;
each step samples `edges_per_step` edges uniformly (an unbiased estimate of the mean over all edges), so the cost
does not grow with the scene.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import torch


@dataclass
class RigidityConfig:
    """4D scenes only: the velocity-rigidity prior (see trainers.motion_rigidity)."""

    weight: Optional[float] = None
    """Weight of the term; 0 turns it off. Default: 5 for monocular captures (one view per time, e.g. D-NeRF),
    where each moment is seen once and motion needs the prior (with the default horizon this equals real-time
    4DGS's lambda_rigid = 1 on D-NeRF lego, scene scale 5.1); 0 for multi-view video, where the cameras pin motion
    down (as that method also does). The log says which."""
    neighbours: int = 8
    """Nearest neighbours per primitive in the graph."""
    horizon: float = 0.1
    """Velocity differences are compared as displacements over this fraction of the time span."""
    edges_per_step: int = 16384
    """Graph edges sampled per step (all of them when the graph has fewer)."""
    refresh_every: int = 100
    """Rebuild the neighbour graph every this many steps (and after every densification that changed the rows)."""
    start_step: int = 0
    """First step that applies the term."""


def check_rigidity_config(cfg: RigidityConfig) -> None:
    """Reject impossible settings with the option's name."""
    checks = (
        ("weight", cfg.weight is None or (cfg.weight >= 0 and math.isfinite(cfg.weight))),
        ("neighbours", cfg.neighbours >= 1),
        ("horizon", cfg.horizon > 0 and math.isfinite(cfg.horizon)),
        ("edges_per_step", cfg.edges_per_step >= 1),
        ("refresh_every", cfg.refresh_every >= 1),
        ("start_step", cfg.start_step >= 0),
    )
    for name, ok in checks:
        if not ok:
            raise ValueError(f"--rigidity.{name.replace('_', '-')} is out of range: {getattr(cfg, name)}")


MONOCULAR_WEIGHT = 5.0


def rigidity_weight(config: RigidityConfig, per_time: float) -> Tuple[float, str]:
    """(weight, why): the configured weight, or the default for a capture with `per_time` training views per time."""
    if config.weight is not None:
        return float(config.weight), "asked for"
    if per_time < 1.5:
        return MONOCULAR_WEIGHT, f"{per_time:.1f} views per time: monocular"
    return 0.0, f"{per_time:.1f} views per time: multi-view, off"


class VelocityRigidity:
    """The term for one training run: holds the neighbour graph and draws edges from `generator`."""

    def __init__(self, config: RigidityConfig, scene_scale: float, time_span: float, seed: int = 0):
        check_rigidity_config(config)
        if config.weight is None:
            config = dataclasses.replace(config, weight=MONOCULAR_WEIGHT)
        self.config = config
        self.scene_scale = float(scene_scale)
        self.time_span = float(time_span)
        self.generator = torch.Generator().manual_seed(seed + 7919)
        self._src: Optional[torch.Tensor] = None
        self._dst: Optional[torch.Tensor] = None
        self._weight: Optional[torch.Tensor] = None
        self._rows = -1
        self._built_at = -1
        self.stale = True

    @property
    def active(self) -> bool:
        return self.config.weight > 0

    def mark_stale(self) -> None:
        """Rows were added, removed or reordered (densification): rebuild the graph before the next use."""
        self.stale = True

    def state_dict(self) -> Dict[str, object]:
        """Graph and random state, so a resumed run draws the same edges as an uninterrupted one (CPU tensors)."""
        cpu = lambda t: None if t is None else t.detach().cpu()  # noqa: E731
        return {"src": cpu(self._src), "dst": cpu(self._dst), "weight": cpu(self._weight), "rows": self._rows,
                "built_at": self._built_at, "stale": self.stale, "generator": self.generator.get_state()}

    def load_state_dict(self, state: Dict[str, object], device: torch.device) -> None:
        to = lambda t: None if t is None else t.to(device)  # noqa: E731
        self._src, self._dst, self._weight = to(state["src"]), to(state["dst"]), to(state["weight"])
        self._rows, self._built_at, self.stale = int(state["rows"]), int(state["built_at"]), bool(state["stale"])
        self.generator.set_state(state["generator"])

    def graph(self, scene, step: int) -> Dict[str, torch.Tensor]:
        """The current edges (src, dst, weight), rebuilt when stale, when the row count changed or on schedule."""
        n = len(scene)
        if self.stale or n != self._rows or step - self._built_at >= self.config.refresh_every or self._src is None:
            self._build(scene)
            self._rows, self._built_at, self.stale = n, step, False
        return {"src": self._src, "dst": self._dst, "weight": self._weight}

    @torch.no_grad()
    def _build(self, scene) -> None:
        from scipy.spatial import cKDTree

        # Static rows (Gaussian4DScene.static_rows) have v = 0 by construction: they take no part in the graph.
        static = scene.static_rows() if hasattr(scene, "static_rows") else None
        moving = None if static is None or not bool(static.any()) else torch.nonzero(~static)[:, 0]
        pick = (lambda t: t) if moving is None else (lambda t: t.index_select(0, moving))  # noqa: E731
        means = pick(scene.params["means"].detach())
        times = pick(scene.params["times"].detach()[:, 0])
        sigma3, _, stt = (pick(x) for x in scene.conditional())
        n = means.shape[0]
        k = min(self.config.neighbours, max(n - 1, 0))
        device = means.device
        if k == 0:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            self._src, self._dst, self._weight = empty, empty, torch.zeros(0, device=device)
            return
        # Neighbours in space-time, time measured in units of a typical primitive's duration scaled to a typical
        # primitive's size, so primitives far apart in time are not neighbours even where their paths cross.
        size = torch.diagonal(sigma3, dim1=-2, dim2=-1).clamp(min=0).amax(dim=-1).sqrt().median()
        duration = stt.clamp(min=0).sqrt().median().clamp(min=1e-12)
        points = torch.cat([means, times[:, None] * (size / duration)], dim=1).cpu().double().numpy()
        dist, idx = cKDTree(points).query(points, k=k + 1, workers=-1)
        dist, idx = dist[:, 1:], idx[:, 1:]  # drop the point itself
        src = np.repeat(np.arange(n), k)
        dst = idx.reshape(-1)
        d = dist.reshape(-1)
        valid = np.isfinite(d) & (dst < n)
        src, dst, d = src[valid], dst[valid], d[valid]
        length = max(float(np.median(d)), 1e-12)
        src_t = torch.as_tensor(src, device=device)
        dst_t = torch.as_tensor(dst, device=device)
        spatial = torch.exp(-torch.as_tensor(d, device=device, dtype=means.dtype) / length)
        dt = times[src_t] - times[dst_t]
        overlap = torch.exp(-0.5 * dt * dt / (stt[src_t] + stt[dst_t]).clamp(min=1e-12))
        if moving is not None:  # back to scene rows
            src_t, dst_t = moving.index_select(0, src_t), moving.index_select(0, dst_t)
        self._src, self._dst, self._weight = src_t, dst_t, spatial * overlap

    def loss(self, scene, step: int) -> torch.Tensor:
        """The term at this step (a 0-dim tensor on the scene's device; 0 before `start_step` or when off)."""
        device = scene.params["means"].device
        if not self.active or step < self.config.start_step or len(scene) < 2:
            return torch.zeros((), device=device)
        g = self.graph(scene, step)
        edges = g["src"].numel()
        if edges == 0:
            return torch.zeros((), device=device)
        if edges > self.config.edges_per_step:
            pick = torch.randint(edges, (self.config.edges_per_step,), generator=self.generator).to(device)
            src, dst, weight = g["src"][pick], g["dst"][pick], g["weight"][pick]
        else:
            src, dst, weight = g["src"], g["dst"], g["weight"]
        if len(scene) <= 2 * src.numel():
            # no more primitives than sampled endpoints: every velocity in one slice call is cheaper than finding the
            # distinct endpoints (a sort) and gathering their parameters
            velocity = scene.velocities()
            diff = velocity[src] - velocity[dst]
        else:
            rows, inverse = torch.unique(torch.cat([src, dst]), return_inverse=True)
            velocity = scene.velocities(rows)
            diff = velocity[inverse[: src.numel()]] - velocity[inverse[src.numel():]]
        norm = torch.sqrt((diff * diff).sum(dim=-1) + 1e-20)
        scale = self.config.horizon * self.time_span / self.scene_scale
        return self.config.weight * scale * (weight * norm).mean()
