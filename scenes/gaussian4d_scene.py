"""Gaussian4DScene: Gaussians in space-time (x, y, z, t), sliced at render time into 3D Gaussians.

Parameters (the names the optimiser, strategies and editor see):
  means (N, 3) and times (N, 1): the 4D mean (x, y, z, t);
  log_scales (N, 3) and log_scale_t (N, 1): the four log-scales along the rotated axes;
  quats (N, 4) and quats_r (N, 4): the 4D rotation as a left / right unit-quaternion pair, R4 = L(q_l) R(q_r)
    (scenes.rotation4d documents the convention; (q, conj q) is the spatial rotation by q);
  opacity_logits (N,), sh_dc (N, 1, 3), sh_rest (N, K-1, 3): as GaussianScene.

Slicing at time t (Sigma4 = R4 S S^T R4^T, split into Sxyz, Sxyz,t and Stt):
  Sigma3 = Sxyz - Sxyz,t Sxyz,t^T / Stt,  v = Sxyz,t / Stt,  mean3(t) = mu_xyz + v (t - mu_t),
  opacity(t) = o exp(-0.5 (t - mu_t)^2 / Stt).
The temporal filter `time_filter` (a standard deviation in time, stored with the scene) adds its square to Stt
before the slice (Sigma4 + f^2 e_t e_t^T): no primitive lives shorter than f, so a monocular capture, where each
time is seen from a single camera, cannot be learnt one photograph per primitive (trainers.initialise picks f from
the training views' time spacing).
Static primitives: a row whose right quaternion is the conjugate of its left one (no space-time rotation, so v = 0)
and whose temporal scale is STATIC_TIME_SCALE time spans (temporal opacity above 0.9999 over the whole range) is a
plain 3D Gaussian inside the 4D model. Training holds such rows static after every update (`hold_static`), so they
are fitted by every view of the capture instead of the few near one time; the still parts of a dynamic capture go
to them and the time-varying rows are left for what moves (after the static / dynamic split of Ex4DGS). They are
ordinary 4D rows for every other purpose (files, slicing, editing), recognised by their temporal scale.
Sigma3, v and Stt do not depend on t: the torch path caches them per parameter update outside autograd (keyed on
the parameters' identities and version counters), so playing through time only recomputes means and opacities.
Where the rasterizer's native backend exists (CPU extension, CUDA) one fused kernel pair (sf_math.h slice4 and
its VJP) does the whole slice instead, forward and backward, which is cheaper than even the cached torch path
after every optimiser step (BENCHMARKS.md, B5).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .base import SplatScene, num_sh_coeffs
from .gaussian_scene import point_params
from .rotation4d import covariance4, rotation4

PARAM_NAMES_4D = ("means", "times", "quats", "quats_r", "log_scales", "log_scale_t", "opacity_logits", "sh_dc", "sh_rest")
TEMPORAL_CUTOFF = 16.0
"""Primitives with 0.5 (t - mu_t)^2 / Stt above this (temporal opacity factor below e^-16) are culled before projection."""
_SHAPE_PARAMS = ("quats", "quats_r", "log_scales", "log_scale_t")
STATIC_TIME_SCALE = 100.0
"""Static rows' temporal standard deviation, in time spans (see the module docstring)."""
_STATIC_MARGIN = 1.0
"""A row is static while its log temporal scale is within this of the static value (one optimiser step moves it
by about the learning rate, 5e-3, before `hold_static` puts it back)."""


def conditional_of(cov4: torch.Tensor, time_filter: float = 0.0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Sigma3 (N, 3, 3) exactly symmetric, velocity v (N, 3), Stt (N,)) of 4D covariances (N, 4, 4), with the
    temporal filter's variance added to Stt (the time-independent part of the slice)."""
    stt = cov4[:, 3, 3] + time_filter ** 2
    cross = cov4[:, :3, 3]
    velocity = cross / stt[:, None]
    sigma3 = cov4[:, :3, :3] - cross[:, :, None] * velocity[:, None, :]
    return 0.5 * (sigma3 + sigma3.transpose(-1, -2)), velocity, stt


@functools.lru_cache(maxsize=None)
def _native_slice_available(kind: str) -> bool:
    """Whether the rasterizer's native backend for this device kind ('cpu' / 'cuda') can be built and used."""
    from cuda_rasterizer.backends import available_backends

    return kind in ("cpu", "cuda") and kind in available_backends()


class Gaussian4DScene(SplatScene):
    """4D Gaussians (4D-Rotor / 4DGS style): see the module docstring for the parameters and the slice."""

    PARAM_NAMES = PARAM_NAMES_4D
    KIND = "gaussian4d"

    @classmethod
    def expected_shapes(cls, n: int, sh_degree: int) -> Dict[str, tuple]:
        return {
            "means": (n, 3),
            "times": (n, 1),
            "quats": (n, 4),
            "quats_r": (n, 4),
            "log_scales": (n, 3),
            "log_scale_t": (n, 1),
            "opacity_logits": (n,),
            "sh_dc": (n, 1, 3),
            "sh_rest": (n, num_sh_coeffs(sh_degree) - 1, 3),
        }

    def __init__(
        self,
        params: Dict[str, torch.Tensor],
        sh_degree: int = 3,
        active_sh_degree: Optional[int] = None,
        time_range: Sequence[float] = (0.0, 1.0),
        time_filter: float = 0.0,
    ):
        super().__init__(params, sh_degree, active_sh_degree)
        if not (math.isfinite(float(time_filter)) and float(time_filter) >= 0):
            raise ValueError(f"time_filter must be a finite value >= 0, got {time_filter}")
        self.time_filter = float(time_filter)
        t0, t1 = float(time_range[0]), float(time_range[1])
        if not (math.isfinite(t0) and math.isfinite(t1) and t0 <= t1):
            raise ValueError(f"time_range must be finite with start <= end, got {tuple(time_range)}")
        self.time_range: Tuple[float, float] = (t0, t1)
        self.native_slice = True  # the native slice kernel where available (parity tests and benchmarks turn it off)
        self.split_in_time: str = "auto"  # how densification splits: see split_rows
        self._cache_key: Optional[tuple] = None
        self._cache: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None

    # ----- construction -------------------------------------------------------------------------------
    @classmethod
    def from_points(
        cls,
        points: Union[np.ndarray, torch.Tensor],
        times: Union[np.ndarray, torch.Tensor],
        colors: Optional[Union[np.ndarray, torch.Tensor]] = None,
        sh_degree: int = 3,
        initial_opacity: float = 0.1,
        time_range: Sequence[float] = (0.0, 1.0),
        time_scale: Optional[float] = None,
    ) -> "Gaussian4DScene":
        """Isotropic static-looking 4D Gaussians at `points` (N, 3) and `times` (N,): spatial scale = mean 3-NN
        distance, temporal scale `time_scale` (default: a quarter of the time range), no space-time rotation."""
        params = point_params(points, colors, sh_degree, initial_opacity)
        n = params["means"].shape[0]
        times_t = torch.as_tensor(np.asarray(times, dtype=np.float32)).reshape(-1)
        if times_t.numel() != n or not torch.isfinite(times_t).all():
            raise ValueError(f"times must be {n} finite values, got shape {tuple(times_t.shape)}")
        span = float(time_range[1]) - float(time_range[0])
        scale_t = time_scale if time_scale is not None else max(span, 1e-3) / 4.0
        if not scale_t > 0:
            raise ValueError(f"time_scale must be positive, got {scale_t}")
        params["times"] = times_t[:, None]
        params["quats_r"] = params["quats"].clone()
        params["log_scale_t"] = torch.full((n, 1), math.log(scale_t))
        return cls(params, sh_degree=sh_degree, active_sh_degree=0, time_range=time_range)

    # ----- the 4D Gaussians -----------------------------------------------------------------------------
    @property
    def scales4(self) -> torch.Tensor:
        return torch.exp(torch.cat([self.params["log_scales"], self.params["log_scale_t"]], dim=-1))

    def gaussians4(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(means (N, 4) as x, y, z, t; covariances (N, 4, 4), the temporal filter included; base opacities (N,))."""
        means = torch.cat([self.params["means"], self.params["times"]], dim=-1)
        covars = covariance4(self.params["quats"], self.params["quats_r"], self.scales4)
        if self.time_filter > 0:
            covars = covars + torch.diag(covars.new_tensor([0.0, 0.0, 0.0, self.time_filter ** 2]))
        return means, covars, self.opacities

    def conditional(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Time-independent parts of the slice: (Sigma3 (N, 3, 3), velocity v (N, 3), Stt (N,)).

        Cached across calls while the shape parameters are unchanged, unless autograd records (then recomputed
        so each training step has its own graph)."""
        recording = torch.is_grad_enabled() and any(self.params[k].requires_grad for k in _SHAPE_PARAMS)
        key = tuple((id(p), p._version, p.device, p.dtype) for p in (self.params[k] for k in _SHAPE_PARAMS)) + (self.time_filter,)
        if not recording and self._cache is not None and self._cache_key == key:
            return self._cache
        result = conditional_of(covariance4(self.params["quats"], self.params["quats_r"], self.scales4), self.time_filter)
        if recording:
            self._cache_key, self._cache = None, None
            return result
        self._cache_key, self._cache = key, tuple(x.detach() for x in result)
        return self._cache

    def velocities(self, rows: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Differentiable slice velocities v = Sigma_xyz,t / Stt (temporal filter included) of `rows` (all when
        None), (M, 3): what a motion prior such as trainers.motion_rigidity acts on.

        On the native backend one call of the fused slice kernel (and its VJP) gives them, as the position at time
        1 of the primitive moved to the origin at time 0: much cheaper than the torch conditional; torch elsewhere."""
        shape = {k: self.params[k] if rows is None else self.params[k].index_select(0, rows) for k in _SHAPE_PARAMS}
        scales4 = torch.exp(torch.cat([shape["log_scales"], shape["log_scale_t"]], dim=-1))
        device = scales4.device
        kind = "cuda" if scales4.is_cuda else device.type
        if self.native_slice and _native_slice_available(kind) and scales4.dtype == torch.float32 and len(scales4):
            if scales4.is_cuda:
                from cuda_rasterizer.cuda_backend import slice4
            else:
                from cuda_rasterizer.cpu_backend import slice4
            # A primitive at the origin at time 0 is at v at time 1 (v depends on neither the mean nor the opacity,
            # so they are constants here and no gradient flows to them).
            n = scales4.shape[0]
            origin, start, opacity = scales4.new_zeros(n, 3), scales4.new_zeros(n, 1), scales4.new_ones(n)
            return slice4(origin, start, shape["quats"], shape["quats_r"], scales4, opacity, 1.0, self.time_filter)[0]
        _, velocity, _ = conditional_of(covariance4(shape["quats"], shape["quats_r"], scales4), self.time_filter)
        return velocity

    def _slice_terms(self, t: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(means3 (N, 3), Sigma3 (N, 3, 3), opacities (N,), temporal exponent 0.5 dt^2 / Stt (N,)) at time t.

        One native kernel (sf_math.h slice4 with its VJP: CUDA on a GPU, OpenMP on the CPU) computes all four,
        in training too; torch (with Sigma3 / v cached while unchanged) where no native backend is available or
        `native_slice` is off."""
        means = self.params["means"]
        kind = "cuda" if means.is_cuda else means.device.type
        if self.native_slice and _native_slice_available(kind):
            if means.is_cuda:
                from cuda_rasterizer.cuda_backend import slice4
            else:
                from cuda_rasterizer.cpu_backend import slice4
            if means.dtype == torch.float32 or not means.is_cuda:
                return slice4(means, self.params["times"], self.params["quats"], self.params["quats_r"],
                              self.scales4, self.opacities, t, self.time_filter)
        sigma3, velocity, stt = self.conditional()
        dt = t - self.params["times"][:, 0]
        means3 = self.params["means"] + velocity * dt[:, None]
        exponent = 0.5 * dt * dt / stt
        return means3, sigma3, self.opacities * torch.exp(-exponent), exponent

    def slice(self, t: float) -> Dict[str, torch.Tensor]:
        """The 3D Gaussians at time t, all N of them: dict of means (N, 3), covars (N, 3, 3), opacities (N,)."""
        means3, sigma3, opacities, _ = self._slice_terms(float(t))
        return {"means": means3, "covars": sigma3, "opacities": opacities}

    def default_time(self) -> float:
        """The time rendered for cameras without one: the middle of the time range."""
        return 0.5 * (self.time_range[0] + self.time_range[1])

    def rasterizer_inputs(self, camera=None, sh_degree: Optional[int] = None) -> Dict[str, object]:
        """Keyword arguments for `cuda_rasterizer.rasterize_gaussians`: the slice at `camera.time` (the range's
        middle when None), covariances passed directly, temporally negligible primitives culled."""
        return self.rasterizer_inputs_with_index(camera, sh_degree)[0]

    def rasterizer_inputs_with_index(self, camera=None, sh_degree: Optional[int] = None) -> Tuple[Dict[str, object], torch.Tensor]:
        """`rasterizer_inputs` and, for each row they hold, its primitive's index in the scene (render() puts it in
        meta['primitive_index'] so densification statistics land on the right primitives)."""
        time = getattr(camera, "time", None)
        t = self.default_time() if time is None else float(time)
        means3, sigma3, opacities, exponent = self._slice_terms(t)
        coeffs, degree = self._sh_inputs(sh_degree)
        inputs = dict(
            means=means3, quats=None, scales=None, covars=sigma3, opacities=opacities, colors=coeffs, sh_degree=degree,
            temporal_keep=exponent.detach() <= TEMPORAL_CUTOFF,
            primitive_index=torch.arange(len(self), device=means3.device),
        )
        inputs = self._apply_render_hook(inputs)  # the editor's hide / highlight sees all N rows
        keep = inputs.pop("temporal_keep")
        index = inputs.pop("primitive_index")
        if not bool(keep.all()):
            rows = torch.nonzero(keep)[:, 0]  # one gather per tensor (cheaper than boolean masking each)
            for name in ("means", "covars", "opacities", "colors"):
                inputs[name] = inputs[name].index_select(0, rows)
            index = index.index_select(0, rows)
        return inputs, index

    # ----- static rows --------------------------------------------------------------------------------
    @property
    def static_log_scale_t(self) -> float:
        """The log temporal scale that marks a row as static (STATIC_TIME_SCALE time spans)."""
        return math.log(STATIC_TIME_SCALE * max(self.time_range[1] - self.time_range[0], 1e-6))

    def static_rows(self, log_scale_t: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(N,) bool: the static rows (of `log_scale_t` (N, 1) rows when given, else of the scene)."""
        values = self.params["log_scale_t"] if log_scale_t is None else log_scale_t
        return values.detach()[:, 0] > self.static_log_scale_t - _STATIC_MARGIN

    @torch.no_grad()
    def make_static(self, rows: torch.Tensor) -> None:
        """Turn the rows selected by the (N,) bool mask `rows` into static 3D Gaussians: no space-time rotation
        (right quaternion = conjugate of the left) and the static temporal scale; mean time and spatial shape kept."""
        rows = rows.to(self.params["quats"].device)
        quats, quats_r, log_t = self.params["quats"], self.params["quats_r"], self.params["log_scale_t"]
        quats_r.copy_(torch.where(rows[:, None], quats * quats.new_tensor([1.0, -1.0, -1.0, -1.0]), quats_r))
        log_t.copy_(torch.where(rows[:, None], log_t.new_full((), self.static_log_scale_t), log_t))

    def hold_static(self) -> None:
        """Put the static rows back to their exact static form after an optimiser step moved them."""
        self.make_static(self.static_rows())

    # ----- densification ------------------------------------------------------------------------------
    def split_rows(self, rows: Dict[str, torch.Tensor], generator: torch.Generator) -> List[Dict[str, torch.Tensor]]:
        """Two children per row. A split in time samples the children's 4D means from the parent's 4D Gaussian and
        divides all four scales by 1.6 (shorter-lived children); a split in space leaves the fourth (temporal) axis
        of the primitive's frame whole: offsets along the three others only, the temporal scale kept.

        `split_in_time`: "always", "never", or "auto" (default): in time where the primitive moves farther than its
        own size during its life (|v| sqrt(Stt) above its largest sliced standard deviation), so a trajectory that a
        straight line fits badly is cut into shorter pieces; in space elsewhere, so still parts keep their duration
        and stay constrained by every view of their time span."""
        scales4 = torch.exp(torch.cat([rows["log_scales"], rows["log_scale_t"]], dim=-1))
        rot = rotation4(rows["quats"], rows["quats_r"])
        in_time = self._split_in_time_rows(rows, scales4)
        scales4 = torch.cat([scales4[:, :3], scales4[:, 3:] * in_time[:, None]], dim=1)
        children = []
        for _ in range(2):
            offset = torch.randn(scales4.shape, generator=generator).to(scales4.device) * scales4
            offset = (rot @ offset[..., None])[..., 0]
            child = dict(rows)
            child["means"] = rows["means"] + offset[:, :3]
            child["times"] = rows["times"] + offset[:, 3:]
            child["log_scales"] = rows["log_scales"] - math.log(1.6)
            child["log_scale_t"] = rows["log_scale_t"] - math.log(1.6) * in_time[:, None]
            children.append(child)
        return children

    def _split_in_time_rows(self, rows: Dict[str, torch.Tensor], scales4: torch.Tensor) -> torch.Tensor:
        """(M,) 1.0 where split_rows splits the row in time, 0.0 where in space (see split_rows)."""
        mode = self.split_in_time
        if mode not in ("auto", "always", "never"):
            raise ValueError(f"split_in_time must be 'auto', 'always' or 'never', got {mode!r}")
        dynamic = ~self.static_rows(rows["log_scale_t"])  # static rows split in space only, and stay static
        if mode != "auto":
            return (dynamic & (mode == "always")).to(scales4.dtype)
        sigma3, velocity, stt = conditional_of(covariance4(rows["quats"], rows["quats_r"], scales4), self.time_filter)
        sweep = velocity.norm(dim=-1) * stt.sqrt()  # how far it moves during its life
        size = torch.diagonal(sigma3, dim1=-2, dim2=-1).clamp(min=0).amax(dim=-1).sqrt()
        return ((sweep > size) & dynamic).to(scales4.dtype)

    # ----- files --------------------------------------------------------------------------------------
    def save_ply(self, path: Union[str, Path]) -> None:
        """Write the 4D PLY (layout in scenes.ply: standard 3DGS fields hold each primitive's slice at its own
        mean time, extra fields the exact 4D parameters)."""
        from .ply import write_gaussian4d_ply

        with torch.no_grad():
            sigma3 = self.conditional()[0].detach().cpu()
        write_gaussian4d_ply(path, {k: v.detach().cpu() for k, v in self.params.items()}, sigma3, self.time_range,
                             self.time_filter)

    @classmethod
    def from_ply(cls, path: Union[str, Path]) -> "Gaussian4DScene":
        from .ply import read_gaussian4d_ply

        params, degree, time_range, time_filter = read_gaussian4d_ply(path)
        return cls(params, sh_degree=degree, time_range=time_range, time_filter=time_filter)

    def settings(self) -> Dict[str, object]:
        return dict(super().settings(), time_range=self.time_range, time_filter=self.time_filter)

    @classmethod
    def from_state(cls, state: Dict[str, object]) -> "Gaussian4DScene":
        kind = state.get("kind", "gaussian")
        if kind != cls.KIND:
            raise ValueError(f"checkpoint holds a {kind!r} scene, not a {cls.KIND!r} one ({cls.__name__})")
        return cls(state["params"], sh_degree=state["sh_degree"], active_sh_degree=state["active_sh_degree"],
                   time_range=state.get("time_range", (0.0, 1.0)), time_filter=state.get("time_filter", 0.0))
