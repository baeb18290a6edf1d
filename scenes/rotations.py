"""Rotation maths for splat editing: wxyz quaternions, rotation matrices and spherical-harmonic band rotation.

Used by `scenes.editing.SplatEditor.transform` to turn splats (quaternions composed with R) and their
view-dependent colour (SH bands 1..3 rotated); kept apart as plain, editor-independent maths. Pure torch.
Quaternions are w, x, y, z like the rest of splatforge; 4D quaternion pairs are in rotation4d.py.
"""

from __future__ import annotations

import math

import torch


# ----- rotations -------------------------------------------------------------------------------------------------
def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of wxyz quaternions (broadcasting): rotation b then a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """wxyz quaternion(s) (normalised here) to rotation matrices."""
    q = torch.nn.functional.normalize(q, dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(r: torch.Tensor) -> torch.Tensor:
    """3x3 rotation matrix to a wxyz quaternion with w >= 0."""
    r = torch.as_tensor(r, dtype=torch.float64)
    m = r.tolist()
    tr = m[0][0] + m[1][1] + m[2][2]
    if tr > 0:
        s = math.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (m[2][1] - m[1][2]) / s, (m[0][2] - m[2][0]) / s, (m[1][0] - m[0][1]) / s]
    elif m[0][0] > m[1][1] and m[0][0] > m[2][2]:
        s = math.sqrt(1.0 + m[0][0] - m[1][1] - m[2][2]) * 2
        q = [(m[2][1] - m[1][2]) / s, 0.25 * s, (m[0][1] + m[1][0]) / s, (m[0][2] + m[2][0]) / s]
    elif m[1][1] > m[2][2]:
        s = math.sqrt(1.0 + m[1][1] - m[0][0] - m[2][2]) * 2
        q = [(m[0][2] - m[2][0]) / s, (m[0][1] + m[1][0]) / s, 0.25 * s, (m[1][2] + m[2][1]) / s]
    else:
        s = math.sqrt(1.0 + m[2][2] - m[0][0] - m[1][1]) * 2
        q = [(m[1][0] - m[0][1]) / s, (m[0][2] + m[2][0]) / s, (m[1][2] + m[2][1]) / s, 0.25 * s]
    out = torch.tensor(q, dtype=torch.float64)
    out = out / out.norm()
    return -out if out[0] < 0 else out


_SH_C1 = 0.4886025119029199
_SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
_SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
          -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


def sh_basis(dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """Real SH basis without the DC term, (K, (degree+1)^2 - 1), in the rasterizer's coefficient order."""
    x, y, z = dirs.unbind(-1)
    cols = []
    if degree >= 1:
        cols += [-_SH_C1 * y, _SH_C1 * z, -_SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        cols += [_SH_C2[0] * x * y, _SH_C2[1] * y * z, _SH_C2[2] * (2 * zz - xx - yy), _SH_C2[3] * x * z,
                 _SH_C2[4] * (xx - yy)]
    if degree >= 3:
        cols += [_SH_C3[0] * y * (3 * xx - yy), _SH_C3[1] * x * y * z, _SH_C3[2] * y * (4 * zz - xx - yy),
                 _SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), _SH_C3[4] * x * (4 * zz - xx - yy),
                 _SH_C3[5] * z * (xx - yy), _SH_C3[6] * x * (xx - 3 * yy)]
    return torch.stack(cols, dim=-1)


def sh_rotation(rotation: torch.Tensor, degree: int) -> torch.Tensor:
    """Block-diagonal matrix X (K-1, K-1) with rest' = X @ rest rotating SH bands 1..degree by `rotation`.

    After rotating an object by R, its colour seen along d must equal the old colour along R^T d; per band the
    (Wigner-D) matrix is solved exactly by least squares over sample directions (the bands are closed under
    rotation, so the fit is exact to float64 precision).
    """
    n = (degree + 1) ** 2 - 1
    if n == 0:
        return torch.zeros(0, 0, dtype=torch.float64)
    r = torch.as_tensor(rotation, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(64, 3, generator=gen, dtype=torch.float64), dim=1)
    a = sh_basis(dirs, degree)
    b = sh_basis(dirs @ r, degree)  # rows are (R^T d)^T
    out = torch.zeros(n, n, dtype=torch.float64)
    start = 0
    for band in range(1, degree + 1):
        size = 2 * band + 1
        sl = slice(start, start + size)
        x = torch.linalg.lstsq(a[:, sl], b[:, sl]).solution  # a X = b, X = M^T
        out[sl, sl] = x
        start += size
    return out
