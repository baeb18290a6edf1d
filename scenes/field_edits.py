"""Edits of a radiance field that leave its weights alone: placement in the world (a similarity transform), a crop
box and erased boxes (density zeroed), with undo / redo. Boxes are in the field's own frame."""

from __future__ import annotations

import copy
from typing import Dict, List, Optional, Sequence, Tuple

import torch


def _box(lo: Sequence[float], hi: Sequence[float], what: str) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    lo_t, hi_t = tuple(float(v) for v in lo), tuple(float(v) for v in hi)
    if len(lo_t) != 3 or len(hi_t) != 3:
        raise ValueError(f"{what}: corners must be 3-vectors, got {lo_t} and {hi_t}")
    extent = [b - a for a, b in zip(lo_t, hi_t)]
    if not all(e == e and abs(e) != float("inf") for e in extent) or min(extent) <= 0:
        raise ValueError(f"{what}: box {lo_t} .. {hi_t} has zero (or negative) volume; every side must be > 0")
    return lo_t, hi_t


def check_similarity(matrix) -> torch.Tensor:
    """A 4x4 transform that can place a field (invertible, affine, finite) as float64; ValueError otherwise."""
    m = torch.as_tensor(matrix, dtype=torch.float64)
    if m.shape != (4, 4) or not torch.isfinite(m).all():
        raise ValueError(f"alignment transform must be a finite 4x4 matrix, got shape {tuple(m.shape)}")
    if not torch.allclose(m[3], torch.tensor([0.0, 0, 0, 1], dtype=torch.float64)):
        raise ValueError("alignment transform must be affine (last row 0 0 0 1)")
    det = float(torch.linalg.det(m[:3, :3]))
    if abs(det) < 1e-9:
        raise ValueError(f"alignment transform is singular (determinant {det:.3g}); it would collapse the field")
    return m


class FieldEdits:
    """Placement and density edits of one field; `push()` before a change makes it undoable."""

    def __init__(self) -> None:
        self.field_from_world = torch.eye(4, dtype=torch.float64)
        self.crop: Optional[Tuple[Tuple[float, ...], Tuple[float, ...]]] = None
        self.erased: List[Tuple[Tuple[float, ...], Tuple[float, ...]]] = []
        self._undo: List[dict] = []
        self._redo: List[dict] = []

    # ----- edits ----------------------------------------------------------------------------------------
    def set_transform(self, world_from_field) -> None:
        """Place the field: `world_from_field` maps field coordinates to world coordinates (must be invertible)."""
        m = check_similarity(world_from_field)
        self.push()
        self.field_from_world = torch.linalg.inv(m)

    def set_crop(self, lo: Sequence[float], hi: Sequence[float]) -> None:
        box = _box(lo, hi, "crop box")
        self.push()
        self.crop = box

    def clear_crop(self) -> None:
        self.push()
        self.crop = None

    def erase(self, lo: Sequence[float], hi: Sequence[float]) -> None:
        """Zero the density inside the box."""
        box = _box(lo, hi, "erase box")
        self.push()
        self.erased.append(box)

    # ----- undo / redo ------------------------------------------------------------------------------------
    def _snapshot(self) -> dict:
        return {"m": self.field_from_world.clone(), "crop": self.crop, "erased": list(self.erased)}

    def _restore(self, snap: dict) -> None:
        self.field_from_world, self.crop, self.erased = snap["m"].clone(), snap["crop"], list(snap["erased"])

    def push(self) -> None:
        self._undo.append(self._snapshot())
        self._redo.clear()

    def undo(self) -> bool:
        if not self._undo:
            return False
        self._redo.append(self._snapshot())
        self._restore(self._undo.pop())
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        self._undo.append(self._snapshot())
        self._restore(self._redo.pop())
        return True

    # ----- application -------------------------------------------------------------------------------------
    @property
    def is_identity(self) -> bool:
        return self.crop is None and not self.erased

    def field_from_world_rt(self, device) -> Tuple[torch.Tensor, torch.Tensor]:
        m = self.field_from_world.float().to(device)
        return m[:3, :3], m[:3, 3]

    def mask_density(self, points: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """`sigma` with zeros outside the crop box and inside erased boxes (field-frame points)."""
        if self.is_identity:
            return sigma
        keep = torch.ones_like(sigma, dtype=torch.bool)
        if self.crop is not None:
            lo, hi = (torch.tensor(v, device=points.device, dtype=points.dtype) for v in self.crop)
            keep &= ((points >= lo) & (points <= hi)).all(dim=1)
        for lo_v, hi_v in self.erased:
            lo, hi = torch.tensor(lo_v, device=points.device, dtype=points.dtype), torch.tensor(hi_v, device=points.device, dtype=points.dtype)
            keep &= ~((points >= lo) & (points <= hi)).all(dim=1)
        return torch.where(keep, sigma, torch.zeros_like(sigma))

    # ----- files --------------------------------------------------------------------------------------------
    def state(self) -> Dict[str, object]:
        return {"field_from_world": self.field_from_world.tolist(), "crop": self.crop, "erased": list(self.erased)}

    @classmethod
    def from_state(cls, state: Dict[str, object]) -> "FieldEdits":
        edits = cls()
        if "field_from_world" in state:
            edits.field_from_world = check_similarity(state["field_from_world"])
        crop = state.get("crop")
        edits.crop = None if crop is None else _box(*crop, "crop box")
        edits.erased = [_box(lo, hi, "erase box") for lo, hi in state.get("erased", [])]
        return copy.deepcopy(edits)
