"""Splat editing over a GaussianScene: selection builders, delete / hide / separate / transform, undo and redo.

Pure torch: no viewer, render or trainer imports. Cameras are duck-typed (`world_to_camera`, fx, fy, cx, cy,
width, height, near), depth buffers are (H, W[, 1]) expected camera-axis z as `render()` returns them.

Hidden splats stay in `scene.params` (so `scene.save_ply` writes them; the PLY has no field for the hidden
flag, so they come back visible) and are dropped from `rasterizer_inputs` through `scene.render_hook`, which
`SplatEditor` installs. Deleted splats are removed from the parameters, so saved PLYs never contain them.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .gaussian_scene import GaussianScene, rgb_to_sh_dc, sh_dc_to_rgb
from .rotation4d import quat_conjugate

MODES = ("replace", "add", "subtract")
Rect = Tuple[float, float, float, float]


# ----- selection helpers -------------------------------------------------------------------------------------
def combine(current: Optional[torch.Tensor], new: torch.Tensor, mode: str = "replace") -> torch.Tensor:
    """Combine a new selection mask with the current one: replace, add (union) or subtract."""
    new = new.to(torch.bool)
    if mode == "replace" or current is None:
        return new.clone()
    if mode == "add":
        return current | new
    if mode == "subtract":
        return current & ~new
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def project_points(means: torch.Tensor, camera) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (N, 2) (pixel (0, 0) covers [0, 1)^2) and camera-axis depth z (N,) of world points."""
    pts = means.detach().double().cpu()
    w2c = torch.as_tensor(camera.world_to_camera).double()
    cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
    z = cam[:, 2]
    safe = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
    u = camera.fx * cam[:, 0] / safe + camera.cx
    v = camera.fy * cam[:, 1] / safe + camera.cy
    return torch.stack([u, v], dim=1), z


def _sample(buffer: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Nearest-pixel lookup of an (H, W[, 1]) buffer at pixel coordinates (N, 2) (clamped to the image)."""
    buf = torch.as_tensor(buffer).detach().double().cpu()
    if buf.ndim == 3:
        buf = buf[..., 0]
    h, w = buf.shape
    px = uv[:, 0].floor().long().clamp(0, w - 1)
    py = uv[:, 1].floor().long().clamp(0, h - 1)
    return buf[py, px]


def depth_visible(
    uv: torch.Tensor,
    z: torch.Tensor,
    depth: torch.Tensor,
    alpha: Optional[torch.Tensor] = None,
    rel_tol: float = 0.05,
    abs_tol: float = 0.02,
    extent: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """True where a point's depth is within tolerance of (or in front of) the rendered depth at its pixel.

    `extent` (N,) widens the tolerance per point (a splat's surface lies in front of its centre: use ~2 sigma
    of its largest axis). Pixels with no coverage (depth 0, or alpha < 0.5 when given) hide nothing.
    """
    d = _sample(depth, uv)
    empty = d <= 0
    if alpha is not None:
        empty |= _sample(alpha, uv) < 0.5
    near = z if extent is None else z - extent.detach().double().cpu()
    return empty | (near <= d + torch.clamp(d * rel_tol, min=abs_tol))


def select_rect(
    scene: GaussianScene,
    camera,
    rect: Rect,
    depth: Optional[torch.Tensor] = None,
    alpha: Optional[torch.Tensor] = None,
    rel_tol: float = 0.05,
    abs_tol: float = 0.02,
    candidates: Optional[torch.Tensor] = None,
    extent_sigmas: float = 2.0,
) -> torch.Tensor:
    """Splats whose centre projects inside the pixel rect (x0, y0, x1, y1), in front of the camera.

    With `depth` (the rendered depth buffer for `camera`) only front-most splats are kept ("visible only"):
    a splat counts as visible when its centre minus `extent_sigmas` of its largest scale is within tolerance of
    the rendered depth at its centre pixel.
    `candidates` (e.g. the not-hidden mask) restricts the result.
    """
    x0, y0, x1, y1 = rect
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    uv, z = project_points(scene.means, camera)
    mask = (z > camera.near) & (uv[:, 0] >= x0) & (uv[:, 0] <= x1) & (uv[:, 1] >= y0) & (uv[:, 1] <= y1)
    if depth is not None:
        extent = extent_sigmas * scene.scales.detach().max(dim=1).values
        mask &= depth_visible(uv, z, depth, alpha, rel_tol, abs_tol, extent)
    if candidates is not None:
        mask &= candidates.cpu()
    return mask.to(scene.means.device)


def pick(
    scene: GaussianScene,
    camera,
    x: float,
    y: float,
    depth: Optional[torch.Tensor] = None,
    radius_px: float = 10.0,
    candidates: Optional[torch.Tensor] = None,
) -> int:
    """Index of the splat clicked at pixel (x, y), or -1.

    Candidates are splats whose centre projects within `radius_px`; among them the one whose depth is closest
    to the rendered depth at the click (nearest to the camera without a depth buffer), ties by pixel distance.
    """
    uv, z = project_points(scene.means, camera)
    dist = torch.hypot(uv[:, 0] - x, uv[:, 1] - y)
    ok = (z > camera.near) & (dist <= radius_px)
    if candidates is not None:
        ok &= candidates.cpu()
    if not ok.any():
        return -1
    idx = torch.nonzero(ok)[:, 0]
    if depth is not None:
        d = float(_sample(depth, torch.tensor([[x, y]], dtype=torch.float64))[0])
        key = (z[idx] - d).abs() if d > 0 else z[idx]
    else:
        key = z[idx]
    # depth first (quantised to 1e-3 of the range), then pixel distance
    scale = max(float(key.max() - key.min()), 1e-9) * 1e-3
    order = torch.argsort((key / scale).round() * 1e6 + dist[idx])
    return int(idx[order[0]])


def select_opacity(scene: GaussianScene, lo: float, hi: float) -> torch.Tensor:
    """Splats with opacity in [lo, hi]."""
    o = scene.opacities.detach()
    return (o >= lo) & (o <= hi)


def max_scales(scene: GaussianScene) -> torch.Tensor:
    return scene.scales.detach().max(dim=1).values


def select_scale(scene: GaussianScene, lo: float, hi: float) -> torch.Tensor:
    """Splats whose largest axis scale lies in [lo, hi]."""
    s = max_scales(scene)
    return (s >= lo) & (s <= hi)


def dc_rgb(scene: GaussianScene) -> torch.Tensor:
    """Base (view-independent) colour of every splat, (N, 3), clamped to [0, 1]."""
    return sh_dc_to_rgb(scene.params["sh_dc"].detach()[:, 0]).clamp(0, 1)


def select_color(scene: GaussianScene, rgb: Sequence[float], threshold: float) -> torch.Tensor:
    """Splats whose DC colour is within Euclidean distance `threshold` of `rgb` (components in [0, 1])."""
    ref = torch.as_tensor(rgb, dtype=torch.float32, device=scene.means.device)
    return (dc_rgb(scene) - ref).norm(dim=1) <= threshold


def select_box(
    scene: GaussianScene,
    box_to_world: Union[torch.Tensor, np.ndarray],
    half_extents: Sequence[float],
    inside: bool = True,
) -> torch.Tensor:
    """Splats whose centre is inside (or outside) an oriented box: `box_to_world` rigid 4x4, half sizes in its axes."""
    m = torch.as_tensor(np.asarray(box_to_world), dtype=torch.float64)
    inv = torch.linalg.inv(m)
    local = scene.means.detach().double().cpu() @ inv[:3, :3].T + inv[:3, 3]
    half = torch.as_tensor(half_extents, dtype=torch.float64)
    mask = (local.abs() <= half).all(dim=1)
    return (mask if inside else ~mask).to(scene.means.device)


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


# ----- commands --------------------------------------------------------------------------------------------------
@dataclass
class _Command:
    label: str

    def nbytes(self) -> int:
        return 0


@dataclass
class _Delete(_Command):
    indices: torch.Tensor = None  # sorted positions in the pre-delete arrays
    rows: Dict[str, torch.Tensor] = field(default_factory=dict)
    hidden_rows: torch.Tensor = None
    selection_before: torch.Tensor = None

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.rows.values()) + self.indices.numel() * 8


@dataclass
class _Masks(_Command):
    hidden_before: torch.Tensor = None
    hidden_after: torch.Tensor = None

    def nbytes(self) -> int:
        return 2 * self.hidden_before.numel()


@dataclass
class _Rows(_Command):
    indices: torch.Tensor = None
    before: Dict[str, torch.Tensor] = field(default_factory=dict)
    after: Dict[str, torch.Tensor] = field(default_factory=dict)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for d in (self.before, self.after) for t in d.values())


# ----- the editor ------------------------------------------------------------------------------------------------
class SplatEditor:
    """Edit state over one GaussianScene: selection, hidden mask, and a bounded undo/redo history.

    The caller holds whatever lock guards the scene (the viewer's `scene_lock`) around every call. If the
    scene's size changes behind the editor's back (densification), masks reset and the history is dropped.
    """

    def __init__(
        self,
        scene: GaussianScene,
        max_history: int = 64,
        max_history_bytes: int = 256 * 2**20,
        highlight_rgb: Sequence[float] = (1.0, 0.85, 0.0),
    ):
        self.scene = scene
        self.max_history = max_history
        self.max_history_bytes = max_history_bytes
        self.highlight = True
        self.highlight_rgb = tuple(float(c) for c in highlight_rgb)
        self._undo: collections.deque = collections.deque()
        self._redo: List[_Command] = []
        self._reset_masks()
        scene.render_hook = self.render_hook

    # ----- state ---------------------------------------------------------------------------------------
    def _reset_masks(self) -> None:
        n = len(self.scene)
        self.selection = torch.zeros(n, dtype=torch.bool)
        self.hidden = torch.zeros(n, dtype=torch.bool)

    def sync(self) -> None:
        """Reset masks and history if the scene's size changed outside the editor."""
        if len(self.scene) != self.selection.numel() or len(self.scene) != self.hidden.numel():
            self._reset_masks()
            self._undo.clear()
            self._redo.clear()

    @property
    def visible(self) -> torch.Tensor:
        self.sync()
        return ~self.hidden

    @property
    def num_selected(self) -> int:
        self.sync()
        return int(self.selection.sum())

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def history_labels(self) -> List[str]:
        return [c.label for c in self._undo]

    # ----- selection -----------------------------------------------------------------------------------
    def select(self, mask: torch.Tensor, mode: str = "replace") -> int:
        """Combine `mask` into the selection (hidden splats never get selected); returns the selected count."""
        self.sync()
        mask = mask.detach().cpu().to(torch.bool)
        if mask.shape != self.selection.shape:
            raise ValueError(f"selection mask must have shape {tuple(self.selection.shape)}, got {tuple(mask.shape)}")
        self.selection = combine(self.selection, mask, mode) & ~self.hidden
        return self.num_selected

    def select_indices(self, indices: Sequence[int], mode: str = "replace") -> int:
        mask = torch.zeros_like(self.selection)
        idx = [i for i in indices if i >= 0]
        if idx:
            mask[torch.as_tensor(idx, dtype=torch.long)] = True
        return self.select(mask, mode)

    def select_all(self) -> int:
        return self.select(torch.ones_like(self.selection))

    def clear_selection(self) -> None:
        self.sync()
        self.selection = torch.zeros_like(self.selection)

    def invert_selection(self) -> int:
        self.sync()
        return self.select(~self.selection)

    def _target(self, mask: Optional[torch.Tensor]) -> torch.Tensor:
        self.sync()
        return self.selection.clone() if mask is None else mask.detach().cpu().to(torch.bool)

    # ----- history ---------------------------------------------------------------------------------------
    def _push(self, cmd: _Command) -> None:
        self._undo.append(cmd)
        self._redo.clear()
        total = sum(c.nbytes() for c in self._undo)
        while self._undo and (len(self._undo) > self.max_history or total > self.max_history_bytes):
            total -= self._undo.popleft().nbytes()

    def undo(self) -> bool:
        """Revert the last edit; False when there is none."""
        self.sync()
        if not self._undo:
            return False
        cmd = self._undo.pop()
        self._apply(cmd, inverse=True)
        self._redo.append(cmd)
        return True

    def redo(self) -> bool:
        """Re-apply the last undone edit; False when there is none."""
        self.sync()
        if not self._redo:
            return False
        cmd = self._redo.pop()
        self._apply(cmd, inverse=False)
        self._undo.append(cmd)
        return True

    def _apply(self, cmd: _Command, inverse: bool) -> None:
        if isinstance(cmd, _Delete):
            if inverse:
                self._insert_rows(cmd)
            else:
                keep = torch.ones(len(self.scene), dtype=torch.bool)
                keep[cmd.indices] = False
                self._keep_rows(keep)
        elif isinstance(cmd, _Masks):
            self.hidden = (cmd.hidden_before if inverse else cmd.hidden_after).clone()
            self.selection &= ~self.hidden
        elif isinstance(cmd, _Rows):
            self._write_rows(cmd.indices, cmd.before if inverse else cmd.after)

    # ----- parameter surgery -----------------------------------------------------------------------------
    def _set_param(self, name: str, value: torch.Tensor) -> None:
        old = self.scene.params[name]
        self.scene.params[name] = torch.nn.Parameter(value.detach().to(old.device, old.dtype).contiguous(),
                                                     requires_grad=old.requires_grad)

    def _keep_rows(self, keep: torch.Tensor) -> None:
        for name in list(self.scene.params.keys()):
            p = self.scene.params[name]
            self._set_param(name, p.detach()[keep.to(p.device)])
        self.selection = self.selection[keep]
        self.hidden = self.hidden[keep]

    def _insert_rows(self, cmd: _Delete) -> None:
        n = len(self.scene) + cmd.indices.numel()
        removed = torch.zeros(n, dtype=torch.bool)
        removed[cmd.indices] = True
        for name in list(self.scene.params.keys()):
            p = self.scene.params[name].detach()
            full = torch.empty((n,) + tuple(p.shape[1:]), dtype=p.dtype, device=p.device)
            full[~removed.to(p.device)] = p
            full[removed.to(p.device)] = cmd.rows[name].to(p.device)
            self._set_param(name, full)
        hidden = torch.zeros(n, dtype=torch.bool)
        hidden[~removed] = self.hidden
        hidden[removed] = cmd.hidden_rows
        self.hidden = hidden
        self.selection = cmd.selection_before.clone()

    def _write_rows(self, indices: torch.Tensor, rows: Dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, value in rows.items():
                p = self.scene.params[name]
                p[indices.to(p.device)] = value.to(p.device, p.dtype)

    # ----- operations ------------------------------------------------------------------------------------
    def delete(self, mask: Optional[torch.Tensor] = None) -> int:
        """Remove the selected (or `mask`ed) splats from the scene; returns how many."""
        target = self._target(mask)
        idx = torch.nonzero(target)[:, 0]
        if idx.numel() == 0:
            return 0
        rows = {name: self.scene.params[name].detach()[idx.to(self.scene.means.device)].cpu().clone()
                for name in self.scene.params.keys()}
        cmd = _Delete("delete", indices=idx, rows=rows, hidden_rows=self.hidden[idx].clone(),
                      selection_before=self.selection.clone())
        self._apply(cmd, inverse=False)
        self._push(cmd)
        return int(idx.numel())

    def _set_hidden(self, hidden: torch.Tensor, label: str) -> int:
        changed = int((hidden != self.hidden).sum())
        if changed == 0:
            return 0
        cmd = _Masks(label, hidden_before=self.hidden.clone(), hidden_after=hidden.clone())
        self._apply(cmd, inverse=False)
        self._push(cmd)
        return changed

    def hide(self, mask: Optional[torch.Tensor] = None) -> int:
        """Hide the selected (or `mask`ed) splats: kept in the scene and saved, but not rendered."""
        target = self._target(mask)
        return self._set_hidden(self.hidden | target, "hide")

    def unhide_all(self) -> int:
        self.sync()
        return self._set_hidden(torch.zeros_like(self.hidden), "unhide")

    def subset(self, mask: torch.Tensor) -> GaussianScene:
        """A new GaussianScene holding copies of the `mask`ed splats."""
        keep = mask.detach().cpu().to(torch.bool)
        params = {name: self.scene.params[name].detach()[keep.to(self.scene.means.device)].cpu().clone()
                  for name in self.scene.params.keys()}
        return type(self.scene).from_state(dict(self.scene.settings(), params=params))  # same kind and settings

    def separate(self, mask: Optional[torch.Tensor] = None, remove: bool = True) -> Optional[GaussianScene]:
        """The selected splats as a new GaussianScene; with `remove` they are also deleted here (undoable)."""
        target = self._target(mask)
        if not target.any():
            return None
        part = self.subset(target)
        if remove:
            self.delete(target)
            self._undo[-1].label = "separate"
        return part

    def transform(
        self,
        matrix: Union[torch.Tensor, np.ndarray],
        scale: float = 1.0,
        mask: Optional[torch.Tensor] = None,
        rotate_sh: bool = True,
    ) -> int:
        """Move the selected splats by x -> R (s x) + t, `matrix` = [R | t] rigid 4x4 times optional uniform `scale`.

        `matrix` may also carry a uniform scale itself (its 3x3 block's cube-root determinant). Quaternions are
        composed with R, log-scales grow by log(s) and view-dependent colour (SH bands 1..3) is rotated.
        4D scenes (a `quats_r` parameter): the spatial rotation (q, conj q) is composed with each quaternion pair
        (velocities rotate with it); they take rigid transforms only, since a spatial scale does not keep the
        rotor-and-scales form.
        """
        target = self._target(mask)
        idx = torch.nonzero(target)[:, 0]
        if idx.numel() == 0:
            return 0
        m = torch.as_tensor(np.asarray(matrix), dtype=torch.float64)
        a = m[:3, :3]
        det = float(torch.linalg.det(a))
        if det <= 0:
            raise ValueError("transform matrix must be a proper rotation (positive determinant)")
        s_mat = det ** (1.0 / 3.0)
        rot = a / s_mat
        s = s_mat * float(scale)
        if s <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        is_4d = "quats_r" in self.scene.params
        if is_4d and abs(s - 1.0) > 1e-6:
            raise ValueError(f"4D scenes take rigid transforms only (got a scale of {s:g})")
        dev = self.scene.means.device
        didx = idx.to(dev)
        names = ["means", "quats", "log_scales"] + (["quats_r"] if is_4d else []) + (["sh_rest"] if rotate_sh else [])
        before = {name: self.scene.params[name].detach()[didx].cpu().clone() for name in names}
        means = before["means"].double()
        new_means = (means * float(scale)) @ a.T + m[:3, 3]
        q = matrix_to_quat(rot)
        new_quats = quat_multiply(q.expand(idx.numel(), 4), before["quats"].double())
        after = {
            "means": new_means.float(),
            "quats": new_quats.float(),
            "log_scales": (before["log_scales"].double() + math.log(s)).float(),
        }
        if is_4d:  # p -> q (l p r) conj(q): the pair becomes (q l, r conj(q))
            after["quats_r"] = quat_multiply(before["quats_r"].double(), quat_conjugate(q).expand(idx.numel(), 4)).float()
        if rotate_sh:
            rest = before["sh_rest"].double()
            degree = int(round(math.sqrt(rest.shape[1] + 1))) - 1
            x = sh_rotation(rot, degree)
            after["sh_rest"] = torch.einsum("ij,njc->nic", x, rest).float() if degree > 0 else before["sh_rest"]
        cmd = _Rows("transform", indices=idx, before=before, after=after)
        self._apply(cmd, inverse=False)
        self._push(cmd)
        return int(idx.numel())

    # ----- files -------------------------------------------------------------------------------------
    def save_ply(self, path, include_hidden: bool = True) -> int:
        """Write the scene (deleted splats are gone; hidden ones included unless told) atomically; returns count."""
        self.sync()
        if include_hidden or not self.hidden.any():
            self.scene.save_ply(path)
            return len(self.scene)
        part = self.subset(~self.hidden)
        part.save_ply(path)
        return len(part)

    # ----- render hook -------------------------------------------------------------------------------
    def render_hook(self, inputs: Dict[str, object]) -> Dict[str, object]:
        """Tint selected splats and drop hidden ones from `rasterizer_inputs` (installed as `scene.render_hook`)."""
        n = len(self.scene)
        if self.hidden.numel() != n or self.selection.numel() != n:
            return inputs  # scene resized behind our back: render as is until the next edit call syncs
        out = dict(inputs)
        if self.highlight and self.selection.any():
            colors = out["colors"]
            sel = self.selection.to(colors.device)
            tint = torch.tensor(self.highlight_rgb, dtype=colors.dtype, device=colors.device)
            colors = colors.clone()
            if colors.ndim == 3:
                colors[sel, 0] = 0.4 * colors[sel, 0] + 0.6 * rgb_to_sh_dc(tint)
                colors[sel, 1:] = 0.4 * colors[sel, 1:]
            else:
                colors[sel] = 0.4 * colors[sel] + 0.6 * tint
            out["colors"] = colors
        if self.hidden.any():
            keep = ~self.hidden
            for key, value in list(out.items()):  # every per-primitive tensor (covars, 4D scenes' extras too)
                if isinstance(value, torch.Tensor) and value.shape[:1] == (n,):
                    out[key] = value[keep.to(value.device)]
        return out

    def detach(self) -> None:
        """Remove the render hook from the scene."""
        if getattr(self.scene, "render_hook", None) == self.render_hook:
            self.scene.render_hook = None
