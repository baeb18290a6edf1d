"""The `.splat` format web viewers read: 32 bytes per splat, no header, SH degree 0.

Per splat, little endian: float32 position xyz, float32 scale xyz (linear), uint8 RGBA (colour = 0.5 + SH_C0 * dc,
alpha = sigmoid(opacity)), uint8 quaternion wxyz (normalised q * 128 + 128). Splats are written sorted by
size * opacity, largest first, so a viewer that streams the file shows the big, opaque ones first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

import numpy as np
import torch

from .atomic import atomic_path

SH_C0 = 0.28209479177387814
BYTES_PER_SPLAT = 32
SPLAT_DTYPE = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
assert SPLAT_DTYPE.itemsize == BYTES_PER_SPLAT


def _to_u8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p / (1.0 - p))


def encode_splat(params: Dict[str, torch.Tensor]) -> bytes:
    """GaussianScene parameters (CPU tensors) -> `.splat` bytes (higher SH bands are dropped)."""
    means = params["means"].numpy().astype(np.float64)
    log_scales = params["log_scales"].numpy().astype(np.float64)
    opacity = 1.0 / (1.0 + np.exp(-params["opacity_logits"].numpy().astype(np.float64)))
    colour = 0.5 + SH_C0 * params["sh_dc"].numpy().reshape(-1, 3).astype(np.float64)
    quats = params["quats"].numpy().astype(np.float64)
    norms = np.linalg.norm(quats, axis=1, keepdims=True)
    quats = np.where(norms > 0, quats / np.maximum(norms, 1e-30), np.array([1.0, 0, 0, 0]))
    order = np.argsort(-(np.exp(log_scales.sum(axis=1)) * opacity), kind="stable")
    out = np.empty(len(means), dtype=SPLAT_DTYPE)
    out["position"] = means[order]
    out["scale"] = np.exp(log_scales[order])
    out["rgba"][:, :3] = _to_u8(colour[order] * 255.0)
    out["rgba"][:, 3] = _to_u8(opacity[order] * 255.0)
    out["rot"] = _to_u8(quats[order] * 128.0 + 128.0)
    return out.tobytes()


def decode_splat(data: bytes, source: str = "<bytes>") -> Dict[str, torch.Tensor]:
    """`.splat` bytes -> GaussianScene parameters (SH degree 0). Errors name `source`."""
    if len(data) == 0:
        raise ValueError(f"{source}: empty .splat file")
    if len(data) % BYTES_PER_SPLAT:
        raise ValueError(
            f"{source}: not a .splat file or truncated: {len(data)} bytes is not a multiple of {BYTES_PER_SPLAT} "
            f"(ends {len(data) % BYTES_PER_SPLAT} bytes into a splat)"
        )
    rec = np.frombuffer(data, dtype=SPLAT_DTYPE)
    means = rec["position"].astype(np.float32)
    scales = rec["scale"].astype(np.float64)
    if not (np.isfinite(means).all() and np.isfinite(scales).all()):
        raise ValueError(f"{source}: not a .splat file (positions or scales contain NaN or Inf)")
    if (scales <= 0).any():
        bad = int(np.argmax((scales <= 0).any(axis=1)))
        raise ValueError(f"{source}: not a .splat file (splat {bad} has a non-positive scale {scales[bad].tolist()})")
    rgba = rec["rgba"].astype(np.float64) / 255.0
    alpha = np.clip(rgba[:, 3], 0.5 / 255.0, 1.0 - 0.5 / 255.0)  # 0 and 255 would be infinite logits
    quats = (rec["rot"].astype(np.float64) - 128.0) / 128.0
    zero = np.linalg.norm(quats, axis=1) < 1e-6
    quats[zero] = [1.0, 0.0, 0.0, 0.0]
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    n = len(rec)
    params = {
        "means": means,
        "quats": quats.astype(np.float32),
        "log_scales": np.log(scales).astype(np.float32),
        "opacity_logits": _logit(alpha).astype(np.float32),
        "sh_dc": ((rgba[:, :3] - 0.5) / SH_C0).astype(np.float32)[:, None, :],
        "sh_rest": np.zeros((n, 0, 3), np.float32),
    }
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in params.items()}


def write_splat(path: Union[str, Path], params: Dict[str, torch.Tensor]) -> None:
    """Write `.splat` atomically."""
    payload = encode_splat(params)
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)


def read_splat(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f".splat file not found: {path}")
    return decode_splat(path.read_bytes(), str(path))
