"""The procedural dynamic demo scene: the static demo's still-life with moving and turning objects, ray-cast
with open3d at each frame's time and written as a D-NeRF folder (exact ground truth at any time).

- `transforms_{train,val,test}.json`: Blender/D-NeRF layout, `camera_angle_x`, frames with `file_path`,
  OpenGL camera-to-world `transform_matrix` and `time` in [0, 1]. Train and test are monocular as in D-NeRF: every
  frame has its own camera (a shuffled orbit) and its own time (evenly spaced); every `test_every`-th frame goes to
  test. Val is one fixed camera over `num_val_times` times (as D-NeRF's val).
- `train/`, `test/`, `val/` PNGs: RGBA, straight alpha = ray-hit coverage, as the static demo.
- `points3d.ply`: seed points sampled on the surfaces at `num_point_times` times, with a float `t` per point.

Motion (world z up, objects as in demo_scene): the sphere slides along x and hops, the box turns about its
vertical axis, the torus spins about z; the ground, cone and pillar stay still.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import imageio.v3 as iio
import numpy as np

from render.conventions import opencv_w2c_to_opengl_c2w

from .demo_scene import (
    DemoSceneConfig,
    _build_objects,
    _camera_poses,
    _Object,
    _raycasting_scene,
    _render_view,
    _rot_z,
    _sample_points,
    _ValueNoise,
    _write_marker,
    _write_ply,
    generate_folder,
)


@dataclass
class DynamicSceneConfig(DemoSceneConfig):
    """Procedural dynamic scene settings (the static demo's, plus motion and splits over time)."""

    output: Path = Path("outputs/dynamic_scene")
    num_views: int = 60
    width: int = 96
    height: int = 72
    num_points: int = 3000
    test_every: int = 6
    num_val_times: int = 6
    """Frames of the fixed-camera val split."""
    num_point_times: int = 5
    """Seed points are sampled at this many evenly spaced times."""
    motion: float = 1.0
    """Scales every displacement and turn (0: a static scene written as D-NeRF)."""

    def validate(self) -> None:
        super().validate()
        for name in ("num_val_times", "num_point_times"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DynamicSceneConfig.{name} must be >= 1, got {getattr(self, name)}")


def _motion(name: str, t: float, amount: float):
    """(rotation about the object's centre, translation) of object `name` at time t in [0, 1]."""
    if name == "sphere":
        return np.eye(3), amount * np.array([0.7 * (t - 0.5), 0.0, 0.3 * math.sin(math.pi * t)])
    if name == "box":
        return _rot_z(amount * 120.0 * t), np.zeros(3)
    if name == "torus":
        return _rot_z(amount * 90.0 * t), np.zeros(3)
    return np.eye(3), np.zeros(3)


def objects_at(objects: List[_Object], t: float, amount: float = 1.0) -> List[_Object]:
    """The objects moved to time t (world vertices, rotation and centre; textures follow the objects)."""
    moved = []
    for obj in objects:
        rot, shift = _motion(obj.name, t, amount)
        local = (obj.vertices - obj.center) @ obj.rotation
        rotation = rot @ obj.rotation
        center = obj.center + shift
        moved.append(dataclasses.replace(obj, vertices=local @ rotation.T + center, rotation=rotation, center=center))
    return moved


def _render_at(base: List[_Object], noise: _ValueNoise, w2c: np.ndarray, t: float, config: DynamicSceneConfig) -> np.ndarray:
    objects = objects_at(base, t, config.motion)
    return _render_view(_raycasting_scene(objects), objects, noise, w2c, config)


def _frame(folder: Path, name: str, rgba: np.ndarray, w2c: np.ndarray, t: float) -> Dict[str, object]:
    iio.imwrite(folder / f"{name}.png", np.round(rgba * 255).astype(np.uint8))
    return {"file_path": f"./{name}", "time": t, "transform_matrix": opencv_w2c_to_opengl_c2w(w2c).double().numpy().tolist()}


def _write_dynamic_dataset(folder: Path, config: DynamicSceneConfig) -> None:
    """Render every frame at its time; write the three split JSONs, PNGs, timed seed points and the marker."""
    rng = np.random.default_rng(config.seed)
    noise = _ValueNoise(rng)
    base = _build_objects()
    poses = _camera_poses(config, rng)
    order = rng.permutation(len(poses))  # decorrelate camera position from time
    for split in ("train", "test", "val"):
        (folder / split).mkdir(parents=True)
    splits: Dict[str, list] = {"train": [], "test": [], "val": []}
    count = config.num_views
    for i in range(count):
        t = i / max(count - 1, 1)
        split = "test" if i % config.test_every == config.test_every // 2 else "train"
        w2c = poses[order[i]]
        name = f"{split}/r_{len(splits[split]):03d}"
        splits[split].append(_frame(folder, name, _render_at(base, noise, w2c, t, config), w2c, t))
    val_pose = _camera_poses(dataclasses.replace(config, num_views=7), np.random.default_rng(config.seed + 1))[3]
    for k in range(config.num_val_times):
        t = k / max(config.num_val_times - 1, 1)
        splits["val"].append(_frame(folder, f"val/r_{k:03d}", _render_at(base, noise, val_pose, t, config), val_pose, t))
    angle_x = math.radians(config.fov_x_deg)
    for split, frames in splits.items():
        (folder / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle_x, "frames": frames}, indent=2))
    per_time = max(config.num_points // config.num_point_times, 1)
    pts, rgb, times = [], [], []
    for k in range(config.num_point_times):
        t = k / max(config.num_point_times - 1, 1)
        p, c = _sample_points(objects_at(base, t, config.motion), noise, dataclasses.replace(config, num_points=per_time), rng)
        pts.append(p)
        rgb.append(c)
        times.append(np.full(len(p), t))
    _write_ply(folder / "points3d.ply", np.concatenate(pts), np.concatenate(rgb), np.concatenate(times))
    _write_marker(folder, config)


def generate_dynamic_scene(config: Optional[DynamicSceneConfig] = None) -> Path:
    """Write the dynamic demo scene to `config.output` unless an up-to-date copy is already there."""
    return generate_folder(config or DynamicSceneConfig(), _write_dynamic_dataset)


def main() -> None:
    """CLI: `python -m trainers.data.dynamic_scene --output outputs/dynamic_scene`."""
    import tyro

    print(generate_dynamic_scene(tyro.cli(DynamicSceneConfig)))


if __name__ == "__main__":
    main()
