"""sf-render: render a checkpoint or PLY for a dataset's test cameras, an orbit, or a camera_path.json, to PNGs and an MP4."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Literal, Optional, Tuple

import torch

from render import Camera, render
from render.camera_path import load_camera_path
from render.paths import orbit_cameras, with_times
from render.writers import write_image, write_video
from scenes import load_scene

from trainers.config import check_background, check_range

from ._cli import check_output_dir, parse_config, run_cli


@dataclass
class RenderConfig:
    """Render a trained scene to images and a video."""

    scene: Path
    """A scene.ply or a checkpoint (.pt)."""
    data: Optional[Path] = None
    """Dataset folder whose cameras define the views (test split, or the orbit around the training cameras).
    Not needed for --mode camera-path."""
    output: Path = Path("outputs/render")
    mode: Literal["test", "orbit", "camera-path"] = "test"
    camera_path: Optional[Path] = None
    """nerfstudio-style camera_path.json (mode camera-path): rendered at its resolution and fps."""
    num_frames: int = 60
    """Orbit frames."""
    fps: int = 24
    downscale: int = 1
    background: Optional[Tuple[float, float, float]] = None
    backend: str = "auto"
    meshes: Tuple[Path, ...] = ()
    """Mesh files (GLB/GLTF/OBJ/PLY) composited with the splats, with shadows, at their own coordinates."""
    mesh_layout: Optional[Path] = None
    """Scene-edit JSON placing meshes and the light (see scenes.meshes.load_mesh_layout)."""
    time: Optional[float] = None
    """Dynamic (4D) scenes: render every view at this time. Default: test views keep their own times, camera
    paths their keyframes' times, and an orbit plays through the scene's time range as it circles."""
    frames: Optional[Tuple[int, ...]] = None
    """Render only these frame indices (e.g. `--frames 0 --time 0.5` for one still)."""

    def __post_init__(self) -> None:
        check_range("num_frames", self.num_frames, 1)
        check_range("fps", self.fps, 1)
        check_range("downscale", self.downscale, 1)
        check_background("background", self.background)


def render_view(scene, camera: Camera, background, backend: str = "auto") -> torch.Tensor:
    """Render one frame as (H, W, 3) RGB in [0, 1]. The seam for compositors (meshes, shadows) to wrap."""
    return render(scene, camera, background=background, backend=backend).rgb


def views_for(config: RenderConfig) -> Tuple[List[Camera], Optional[Tuple[float, float, float]], int]:
    """(cameras, background, fps) for the configured mode (shared with sf-render-batch)."""
    if config.mode == "camera-path":
        if config.camera_path is None:
            raise ValueError("--mode camera-path needs --camera-path FILE.json")
        path = load_camera_path(config.camera_path)
        cameras = path.cameras()
        if config.downscale > 1:
            cameras = [c.scaled(1.0 / config.downscale) for c in cameras]
        return cameras, config.background, max(1, int(round(path.fps)))
    if config.data is None:
        raise ValueError(f"--mode {config.mode} needs --data (a dataset folder)")
    from trainers.data import load_dataset

    data = load_dataset(config.data, downscale=config.downscale, background=config.background)
    background = config.background if config.background is not None else data.background
    if config.mode == "test":
        cameras = [v.camera for v in (data.test_views or data.train_views)]
    else:
        cameras = orbit_cameras([v.camera for v in data.train_views], config.num_frames)
    return cameras, background, config.fps


def frame_path(output: Path, index: int) -> Path:
    """Where frame `index` of a render goes (sf-render and sf-render-batch)."""
    return output / f"frame_{index:05d}.png"


def video_path(config: RenderConfig) -> Path:
    return config.output / f"{config.mode.replace('-', '_')}.mp4"


def render_scene(config: RenderConfig) -> int:
    check_output_dir(config.output, "--output")
    if config.mode == "camera-path" and config.camera_path is None:
        raise ValueError("--mode camera-path needs --camera-path FILE.json")
    if config.mode != "camera-path" and config.data is None:
        raise ValueError(f"--mode {config.mode} needs --data (a dataset folder)")
    if config.camera_path is not None and config.mode == "camera-path":
        load_camera_path(config.camera_path)  # a bad path file fails before the scene loads
    from render.composite import mesh_view  # meshes + shadows: same composite as the viewer

    view = mesh_view(config.meshes, config.mesh_layout, fallback=render_view)
    scene = load_scene(config.scene)
    cameras, background, fps = views_for(config)
    time_range = getattr(scene, "time_range", None)
    if config.time is not None:
        cameras = [c.with_time(float(config.time)) for c in cameras]
    elif config.mode == "orbit" and time_range is not None:
        cameras = with_times(cameras, time_range)
    if config.frames is not None:
        bad = [i for i in config.frames if not 0 <= i < len(cameras)]
        if bad:
            raise ValueError(f"--frames {bad} out of range: there are {len(cameras)} frames")
        cameras = [cameras[i] for i in config.frames]
    frames = []
    with torch.no_grad():
        for i, camera in enumerate(cameras):
            rgb = view(scene, camera, background, config.backend)
            write_image(frame_path(config.output, i), rgb)
            frames.append(rgb)
    if config.frames is not None and len(frames) == 1:  # a still: no video
        print(f"wrote {config.output / 'frame_00000.png'}")
        return 1
    video = video_path(config)
    write_video(video, frames, fps=fps)
    print(f"wrote {len(frames)} frames and {video}")
    return len(frames)


def entrypoint() -> None:
    run_cli(lambda: render_scene(parse_config(RenderConfig)))


if __name__ == "__main__":
    entrypoint()
