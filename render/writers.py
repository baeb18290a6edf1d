"""Image and video writers. Every file is written atomically (temporary name in the same folder, then rename)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Union

from scenes.atomic import default_file_mode

import imageio.v2 as imageio
import numpy as np
import torch


def to_uint8(image: Union[torch.Tensor, np.ndarray]) -> np.ndarray:
    """(H, W, C) float in [0, 1] -> uint8."""
    if torch.is_tensor(image):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _temp_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_image(path: Union[str, Path], image: Union[torch.Tensor, np.ndarray]) -> None:
    path = Path(path)
    tmp = _temp_beside(path)
    try:
        imageio.imwrite(tmp, to_uint8(image))
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_video(path: Union[str, Path], frames: Iterable[Union[torch.Tensor, np.ndarray]], fps: int = 30) -> int:
    """Write frames to an MP4 (H.264 through imageio-ffmpeg); returns the number of frames written."""
    path = Path(path)
    tmp = _temp_beside(path)
    count = 0
    try:
        with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=8, macro_block_size=1, format="FFMPEG") as writer:
            for frame in frames:
                rgb = to_uint8(frame)
                # yuv420p needs even sizes: pad by edge replication.
                pad_h, pad_w = rgb.shape[0] % 2, rgb.shape[1] % 2
                if pad_h or pad_w:
                    rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
                writer.append_data(rgb)
                count += 1
        if count == 0:
            raise ValueError(f"{path}: no frames to write")
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return count
