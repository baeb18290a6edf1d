"""Reader for Neural 3D Video (N3DV / DyNeRF) folders: `poses_bounds.npy` + one video per camera `camNN.mp4`.

- poses_bounds.npy is the LLFF N x 17 layout (llff.read_poses_bounds / llff_to_opencv_c2w); row i belongs to the
  i-th `cam*.mp4` in name order. Focal scaled by W_loaded / W_pose, principal point at the image centre.
- Frames are decoded with imageio (ffmpeg) and downscaled by `downscale` (INTER_AREA). Videos of different lengths
  are trimmed to the shortest (noted). `frame_stride` keeps every k-th frame, `max_frames` the first ones of those.
- Time = position of the frame among the kept ones / (count - 1), in [0, 1].
- Split: camera `test_camera` (default cam00, as in the N3DV paper) is the test view; the others train.
- No seed points (the format has none). Every camera x frame becomes one View: mind memory on full-size videos.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from render import Camera

from ._io import check_downscale, downscaled_size, parallel_map, parse_background, resize
from .dataset import SceneData, View
from .llff import llff_to_opencv_c2w, read_poses_bounds
from .normalize import normalize_scene


def find_videos(folder: Path) -> List[Path]:
    """The `cam*.mp4` files of a folder in name order."""
    return sorted(p for p in Path(folder).glob("cam*.mp4") if p.is_file())


def _reader(path: Path):
    import imageio.v2 as imageio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return imageio.get_reader(str(path), format="ffmpeg")


def check_video(path: Path) -> None:
    """Open a video and read its header (cheap); unreadable or not a video -> error naming the file."""
    try:
        reader = _reader(path)
        try:
            size = reader.get_meta_data().get("size")
        finally:
            reader.close()
    except Exception as exc:  # imageio / ffmpeg raise many types for corrupt files
        raise ValueError(f"{path}: cannot read video ({type(exc).__name__}: {str(exc).strip()[:200]})") from None
    if not size or min(size) < 1:
        raise ValueError(f"{path}: cannot read video (no video stream with a frame size)")


def decode_frames(path: Path, stride: int, last: Optional[int], downscale: int) -> Tuple[List[np.ndarray], int]:
    """(RGB float32 frames 0, stride, 2 stride, ... up to `last` (None: the end), each downscaled, number of frames
    read); decoding errors name the file and frame."""
    frames: List[np.ndarray] = []
    index = -1
    try:
        reader = _reader(path)
        try:
            for index, frame in enumerate(reader):
                if last is not None and index > last:
                    index -= 1
                    break
                if index % stride == 0:
                    rgb = np.asarray(frame)[..., :3].astype(np.float32) / 255.0
                    if downscale > 1:
                        rgb = resize(rgb, downscaled_size(rgb.shape[1], rgb.shape[0], downscale))
                    frames.append(rgb)
        finally:
            reader.close()
    except Exception as exc:
        raise ValueError(
            f"{path}: cannot decode video at frame {index + 1} ({type(exc).__name__}: {str(exc).strip()[:200]})"
        ) from None
    if not frames:
        raise ValueError(f"{path}: video has no frames")
    return frames, index + 1


def _views(
    path: Path, c2w: np.ndarray, hwf: np.ndarray, frames: List[np.ndarray], stride: int, span: int
) -> List[View]:
    """One View per kept frame of one camera's video; time = position / span."""
    w2c = np.linalg.inv(c2w)
    h_pose, w_pose, f = hwf
    views = []
    for k, rgb in enumerate(frames):
        height, width = rgb.shape[:2]
        camera = Camera(w2c, float(f * width / w_pose), float(f * height / h_pose), width / 2.0, height / 2.0,
                        width, height, time=k / span if span > 0 else None)
        image = torch.from_numpy(np.ascontiguousarray(np.clip(rgb, 0.0, 1.0)))
        views.append(View(camera=camera, image=image, name=f"{path.stem}/{k * stride:06d}"))
    return views


def load_n3dv(
    path: Path,
    downscale: int = 2,
    background: Optional[Sequence[float]] = None,
    max_frames: Optional[int] = None,
    frame_stride: int = 1,
    test_camera: Optional[str] = "cam00",
    normalize: bool = True,
    skip_missing_frames: bool = False,
) -> SceneData:
    """Read an N3DV folder into a SceneData (see the module docstring; `test_camera=None` keeps every camera
    for training). `skip_missing_frames` is accepted (as by every reader) but does not apply: rows pair with videos.
    """
    del skip_missing_frames
    downscale = check_downscale(downscale)
    if isinstance(frame_stride, bool) or int(frame_stride) != frame_stride or frame_stride < 1:
        raise ValueError(f"frame_stride must be an integer >= 1, got {frame_stride!r}")
    if max_frames is not None and (int(max_frames) != max_frames or max_frames < 1):
        raise ValueError(f"max_frames must be an integer >= 1, got {max_frames!r}")
    root = Path(path)
    if root.is_file():
        root = root.parent
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found")
    npy = root / "poses_bounds.npy"
    poses, hwf, bounds = read_poses_bounds(npy)
    videos = find_videos(root)
    if len(videos) != len(poses):
        raise ValueError(f"{npy}: {len(poses)} poses but {len(videos)} cam*.mp4 videos in {root} (row i pairs "
                         f"with the i-th video in name order, so the counts must match)")
    names = [v.stem for v in videos]
    if test_camera is not None and test_camera not in names:
        raise ValueError(f"{root}: test camera {test_camera}.mp4 not found (videos: {', '.join(names)}); "
                         f"pass test_camera=None to train on every camera")
    for video in videos:  # every video is checked before any is decoded
        check_video(video)
    stride = int(frame_stride)
    last = None if max_frames is None else (int(max_frames) - 1) * stride
    decoded = parallel_map(lambda v: decode_frames(v, stride, last, downscale), videos)
    counts = [n for _, n in decoded]
    shortest = min(counts)
    keep = len(range(0, shortest, stride))
    span = keep - 1
    bg = parse_background(background, (0.0, 0.0, 0.0))
    train: List[View] = []
    test: List[View] = []
    for i, (video, (frames, _)) in enumerate(zip(videos, decoded)):
        views = _views(video, llff_to_opencv_c2w(poses[i]), hwf[i], frames[:keep], stride, span)
        (test if video.stem == test_camera else train).extend(views)
    notes = [
        f"n3dv dataset {root} ({len(videos)} cameras; near/far {bounds.min():.4g}..{bounds.max():.4g})",
        f"split: {len(train)} train / {len(test)} test views"
        + (f" (camera {test_camera} is test)" if test_camera else " (no test camera)"),
        f"frames 0..{span * stride} every {stride} ({keep} per camera)"
        + (f"; time = frame position / {span}, over [0, 1]" if span > 0 else "; one frame only: static (no time)"),
    ]
    if len(set(counts)) > 1:
        lengths = ", ".join(f"{v.name} {n}" for v, n in zip(videos, counts))
        notes.append(f"videos have different lengths ({lengths} frames read); trimmed to the shortest, "
                     f"{shortest} frames")
    if downscale > 1:
        notes.append(f"frames downscaled by {downscale} (INTER_AREA); focal scaled by W_loaded / W_pose")
    notes.append("no seed points (N3DV has none)")
    scene = SceneData(train, test, root, background=bg, notes=notes)
    if normalize:
        scene, _ = normalize_scene(scene, align_axes=False)
    return scene
