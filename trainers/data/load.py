"""Format auto-detection: one entry point for every dataset folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from .blender import load_blender
from .colmap import load_colmap
from .colmap_model import find_sparse_dir
from .dataset import SceneData
from .driving import is_driving_log, load_driving
from .llff import load_llff
from .n3dv import find_videos, load_n3dv
from .nerfstudio import load_nerfstudio
from .normalize import normalize_scene
from .panoptic import load_panoptic

FORMATS = ("nerfstudio", "blender", "colmap", "llff", "panoptic", "n3dv", "driving")


def detect_format(path: Path) -> str:
    """'nerfstudio', 'blender', 'colmap' (sparse/0 or sparse/ with cameras.bin/.txt), 'llff' (poses_bounds.npy),
    'panoptic' (train_meta.json, Dynamic 3D Gaussians), 'n3dv' (poses_bounds.npy plus cam*.mp4 videos) or
    'driving' (a KITTI raw root, date or drive folder, or a canonical driving log with driving_log.json).

    Video (n3dv) and panoptic folders win over a COLMAP model beside them; otherwise a folder with both a COLMAP
    model and poses_bounds.npy is 'colmap'. Unknown folders or files, and missing
    paths -> errors naming the path and what is expected.
    """
    path = Path(path)
    if path.is_file() and path.name in ("train_meta.json", "test_meta.json"):
        return "panoptic"
    if path.is_file() and path.name == "poses_bounds.npy" and find_videos(path.parent):
        return "n3dv"
    if path.is_file() and path.suffix == ".json":
        return "blender" if path.name.startswith("transforms_") else "nerfstudio"
    if path.is_file() and path.name == "poses_bounds.npy":
        return "llff"
    if path.is_file():
        raise ValueError(
            f"{path}: is a file, not a dataset; expected a dataset folder, or a transforms*.json "
            f"(nerfstudio / Blender), train_meta.json (Panoptic) or poses_bounds.npy (LLFF / N3DV) file"
        )
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (no such dataset folder or file)")
    if not path.is_dir():
        raise ValueError(f"{path}: is not a folder; expected a dataset folder")
    if is_driving_log(path):
        return "driving"
    if (path / "transforms.json").is_file():
        return "nerfstudio"
    if (path / "transforms_train.json").is_file():
        return "blender"
    if (path / "train_meta.json").is_file():
        return "panoptic"
    if (path / "poses_bounds.npy").is_file() and find_videos(path):
        return "n3dv"
    if find_sparse_dir(path) is not None:
        return "colmap"
    if (path / "poses_bounds.npy").is_file():
        return "llff"
    raise ValueError(
        f"{path}: unrecognised dataset folder (expected transforms.json for nerfstudio, "
        f"transforms_train.json for Blender/D-NeRF, sparse/0 or sparse/ with cameras.bin/.txt for COLMAP, "
        f"poses_bounds.npy for LLFF, train_meta.json for Dynamic 3D Gaussians / CMU Panoptic, "
        f"poses_bounds.npy plus cam*.mp4 videos for Neural 3D Video, a KITTI raw folder (a date folder with "
        f"calib_cam_to_cam.txt) or driving_log.json for a canonical driving log)"
    )


def load_dataset(
    path: Path,
    downscale: int = 1,
    background: Optional[Sequence[float]] = None,
    *,
    format: Optional[str] = None,
    normalize: Optional[bool] = None,
    **options: Any,
) -> SceneData:
    """Load any supported dataset folder, auto-detecting its format unless `format` is given.

    `normalize` (normalize.normalize_scene) defaults to True for COLMAP/LLFF/N3DV (as gsplat does) and False for
    Blender/nerfstudio/Panoptic. Extra keyword `options` go to the format's reader (e.g. images_folder, test_every,
    skip_missing_frames, which every reader accepts).
    """
    path = Path(path)
    fmt = detect_format(path) if format is None else format
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if fmt in ("colmap", "llff", "n3dv"):
        reader = {"colmap": load_colmap, "llff": load_llff, "n3dv": load_n3dv}[fmt]
        folder = path.parent if path.is_file() else path
        return reader(folder, downscale=downscale, background=background,
                      normalize=True if normalize is None else normalize, **options)
    if fmt == "driving":
        return load_driving(path, downscale=downscale, background=background, **options)
    if fmt == "nerfstudio":
        scene = load_nerfstudio(path, downscale=downscale, background=background, **options)
    elif fmt == "panoptic":
        scene = load_panoptic(path, downscale=downscale, background=background, **options)
    else:
        folder = path.parent if path.is_file() else path
        scene = load_blender(folder, downscale=downscale, background=background, **options)
    if normalize:
        scene, _ = normalize_scene(scene, align_axes=False)
    return scene
