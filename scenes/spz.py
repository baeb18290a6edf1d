"""Niantic's `.spz` compressed splat format (gzip container, versions 2 and 3), written from the public description.

The gzip stream holds a 16-byte header (magic "NGSP" 0x5053474e, version, count, SH degree, fractional bits, flags,
reserved; little endian) followed by one array per attribute, in this order:
positions (3 x 24-bit signed fixed point, `fractional_bits` fraction bits), alphas (sigmoid(opacity) * 255),
colours ((0.15 dc + 0.5) * 255), scales ((log_scale + 10) * 16), rotations (v3: 32-bit smallest-three, the largest
component's index in the top 2 bits and three 10-bit sign+magnitude fields scaled by sqrt(2); v2: xyz * 127.5 + 127.5
with w >= 0 implied), SH rest (round(128 x) + 128, coefficient-major with the colour channel fastest; degree-1 rounded
to 5 significant bits, higher bands to 4, so gzip finds repeats).

Coordinates are stored as they are (as Niantic's ply_to_spz does); `flip_yz=True` converts our OpenCV-style RDF
frame to the RUB frame the SPZ library calls canonical (and back on read), flipping quaternion and SH signs.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Dict, Union

import numpy as np
import torch

from .atomic import atomic_path

MAGIC = 0x5053474E
HEADER = struct.Struct("<IIIBBBB")
COLOR_SCALE = 0.15
FLAG_ANTIALIASED = 0x1
FLAG_EXTENSIONS = 0x2
MAX_POINTS = 10_000_000  # the reference loader refuses more
# Sign of each SH rest basis function (degrees 1..3, standard real-SH order) under (x, y, z) -> (x, -y, -z):
# the parity of its y and z powers. Degree 1: y, z, x; degree 2: xy, yz, 3z^2-1, xz, x^2-y^2; degree 3: y(3x^2-y^2),
# xyz, y(4z^2-x^2-y^2), z(2z^2-3x^2-3y^2), x(4z^2-x^2-y^2), z(x^2-y^2), x(x^2-3y^2).
SH_FLIP_YZ = np.array([-1, -1, 1, -1, 1, 1, -1, 1, -1, 1, -1, -1, 1, -1, 1], np.float64)


def _u8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def _pack_smallest_three(q: np.ndarray) -> np.ndarray:
    """(N, 4) unit quaternions in xyzw order -> (N, 4) bytes of the v3 smallest-three encoding."""
    n = len(q)
    largest = np.argmax(np.abs(q), axis=1)
    sign = np.where(q[np.arange(n), largest] < 0, -1.0, 1.0)
    q = q * sign[:, None]  # -q is the same rotation: make the dropped component positive
    word = largest.astype(np.uint64)
    for i in range(4):
        keep = largest != i
        mag = np.floor(511.0 * np.abs(q[:, i]) / np.sqrt(0.5) + 0.5).clip(0, 511).astype(np.uint64)
        field = ((q[:, i] < 0).astype(np.uint64) << np.uint64(9)) | mag
        word = np.where(keep, (word << np.uint64(10)) | field, word)
    word = word.astype(np.uint32)
    return np.stack([(word >> s) & 0xFF for s in (0, 8, 16, 24)], axis=1).astype(np.uint8)


def _unpack_smallest_three(b: np.ndarray) -> np.ndarray:
    word = b[:, 0].astype(np.uint32) | b[:, 1].astype(np.uint32) << 8 | b[:, 2].astype(np.uint32) << 16 | b[:, 3].astype(np.uint32) << 24
    largest = (word >> 30).astype(np.int64)
    q = np.zeros((len(b), 4))
    for i in (3, 2, 1, 0):  # the last component stored sits in the lowest bits
        keep = largest != i
        value = np.sqrt(0.5) * (word & 511).astype(np.float64) / 511.0
        value = np.where((word >> 9) & 1, -value, value)
        q[:, i] = np.where(keep, value, 0.0)
        word = np.where(keep, word >> 10, word)
    rows = np.arange(len(b))
    q[rows, largest] = np.sqrt(np.clip(1.0 - (q**2).sum(axis=1), 0.0, None))
    return q


def _quantise_sh(values: np.ndarray, bits: int) -> np.ndarray:
    bucket = 1 << (8 - bits)
    q = np.round(values * 128.0).astype(np.int64) + 128
    q = (q + bucket // 2) // bucket * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def encode_spz(params: Dict[str, torch.Tensor], sh_degree: int, version: int = 3, flip_yz: bool = False, fractional_bits: int = 12) -> bytes:
    """GaussianScene parameters (CPU tensors) -> gzip-compressed `.spz` bytes."""
    if version not in (2, 3):
        raise ValueError(f"SPZ version must be 2 or 3, got {version}")
    means = params["means"].numpy().astype(np.float64)
    n = len(means)
    if n > MAX_POINTS:
        raise ValueError(f"SPZ readers refuse more than {MAX_POINTS} splats; this scene has {n}")
    flip = np.array([1.0, -1.0, -1.0]) if flip_yz else np.ones(3)
    extent = float(np.abs(means).max()) if n else 0.0
    while fractional_bits > 0 and extent * (1 << fractional_bits) >= (1 << 23) - 1:
        fractional_bits -= 1  # fewer fraction bits for large scenes, so every position fits in 24 bits
    if extent * (1 << fractional_bits) >= (1 << 23) - 1:
        raise ValueError(f"a position coordinate {extent:g} is too large for SPZ's 24-bit fixed point")
    fixed = np.round(means * flip * (1 << fractional_bits)).astype(np.int64) & 0xFFFFFF
    positions = np.stack([(fixed >> s) & 0xFF for s in (0, 8, 16)], axis=-1).astype(np.uint8)
    alphas = _u8(255.0 / (1.0 + np.exp(-params["opacity_logits"].numpy().astype(np.float64))))
    colours = _u8(params["sh_dc"].numpy().reshape(n, 3).astype(np.float64) * (COLOR_SCALE * 255.0) + 127.5)
    scales = _u8((params["log_scales"].numpy().astype(np.float64) + 10.0) * 16.0)
    wxyz = params["quats"].numpy().astype(np.float64)
    norms = np.linalg.norm(wxyz, axis=1, keepdims=True)
    wxyz = np.where(norms > 0, wxyz / np.maximum(norms, 1e-30), np.array([1.0, 0, 0, 0]))
    xyzw = np.concatenate([wxyz[:, 1:] * flip, wxyz[:, :1]], axis=1)
    if version == 3:
        rotations = _pack_smallest_three(xyzw)
    else:
        xyzw = xyzw * np.where(xyzw[:, 3:] < 0, -1.0, 1.0)
        rotations = _u8(xyzw[:, :3] * 127.5 + 127.5)
    rest = params["sh_rest"].numpy().astype(np.float64)[:, : (sh_degree + 1) ** 2 - 1]
    if flip_yz:
        rest = rest * SH_FLIP_YZ[: rest.shape[1], None]
    sh = np.concatenate([_quantise_sh(rest[:, :3], 5), _quantise_sh(rest[:, 3:], 4)], axis=1) if rest.size else np.zeros((n, 0, 3), np.uint8)
    header = HEADER.pack(MAGIC, version, n, sh_degree, fractional_bits, 0, 0)
    body = b"".join(a.tobytes() for a in (positions, alphas, colours, scales, rotations, sh))
    return gzip.compress(header + body, compresslevel=6, mtime=0)  # zlib's default, as the reference writer


def decode_spz(data: bytes, source: str = "<bytes>", flip_yz: bool = False) -> Dict[str, object]:
    """`.spz` bytes -> {"params": GaussianScene parameters, "sh_degree": int}. Errors name `source`."""
    if data[:4] == struct.pack("<I", MAGIC):
        version = struct.unpack("<I", data[4:8])[0] if len(data) >= 8 else "?"
        raise ValueError(f"{source}: SPZ version {version} (uncompressed NGSP container) is not supported; versions 2-3 are")
    if data[:2] != b"\x1f\x8b":
        raise ValueError(f"{source}: not an .spz file (no gzip signature)")
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{source}: truncated or corrupt .spz file ({exc})") from exc
    if len(raw) < HEADER.size:
        raise ValueError(f"{source}: truncated .spz file ({len(raw)} bytes, the header alone is {HEADER.size})")
    magic, version, n, degree, frac, flags, _ = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise ValueError(f"{source}: not an .spz file (magic {magic:#x}, expected {MAGIC:#x})")
    if version not in (2, 3):
        raise ValueError(f"{source}: SPZ version {version} is not supported (versions 2 and 3 are)")
    if flags & FLAG_EXTENSIONS:
        raise ValueError(f"{source}: SPZ extension records are not supported")
    if degree > 3 or n > MAX_POINTS or frac > 23:
        raise ValueError(f"{source}: bad .spz header (SH degree {degree}, {n} points, {frac} fraction bits)")
    rot_bytes = 4 if version == 3 else 3
    dim = (degree + 1) ** 2 - 1
    sizes = [9 * n, n, 3 * n, 3 * n, rot_bytes * n, 3 * dim * n]
    if len(raw) != HEADER.size + sum(sizes):
        raise ValueError(f"{source}: truncated or corrupt .spz file: {n} splats need {HEADER.size + sum(sizes)} bytes, found {len(raw)}")
    arrays, offset = [], HEADER.size
    for size in sizes:
        arrays.append(np.frombuffer(raw, np.uint8, size, offset))
        offset += size
    pos_b, alpha_b, colour_b, scale_b, rot_b, sh_b = arrays
    pos_b = pos_b.reshape(n, 3, 3).astype(np.int64)
    fixed = pos_b[..., 0] | pos_b[..., 1] << 8 | pos_b[..., 2] << 16
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    flip = np.array([1.0, -1.0, -1.0]) if flip_yz else np.ones(3)
    means = fixed.astype(np.float64) / (1 << frac) * flip
    alpha = np.clip(alpha_b.astype(np.float64) / 255.0, 0.5 / 255.0, 1.0 - 0.5 / 255.0)
    rot_b = rot_b.reshape(n, rot_bytes)
    if version == 3:
        xyzw = _unpack_smallest_three(rot_b)
    else:
        xyz = rot_b.astype(np.float64) / 127.5 - 1.0
        xyzw = np.concatenate([xyz, np.sqrt(np.clip(1.0 - (xyz**2).sum(axis=1, keepdims=True), 0.0, None))], axis=1)
    wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3] * flip], axis=1)
    rest = (sh_b.reshape(n, dim, 3).astype(np.float64) - 128.0) / 128.0
    if flip_yz:
        rest = rest * SH_FLIP_YZ[:dim, None]
    params = {
        "means": means,
        "quats": wxyz,
        "log_scales": scale_b.reshape(n, 3).astype(np.float64) / 16.0 - 10.0,
        "opacity_logits": np.log(alpha / (1.0 - alpha)),
        "sh_dc": ((colour_b.reshape(n, 3).astype(np.float64) / 255.0 - 0.5) / COLOR_SCALE)[:, None, :],
        "sh_rest": rest,
    }
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in params.items()}
    return {"params": tensors, "sh_degree": int(degree)}


def write_spz(path: Union[str, Path], params: Dict[str, torch.Tensor], sh_degree: int, **options) -> None:
    """Write `.spz` atomically (options: version, flip_yz, fractional_bits)."""
    payload = encode_spz(params, sh_degree, **options)
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)


def read_spz(path: Union[str, Path], flip_yz: bool = False) -> Dict[str, object]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f".spz file not found: {path}")
    return decode_spz(path.read_bytes(), str(path), flip_yz)
