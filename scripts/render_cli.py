"""sf-render: render a checkpoint or PLY for a dataset's test cameras or an orbit, to PNGs and an MP4."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

import torch
import tyro

from render import render
from render.paths import orbit_cameras
from render.writers import write_image, write_video
from scenes import load_scene

from ._cli import run_cli


@dataclass
class RenderConfig:
    """Render a trained scene to images and a video."""

    scene: Path
    """A scene.ply or a checkpoint (.pt)."""
    data: Path
    """Dataset folder whose cameras define the views (test split, or the orbit around the training cameras)."""
    output: Path = Path("outputs/render")
    mode: Literal["test", "orbit"] = "test"
    num_frames: int = 60
    """Orbit frames."""
    fps: int = 24
    downscale: int = 1
    background: Optional[Tuple[float, float, float]] = None
    backend: str = "auto"


def render_scene(config: RenderConfig) -> int:
    from trainers.data import load_dataset

    scene = load_scene(config.scene)
    data = load_dataset(config.data, downscale=config.downscale, background=config.background)
    background = config.background if config.background is not None else data.background
    if config.mode == "test":
        cameras = [v.camera for v in (data.test_views or data.train_views)]
    else:
        cameras = orbit_cameras([v.camera for v in data.train_views], config.num_frames)
    frames = []
    with torch.no_grad():
        for i, camera in enumerate(cameras):
            rgb = render(scene, camera, background=background, backend=config.backend).rgb
            write_image(config.output / f"frame_{i:05d}.png", rgb)
            frames.append(rgb)
    write_video(config.output / f"{config.mode}.mp4", frames, fps=config.fps)
    print(f"wrote {len(frames)} frames and {config.output / (config.mode + '.mp4')}")
    return len(frames)


def entrypoint() -> None:
    config = tyro.cli(RenderConfig)
    run_cli(lambda: render_scene(config))


if __name__ == "__main__":
    entrypoint()
