"""Parameter surgery shared by the densification strategies: every edit keeps the Adam state in step."""

from __future__ import annotations

from typing import Callable, Dict

import torch

from scenes import GaussianScene

Optimizers = Dict[str, torch.optim.Optimizer]


def _edit(scene: GaussianScene, optimizers: Optimizers, param_fn: Callable, state_fn: Callable, names=None) -> None:
    """Replace each parameter p (all, or those in `names`) by param_fn(name, p), its Adam moments m by state_fn(m)."""
    for name in list(scene.params.keys()) if names is None else list(names):
        old = scene.params[name]
        new = torch.nn.Parameter(param_fn(name, old.detach()), requires_grad=old.requires_grad)
        scene.params[name] = new
        optimizer = optimizers.get(name)
        if optimizer is None:
            continue
        for group in optimizer.param_groups:
            group["params"] = [new if p is old else p for p in group["params"]]
        state = optimizer.state.pop(old, None)
        if state is not None:
            optimizer.state[new] = {k: (state_fn(v) if torch.is_tensor(v) and v.dim() > 0 else v) for k, v in state.items()}


@torch.no_grad()
def keep(scene: GaussianScene, optimizers: Optimizers, mask: torch.Tensor) -> None:
    """Keep only the primitives where `mask` is True."""
    mask = mask.to(scene.means.device)
    _edit(scene, optimizers, lambda _, p: p[mask], lambda m: m[mask])


@torch.no_grad()
def append(scene: GaussianScene, optimizers: Optimizers, new_params: Dict[str, torch.Tensor]) -> None:
    """Append primitives (one tensor per parameter name); their Adam moments start at zero."""
    count = next(iter(new_params.values())).shape[0]
    _edit(
        scene,
        optimizers,
        lambda name, p: torch.cat([p, new_params[name].to(p)]),
        lambda m: torch.cat([m, torch.zeros((count,) + m.shape[1:], dtype=m.dtype, device=m.device)]),
    )


@torch.no_grad()
def overwrite(scene: GaussianScene, optimizers: Optimizers, index: torch.Tensor, values: Dict[str, torch.Tensor]) -> None:
    """Set the named parameters of primitives `index` to `values` and zero those rows' Adam moments."""
    index = index.to(scene.means.device)

    def set_rows(name: str, p: torch.Tensor) -> torch.Tensor:
        p = p.clone()
        p[index] = values[name].to(p)
        return p

    def zero_rows(m: torch.Tensor) -> torch.Tensor:
        m = m.clone()
        m[index] = 0
        return m

    _edit(scene, optimizers, set_rows, zero_rows, names=values.keys())


def gather(scene: GaussianScene, index: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Copies of the parameter rows `index` (a mask or indices), on the scene's device."""
    index = index.to(scene.means.device)
    return {name: p.detach()[index].clone() for name, p in scene.params.items()}
