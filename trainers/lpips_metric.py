"""LPIPS, only where its network weights already sit on this machine (nothing is downloaded at run time)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import torch

_ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's ImageNet AlexNet, what the lpips package loads


def _hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def lpips_status() -> Tuple[bool, str]:
    """(available, reason). LPIPS needs the `lpips` package and torchvision's ImageNet AlexNet weights locally."""
    try:
        import lpips  # noqa: F401
    except ImportError:
        return False, "the lpips package is not installed"
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return False, "torchvision (LPIPS's backbone) is not installed"
    weights = _hub_checkpoint_dir() / _ALEXNET_FILE
    if not weights.is_file():
        return False, f"the ImageNet AlexNet weights are not present at {weights} and cannot be downloaded here"
    return True, "lpips (alex) with local weights"


def make_lpips(device: Union[str, torch.device] = "cpu") -> Optional[Callable[[torch.Tensor, torch.Tensor], float]]:
    """A function (img, ref) -> LPIPS for (H, W, 3) images in [0, 1] (network on `device`), or None when unavailable."""
    available, _ = lpips_status()
    if not available:
        return None
    import lpips

    os.environ.setdefault("TORCH_HOME", str(Path(torch.hub.get_dir()).parent))
    net = lpips.LPIPS(net="alex", verbose=False).eval().to(device)

    @torch.no_grad()
    def score(img: torch.Tensor, ref: torch.Tensor) -> float:
        to_nchw = lambda t: t.to(device).permute(2, 0, 1)[None] * 2 - 1  # noqa: E731
        return float(net(to_nchw(img.float()), to_nchw(ref.float())).item())

    return score
