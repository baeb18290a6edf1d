"""4D rotations as a pair of unit quaternions (left / right isoclinic decomposition).

A point (x, y, z, t) of space-time is identified with the quaternion p = t + x i + y j + z k (time is the real
part). Every rotation of R^4 is p -> q_l p q_r for a pair of unit quaternions (q_l, q_r), unique up to the sign
of both. As a matrix on (w, x, y, z) quaternion coordinates this is R4 = L(q_l) R(q_r), where L(a) p = a p and
R(b) p = p b; `rotation4` returns it reordered to the (x, y, z, t) axes the scene uses.

A purely spatial rotation by the 3D quaternion q is the pair (q, conj(q)): q p q^-1 keeps the real part (time)
and rotates the vector part exactly as the 3D quaternion rotation does. Composition: applying (a_l, a_r) after
(b_l, b_r) gives (a_l b_l, b_r a_r).

Quaternions are w, x, y, z like the rest of splatforge and are normalised here.
"""

from __future__ import annotations

import torch

# quaternion coordinate order (w, x, y, z) -> scene axes (x, y, z, t): axis k of the scene is quaternion slot _PERM[k]
_PERM = (1, 2, 3, 0)


def quat_conjugate(q: torch.Tensor) -> torch.Tensor:
    """Conjugate of wxyz quaternion(s) (the inverse for unit quaternions)."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a b of wxyz quaternions (broadcasting)."""
    return (left_matrix(a) @ b[..., None])[..., 0]


def left_matrix(a: torch.Tensor) -> torch.Tensor:
    """L(a) with L(a) p = a p on wxyz coordinates, (..., 4, 4)."""
    w, x, y, z = a.unbind(-1)
    rows = [w, -x, -y, -z, x, w, -z, y, y, z, w, -x, z, -y, x, w]
    return torch.stack(rows, dim=-1).reshape(a.shape[:-1] + (4, 4))


def right_matrix(b: torch.Tensor) -> torch.Tensor:
    """R(b) with R(b) p = p b on wxyz coordinates, (..., 4, 4)."""
    w, x, y, z = b.unbind(-1)
    rows = [w, -x, -y, -z, x, w, z, -y, y, -z, w, x, z, y, -x, w]
    return torch.stack(rows, dim=-1).reshape(b.shape[:-1] + (4, 4))


def rotation4(q_left: torch.Tensor, q_right: torch.Tensor) -> torch.Tensor:
    """(..., 4) left and right quaternions (normalised here) -> (..., 4, 4) rotation on (x, y, z, t)."""
    q_left = torch.nn.functional.normalize(q_left, dim=-1)
    q_right = torch.nn.functional.normalize(q_right, dim=-1)
    m = left_matrix(q_left) @ right_matrix(q_right)
    perm = list(_PERM)
    return m[..., perm, :][..., :, perm]


def covariance4(q_left: torch.Tensor, q_right: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Sigma4 = R4 S S^T R4^T from (N, 4) quaternion pairs and (N, 4) positive scales (x, y, z, t axes)."""
    rot_scaled = rotation4(q_left, q_right) * scales[..., None, :]
    return rot_scaled @ rot_scaled.transpose(-1, -2)


def spatial_pair(q: torch.Tensor) -> tuple:
    """The quaternion pair (q, conj(q)) of the purely spatial rotation by 3D quaternion q."""
    q = torch.nn.functional.normalize(q, dim=-1)
    return q, quat_conjugate(q)


def rotmat_to_quat(r: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) proper rotation matrices -> wxyz unit quaternions with w >= 0 (vectorised, branch-free pick)."""
    m = r
    tr = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # four candidate solutions; take the one with the largest pivot for numerical stability
    cands = torch.stack(
        [
            torch.stack([1 + tr, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2], m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
            torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 + m[..., 1, 1] - m[..., 0, 0] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
            torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 + m[..., 2, 2] - m[..., 0, 0] - m[..., 1, 1]], -1),
        ],
        dim=-2,
    )  # (..., 4, 4): candidate k is proportional to the quaternion, its k-th entry is the pivot
    pivots = torch.diagonal(cands, dim1=-2, dim2=-1)
    best = pivots.argmax(dim=-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(best.shape + (1, 4)))[..., 0, :]
    q = torch.nn.functional.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)
