"""Gabor scene PLY: the standard 3DGS layout (scenes.ply) plus the Gabor terms as extra float32 vertex properties.

After the standard properties, for each term k = 0..K-1 (raw values, exactly as GaborScene stores them):
  gabor_nu_{k}_0, gabor_nu_{k}_1, gabor_nu_{k}_2   frequency in the primitive's frame, cycles per sigma per local axis
  gabor_w_{k}                                      raw weight u (effective w = a u / (1 + sum a |u|))
  gabor_phase_{k}                                  phase in radians
  gabor_active_{k}                                 1 when the term is on, 0 when off
and a header comment "splatforge gabor num_terms K". Tools that ignore unknown properties (and splatforge with
GaussianScene.from_ply) open the file as the plain Gaussian envelopes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np
import torch

from .ply import _params_from_vertex, _read_ply, header_property_names, write_gaussian_ply

PREFIX = "gabor_"
COMMENT = "splatforge gabor num_terms"
# group -> (parameter name, regular expression of its property names, components per term)
_GROUPS = {
    "gabor_nu": ("gabor_nu", re.compile(r"^gabor_nu_(\d+)_([0-2])$"), 3),
    "gabor_w": ("gabor_raw_weights", re.compile(r"^gabor_w_(\d+)$"), 1),
    "gabor_phase": ("gabor_phases", re.compile(r"^gabor_phase_(\d+)$"), 1),
    "gabor_active": ("gabor_active", re.compile(r"^gabor_active_(\d+)$"), 1),
}


def gabor_property_names(num_terms: int) -> List[str]:
    """The extra property names, in file order."""
    names = []
    for k in range(num_terms):
        names += [f"gabor_nu_{k}_{i}" for i in range(3)]
        names += [f"gabor_w_{k}", f"gabor_phase_{k}", f"gabor_active_{k}"]
    return names


def _columns(params: Dict[str, torch.Tensor]) -> Dict[str, np.ndarray]:
    k_terms = params["gabor_nu"].shape[1]
    nu = params["gabor_nu"].numpy()
    out: Dict[str, np.ndarray] = {}
    for k in range(k_terms):
        for i in range(3):
            out[f"gabor_nu_{k}_{i}"] = nu[:, k, i]
        out[f"gabor_w_{k}"] = params["gabor_raw_weights"].numpy()[:, k]
        out[f"gabor_phase_{k}"] = params["gabor_phases"].numpy()[:, k]
        out[f"gabor_active_{k}"] = params["gabor_active"].numpy()[:, k]
    return out


def write_gabor_ply(path: Union[str, Path], params: Dict[str, torch.Tensor]) -> None:
    """Write GaborScene parameters (CPU tensors) atomically; non-finite values are refused before anything is written."""
    columns = _columns(params)
    for name, values in columns.items():
        if not np.isfinite(values).all():
            raise ValueError(f"{path}: Gabor property {name!r} holds NaN or Inf; nothing written")
    num_terms = params["gabor_nu"].shape[1]
    write_gaussian_ply(path, params, extra=columns, comments=[f"{COMMENT} {num_terms}"])


def is_gabor_ply(path: Union[str, Path]) -> bool:
    """Whether the PLY carries any Gabor property (then it must carry a complete set)."""
    return any(name.startswith(PREFIX) for name in header_property_names(path))


def _term_layout(path: Path, names: List[str]) -> int:
    """The term count K the file's Gabor properties describe; errors name the file and the offending properties."""
    gabor = [n for n in names if n.startswith(PREFIX)]
    found: Dict[str, Dict[int, set]] = {group: {} for group in _GROUPS}
    for name in gabor:
        for group, (_, pattern, _) in _GROUPS.items():
            match = pattern.match(name)
            if match:
                comp = int(match.group(2)) if pattern.groups == 2 else 0
                found[group].setdefault(int(match.group(1)), set()).add(comp)
                break
        else:
            raise ValueError(f"{path}: unknown Gabor vertex property {name!r} (expected {', '.join(g + '_*' for g in _GROUPS)})")
    missing = [group + "_*" for group, terms in found.items() if not terms]
    if missing:
        raise ValueError(f"{path}: incomplete Gabor PLY: it has some Gabor properties but none of {', '.join(missing)}")
    counts = {}
    for group, terms in found.items():
        components = _GROUPS[group][2]
        k = max(terms) + 1
        gaps = [t for t in range(k) if t not in terms]
        if gaps:
            raise ValueError(f"{path}: Gabor properties {group}_* skip term(s) {gaps} (terms must run 0..{k - 1})")
        partial = [t for t in range(k) if len(terms[t]) != components]
        if partial:
            raise ValueError(f"{path}: Gabor property gabor_nu_{partial[0]}_* lacks some of its 3 components "
                             f"(found {sorted(terms[partial[0]])})")
        counts[group] = k
    if len(set(counts.values())) != 1:
        listed = ", ".join(f"{g}_* {c}" for g, c in counts.items())
        raise ValueError(f"{path}: Gabor term counts differ between properties ({listed}); every group must have the same")
    return next(iter(counts.values()))


def read_gabor_ply(path: Union[str, Path], num_terms_if_plain: int = 4) -> Tuple[Dict[str, torch.Tensor], int]:
    """(GaborScene parameters, SH degree) from a Gabor PLY, or from a plain 3DGS PLY with every term off."""
    from .gabor_scene import zero_terms

    path = Path(path)
    ply = _read_ply(path)
    vertex = ply["vertex"]
    names = [p.name for p in vertex.properties]
    has_gabor = any(n.startswith(PREFIX) for n in names)
    num_terms = _term_layout(path, names) if has_gabor else num_terms_if_plain
    columns = {}
    if has_gabor:
        for name in gabor_property_names(num_terms):
            values = np.array(vertex[name], dtype=np.float32)  # a copy, never a view of the mapping
            if not np.isfinite(values).all():
                raise ValueError(f"{path}: Gabor vertex property {name!r} contains NaN or Inf")
            columns[name] = values
    params, degree = _params_from_vertex(path, vertex)
    del vertex, ply
    n = params["means"].shape[0]
    if not has_gabor:
        params.update(zero_terms(n, num_terms))
        return params, degree
    nu = np.stack([np.stack([columns[f"gabor_nu_{k}_{i}"] for i in range(3)], axis=1) for k in range(num_terms)], axis=1)
    stack = lambda prefix: np.stack([columns[f"{prefix}_{k}"] for k in range(num_terms)], axis=1).reshape(n, num_terms)
    active = stack("gabor_active")
    bad = ~np.isin(active, (0.0, 1.0))
    if bad.any():
        k = int(np.nonzero(bad.any(axis=0))[0][0])
        raise ValueError(f"{path}: Gabor vertex property 'gabor_active_{k}' must hold only 0 and 1")
    params.update(
        gabor_nu=torch.from_numpy(np.ascontiguousarray(nu.reshape(n, num_terms, 3))),
        gabor_raw_weights=torch.from_numpy(np.ascontiguousarray(stack("gabor_w"))),
        gabor_phases=torch.from_numpy(np.ascontiguousarray(stack("gabor_phase"))),
        gabor_active=torch.from_numpy(np.ascontiguousarray(active)),
    )
    return params, degree
