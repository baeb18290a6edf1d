"""Splat editing over a GaussianScene: delete / hide / separate / transform, undo and redo.

Pure torch: no viewer, render or trainer imports. The selection builders that make the masks edited here are in
selection.py; the quaternion and SH rotation maths used by `transform` is in rotations.py.

Hidden splats stay in `scene.params` (so `scene.save_ply` writes them; the PLY has no field for the hidden
flag, so they come back visible) and are dropped from `rasterizer_inputs` through `scene.render_hook`, which
`SplatEditor` installs. Deleted splats are removed from the parameters, so saved PLYs never contain them.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from .gaussian_scene import GaussianScene, rgb_to_sh_dc
from .rotation4d import quat_conjugate
from .rotations import matrix_to_quat, quat_multiply, sh_rotation
from .selection import combine


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
