"""Read and write the standard 3DGS PLY layout (Inria / gsplat / SuperSplat compatible).

Vertex properties, binary little endian: x y z nx ny nz f_dc_0..2 f_rest_0..(3K-4) opacity scale_0..2 rot_0..3,
with f_rest stored channel-major (all red coefficients, then green, then blue), raw (pre-activation) values.
4D Gaussian PLYs add properties after these (layout below, at PROPERTIES_4D).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .atomic import atomic_path

_BASE = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
_TAIL = ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def gaussian_ply_property_names(num_rest_coeffs: int) -> list:
    return _BASE + [f"f_rest_{i}" for i in range(3 * num_rest_coeffs)] + _TAIL


def write_gaussian_ply(
    path: Union[str, Path],
    params: Dict[str, torch.Tensor],
    extra: Optional[Dict[str, np.ndarray]] = None,
    comments: Sequence[str] = (),
) -> None:
    """Write GaussianScene parameters to `path` atomically; `extra` adds float32 vertex properties after the
    standard ones (name -> (N,) values), `comments` header comment lines."""
    from plyfile import PlyData, PlyElement

    means = params["means"].numpy().astype(np.float32)
    n = means.shape[0]
    rest = params["sh_rest"].numpy().astype(np.float32)  # (N, K-1, 3)
    columns = [
        means,
        np.zeros((n, 3), np.float32),
        params["sh_dc"].numpy().reshape(n, 3).astype(np.float32),
        rest.transpose(0, 2, 1).reshape(n, 3 * rest.shape[1]),  # explicit width: n may be 0
        params["opacity_logits"].numpy().reshape(n, 1).astype(np.float32),
        params["log_scales"].numpy().astype(np.float32),
        params["quats"].numpy().astype(np.float32),
    ]
    names = gaussian_ply_property_names(rest.shape[1])
    for name, values in (extra or {}).items():
        columns.append(np.asarray(values, np.float32).reshape(n, 1))
        names.append(name)
    data = np.concatenate(columns, axis=1)
    vertex = np.empty(n, dtype=[(name, "<f4") for name in names])
    for i, name in enumerate(names):
        vertex[name] = data[:, i]
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertex, "vertex")], byte_order="<", comments=list(comments)).write(str(tmp))


def read_gaussian_ply(path: Union[str, Path]) -> Tuple[Dict[str, torch.Tensor], int]:
    """Read a 3DGS PLY; returns (parameters, SH degree). Errors name the file and the missing field."""
    path = Path(path)
    return _params_from_vertex(path, _read_ply(path)["vertex"])


def _read_ply(path: Path):
    """The parsed PLY with a 'vertex' element, or an error naming the file."""
    from plyfile import PlyData

    if not path.is_file():
        raise FileNotFoundError(f"Gaussian PLY not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic not in (b"ply\n", b"ply\r"):
        found = "an empty file" if not magic else f"it starts with {magic!r}, not 'ply'"
        raise ValueError(f"{path}: not a PLY file ({found}); pass a 3D Gaussian splatting .ply or a .pt checkpoint")
    try:
        # Memory-mapped: plyfile's unmapped reader decodes value by value (16 s for 100k Gaussians, 40 ms mapped).
        # Every column is copied out below and the mapping dropped, so the file is never held open.
        ply = PlyData.read(str(path), mmap="r")
    except Exception as exc:  # plyfile raises several types for malformed headers and bodies
        detail = str(exc) or type(exc).__name__
        if "end-of-file" in detail:
            raise ValueError(f"{path}: truncated PLY file, it ends before all its data ({detail}); "
                             f"re-export or copy it again") from None
        raise ValueError(f"{path}: malformed PLY file ({detail})") from None
    if "vertex" not in [el.name for el in ply.elements]:
        raise ValueError(f"{path}: PLY has no 'vertex' element, so it holds no Gaussians")
    return ply


def _params_from_vertex(path: Path, vertex) -> Tuple[Dict[str, torch.Tensor], int]:
    names = [p.name for p in vertex.properties]
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2"] + _TAIL
    missing = [name for name in required if name not in names]
    if missing:
        listed = ", ".join(repr(name) for name in missing)
        kind = "a point cloud or mesh" if not any(n.startswith(("f_dc_", "scale_", "rot_")) for n in names) else "incomplete"
        raise ValueError(f"{path}: not a 3D Gaussian splatting PLY ({kind}): missing vertex "
                         f"propert{'y' if len(missing) == 1 else 'ies'} {listed}")
    rest_names = sorted((n for n in names if n.startswith("f_rest_")), key=lambda s: int(s.split("_")[-1]))
    if len(rest_names) % 3:
        raise ValueError(f"{path}: f_rest_* count {len(rest_names)} is not a multiple of 3")
    num_rest = len(rest_names) // 3
    degree = int(round(np.sqrt(num_rest + 1))) - 1
    if (degree + 1) ** 2 - 1 != num_rest or degree > 3:
        raise ValueError(f"{path}: {len(rest_names)} f_rest_* properties do not match an SH degree 0..3")

    def column(name: str) -> np.ndarray:
        return np.array(vertex[name], dtype=np.float32)  # a copy, never a view of the mapping

    n = len(vertex.data)
    rest = np.stack([column(name) for name in rest_names], axis=1) if rest_names else np.zeros((n, 0), np.float32)
    params = {
        "means": np.stack([column(a) for a in "xyz"], axis=1),
        "quats": np.stack([column(f"rot_{i}") for i in range(4)], axis=1),
        "log_scales": np.stack([column(f"scale_{i}") for i in range(3)], axis=1),
        "opacity_logits": column("opacity"),
        "sh_dc": np.stack([column(f"f_dc_{i}") for i in range(3)], axis=1)[:, None, :],
        "sh_rest": rest.reshape(n, 3, num_rest).transpose(0, 2, 1),
    }
    del vertex  # release this reference to the mapping (the caller holds no other)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in params.items()}
    for name, tensor in tensors.items():
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{path}: field {name!r} contains NaN or Inf")
    return tensors, degree


# ----- 4D Gaussians ---------------------------------------------------------------------------------------------
# Standard properties hold each primitive's 3D slice at its own mean time (peak opacity): x y z, opacity and SH as
# stored, scale_0..2 / rot_0..3 the eigen-decomposition of Sigma3, so 3DGS tools open the file as a time-collapsed
# 3D scene. The exact 4D parameters follow as extra properties (all float32, raw values):
#   t, scale4_0..3 (the four log-scales: x, y, z axes then time), rotl_0..3 / rotr_0..3 (left / right wxyz
#   quaternions of the 4D rotation). Header comments "splatforge gaussian4d time_range <t0> <t1>" and
#   "splatforge gaussian4d time_filter <f>" keep the time range and the temporal filter (0 when absent).
PROPERTIES_4D = ["t"] + [f"scale4_{i}" for i in range(4)] + [f"rotl_{i}" for i in range(4)] + [f"rotr_{i}" for i in range(4)]
_TIME_COMMENT = "splatforge gaussian4d time_range"
_FILTER_COMMENT = "splatforge gaussian4d time_filter"


def header_property_names(path: Union[str, Path]) -> list:
    """Vertex property names from a PLY header, without reading the body."""
    names = []
    with open(path, "rb") as handle:
        for raw in handle:
            line = raw.decode("ascii", errors="replace").strip()
            if line.startswith("property"):
                names.append(line.split()[-1])
            if line == "end_header" or len(names) > 10_000:
                break
    return names


def is_gaussian4d_ply(path: Union[str, Path]) -> bool:
    """Whether the PLY carries any 4D property (then it must carry all of them)."""
    return any(name in PROPERTIES_4D for name in header_property_names(path))


def write_gaussian4d_ply(
    path: Union[str, Path], params: Dict[str, torch.Tensor], sigma3: torch.Tensor, time_range: Sequence[float],
    time_filter: float = 0.0,
) -> None:
    """Write Gaussian4DScene parameters (CPU tensors), their peak-time 3D covariances `sigma3` (N, 3, 3), the time
    range and the temporal filter."""
    from .rotation4d import rotmat_to_quat

    evals, evecs = torch.linalg.eigh(sigma3.double())
    evecs = evecs * torch.where(torch.linalg.det(evecs) < 0, -1.0, 1.0).to(evecs)[:, None, None]  # proper rotation
    standard = dict(params)
    standard["log_scales"] = (0.5 * torch.log(evals.clamp(min=1e-30))).float()
    standard["quats"] = rotmat_to_quat(evecs).float()
    log4 = torch.cat([params["log_scales"], params["log_scale_t"]], dim=1)
    columns = [params["times"]] + [log4[:, i] for i in range(4)]
    columns += [params["quats"][:, i] for i in range(4)] + [params["quats_r"][:, i] for i in range(4)]
    extra = {name: col.numpy().reshape(-1) for name, col in zip(PROPERTIES_4D, columns)}
    comment = f"{_TIME_COMMENT} {float(time_range[0])!r} {float(time_range[1])!r}"
    filter_comment = f"{_FILTER_COMMENT} {float(time_filter)!r}"
    write_gaussian_ply(path, standard, extra=extra, comments=[comment, filter_comment])


def read_gaussian4d_ply(path: Union[str, Path]) -> Tuple[Dict[str, torch.Tensor], int, Tuple[float, float], float]:
    """Read a 4D Gaussian PLY: (parameters, SH degree, time range, temporal filter). Errors name the file and
    missing properties."""
    path = Path(path)
    ply = _read_ply(path)
    vertex = ply["vertex"]
    names = [p.name for p in vertex.properties]
    missing = [name for name in PROPERTIES_4D if name not in names]
    if missing:
        raise ValueError(f"{path}: not a 4D Gaussian PLY, missing vertex properties {missing}")
    params, degree = _params_from_vertex(path, vertex)

    def stack(prefix: str, count: int) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(vertex[f"{prefix}{i}"], np.float32) for i in range(count)], axis=1))

    log4 = stack("scale4_", 4)
    params.update(
        times=torch.from_numpy(np.array(vertex["t"], np.float32)).reshape(-1, 1),  # a copy, not the mapping
        log_scales=log4[:, :3].contiguous(),
        log_scale_t=log4[:, 3:].contiguous(),
        quats=stack("rotl_", 4),
        quats_r=stack("rotr_", 4),
    )
    for name in ("times", "log_scales", "log_scale_t", "quats", "quats_r"):
        if not torch.isfinite(params[name]).all():
            raise ValueError(f"{path}: field {name!r} contains NaN or Inf")
    time_range, time_filter = (0.0, 1.0), 0.0
    for comment in ply.comments:
        if comment.startswith(_TIME_COMMENT):
            try:
                t0, t1 = (float(x) for x in comment[len(_TIME_COMMENT):].split())
            except ValueError as exc:
                raise ValueError(f"{path}: malformed header comment {comment!r}") from exc
            time_range = (t0, t1)
        if comment.startswith(_FILTER_COMMENT):
            try:
                time_filter = float(comment[len(_FILTER_COMMENT):])
            except ValueError as exc:
                raise ValueError(f"{path}: malformed header comment {comment!r}") from exc
            if not (math.isfinite(time_filter) and time_filter >= 0):
                raise ValueError(f"{path}: header comment {comment!r}: the time filter must be finite and >= 0")
    return params, degree, time_range, time_filter
