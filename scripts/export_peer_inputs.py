"""Write bench_training's fixed workloads in the layouts another trainer reads, for a same-host comparison (issue 16).

Run: python -m scripts.export_peer_inputs --out /tmp/peer [--data-root ../shared/data]

- `<out>/fern`: COLMAP layout of LLFF fern at `images_8` (504x378): `sparse` (a link to the dataset's) and `images/`
  holding links named as COLMAP's `images.bin` names them (`IMG_40NN.JPG`) to the `images_8` PNGs, matched in sorted
  order as our LLFF loader matches them (OpenCV reads the PNGs whatever the extension). A peer trained at full
  resolution on it (OpenSplat: `--num-downscales 0`) sees the `fern` workload's images and 10,091 SfM points.
- `<out>/lego400`: a nerfstudio `transforms.json` of the NeRF-synthetic lego training split at 400x400 (`fl_x` from
  `camera_angle_x`, absolute image paths) whose `ply_file_path` holds exactly the 100,000 random points and colours
  the `lego400` workload starts from (same seed and extent as `TrainConfig`'s defaults).
Each folder is written atomically (a complete new folder or the old one).
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scenes.atomic import atomic_folder  # noqa: E402
from scripts.bench_training import SHARED  # noqa: E402
from trainers.config import TrainConfig  # noqa: E402
from trainers.data import load_dataset  # noqa: E402
from trainers.data.colmap_model import read_images_binary  # noqa: E402
from trainers.data.demo_scene import _write_ply  # noqa: E402
from trainers.initialise import initial_points  # noqa: E402


@dataclass
class PeerInputsConfig:
    out: Path
    """Folder to write `fern/` and `lego400/` into."""
    data_root: Path = SHARED
    """Folder holding llff_fern and nerf_synthetic_lego_400."""


def export_fern(fern: Path, out: Path) -> Path:
    """COLMAP folder `out` whose images are links to fern's images_8, named as in its sparse model."""
    model = fern / "sparse" / "0" / "images.bin"
    names = sorted(image.name for image in read_images_binary(model).values())
    pngs = sorted((fern / "images_8").glob("*.png"))
    if len(names) != len(pngs):
        raise ValueError(f"{model}: {len(names)} images in the model but {len(pngs)} PNGs in {fern / 'images_8'}")
    with atomic_folder(out) as tmp:
        (tmp / "sparse").symlink_to((fern / "sparse").resolve())
        (tmp / "images").mkdir()
        for name, png in zip(names, pngs):
            (tmp / "images" / name).symlink_to(png.resolve())
    return out


def export_lego400(lego: Path, out: Path) -> Path:
    """nerfstudio folder `out`: lego's training views and the lego400 workload's initial points as ply_file_path."""
    defaults = TrainConfig(data=lego)
    data = load_dataset(lego)
    points, colors, _ = initial_points(data, defaults.init_random_points, defaults.max_init_points, defaults.seed,
                                       defaults.init_random_extent)
    meta = json.loads((lego / "transforms_train.json").read_text())
    width, height = data.train_views[0].camera.width, data.train_views[0].camera.height
    focal = 0.5 * width / math.tan(0.5 * float(meta["camera_angle_x"]))
    image = lambda name: lego / (name if Path(name).suffix else name + ".png")  # noqa: E731  (Blender omits it)
    frames = [{"file_path": str(image(frame["file_path"]).resolve()), "transform_matrix": frame["transform_matrix"]}
              for frame in meta["frames"]]
    transforms = {"camera_model": "OPENCV", "fl_x": focal, "fl_y": focal, "cx": width / 2, "cy": height / 2,
                  "w": width, "h": height, "frames": frames, "ply_file_path": "points3D.ply"}
    with atomic_folder(out) as tmp:
        (tmp / "transforms.json").write_text(json.dumps(transforms, indent=1))
        _write_ply(tmp / "points3D.ply", points, colors)
    return out


def main(cfg: PeerInputsConfig) -> None:
    fern = export_fern(cfg.data_root / "llff_fern", cfg.out / "fern")
    lego = export_lego400(cfg.data_root / "nerf_synthetic_lego_400", cfg.out / "lego400")
    print(f"wrote {fern} and {lego}")


if __name__ == "__main__":
    main(tyro.cli(PeerInputsConfig))
