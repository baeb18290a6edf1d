"""Training checkpoints: scene state plus whatever the trainer adds, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Union

import torch

from .atomic import atomic_path


def save_checkpoint(path: Union[str, Path], payload: Dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable splatforge checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or "scene" not in payload:
        raise ValueError(f"{path}: checkpoint has no 'scene' entry")
    return payload
