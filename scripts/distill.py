"""sf-distill: turn a trained radiance field into a Gaussian splat scene (after PVD, progressive volume distillation).

Stage 1, volume quantities: Gaussians are placed at the field's surface points (the expected depth of confidently
opaque pixels of the teacher's renders of the training cameras) with the field's colour there. Stage 2, images: the
Gaussian trainer fits the splats to the field's renders of the training cameras (the teacher's images replace the
photos; RGBA datasets keep an alpha from the field's opacity, so random backgrounds still work). The result is
evaluated against the real test photos beside the field itself: PSNR kept and time taken go to distill.json.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import torch

from scenes import GaussianScene, load_scene
from scenes.radiance_field import RadianceField
from trainers.config import TrainConfig, check_range

from ._cli import check_output_dir, parse_config, run_cli


@dataclass
class DistillConfig:
    """Distil a radiance field (field.pt or a --model nerf checkpoint) into Gaussians."""

    field: Path
    data: Path
    """The dataset the field was trained on (its training cameras are the teacher's viewpoints, its test photos
    the yardstick)."""
    output_dir: Path = Path("outputs/distill")
    run_name: str = "distilled"
    downscale: int = 1
    points: int = 100_000
    """Initial Gaussians sampled from the field's surface."""
    min_opacity: float = 0.5
    """Teacher pixels at least this opaque give surface points."""
    max_steps: int = 3000
    max_seconds: Optional[float] = None
    test_every: int = 1
    """Evaluate field and splats on every k-th test view (1: all)."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(video=False, num_test_renders=4))
    """Gaussian training settings (`--train.*`); data, output, steps and model are set by sf-distill."""

    def __post_init__(self) -> None:
        check_range("points", self.points, 1)
        check_range("min_opacity", self.min_opacity, 0, 1)
        check_range("max_steps", self.max_steps, 1)
        check_range("test_every", self.test_every, 1)


def load_field(path: Path) -> RadianceField:
    scene = load_scene(path)
    if not isinstance(scene, RadianceField):
        raise ValueError(f"{path}: holds a {type(scene).__name__}, not a radiance field (train one with --model nerf)")
    return scene


@torch.no_grad()
def teacher_views(field: RadianceField, views, background, min_opacity: float) -> Tuple[List, np.ndarray, np.ndarray]:
    """(views with the field's renders as images, surface points (M, 3), their colours (M, 3))."""
    from render import render
    from render.shadows import backproject

    out_views, points, colours = [], [], []
    bg = torch.tensor(background, dtype=torch.float32)
    for view in views:
        out = render(field, view.camera, background=bg)
        alpha = out.alpha.clamp(0, 1)
        image = out.rgb.clamp(0, 1)
        keep = alpha[..., 0] >= min_opacity
        if keep.any():
            pts = backproject(view.camera, out.depth[..., 0].double().numpy())[keep.numpy()]
            premult = (out.meta["premultiplied"] / alpha.clamp(min=1e-6)).clamp(0, 1)
            points.append(pts), colours.append(premult[keep].numpy())
        out_views.append(dataclasses.replace(view, image=image, alpha=alpha if view.alpha is not None else None, mask=None, depth=None))
    if not points:
        raise ValueError(f"the field renders nothing at least {min_opacity} opaque from the training cameras; "
                         f"is it trained? (lower --min-opacity to use fainter pixels)")
    return out_views, np.concatenate(points), np.concatenate(colours)


def run_distill(cfg: DistillConfig) -> dict:
    from trainers.data import load_dataset
    from trainers.data.dataset import SceneData
    from trainers.evaluation import evaluate
    from trainers.trainer import Trainer, write_json

    check_output_dir(cfg.output_dir, "--output-dir")
    field_model = load_field(cfg.field)
    data = load_dataset(cfg.data, downscale=cfg.downscale)
    background = cfg.train.background if cfg.train.background is not None else data.background
    tests = data.test_views[:: cfg.test_every] or data.train_views[:: cfg.test_every]
    started = time.perf_counter()
    teach, points, colours = teacher_views(field_model, data.train_views, background, cfg.min_opacity)
    rng = np.random.default_rng(cfg.train.seed)
    if len(points) > cfg.points:
        keep = rng.choice(len(points), cfg.points, replace=False)
        points, colours = points[keep], colours[keep]
    stage1_seconds = time.perf_counter() - started
    print(f"[distill] stage 1: {len(points)} Gaussians at the field's surface ({stage1_seconds:.1f} s)", flush=True)
    splats = GaussianScene.from_points(points, colours, sh_degree=cfg.train.sh_degree, initial_opacity=0.5)
    student_data = SceneData(teach, tests, data.source, background=data.background, notes=["teacher: " + str(cfg.field)])
    train_cfg = dataclasses.replace(cfg.train, data=cfg.data, model="gaussian", output_dir=cfg.output_dir,
                                    run_name=cfg.run_name, max_steps=cfg.max_steps, max_seconds=cfg.max_seconds)
    trainer = Trainer(train_cfg, student_data, scene=splats)
    metrics = trainer.train()
    total_seconds = time.perf_counter() - started
    field_metrics = evaluate(field_model, tests, background)
    report = {
        "field": str(cfg.field), "field_psnr": field_metrics["psnr"], "field_ssim": field_metrics["ssim"],
        "splats_psnr": metrics["psnr"], "splats_ssim": metrics["ssim"], "num_gaussians": metrics["num_gaussians"],
        "psnr_kept": metrics["psnr"] / max(field_metrics["psnr"], 1e-9), "test_views": len(tests),
        "stage1_seconds": stage1_seconds, "distill_seconds": total_seconds,
        "field_render_ms": field_metrics["render_ms_per_image"], "splat_render_ms": metrics["render_ms_per_image"],
        "scene": str(trainer.run_dir / "scene.ply"),
    }
    write_json(trainer.run_dir / "distill.json", report)
    print(f"[distill] field {report['field_psnr']:.2f} dB -> splats {report['splats_psnr']:.2f} dB "
          f"({100 * report['psnr_kept']:.1f}% kept) in {total_seconds:.0f} s; {trainer.run_dir / 'scene.ply'}")
    print(json.dumps({"run_dir": str(trainer.run_dir)}))
    return report


def entrypoint() -> None:
    run_cli(lambda: run_distill(parse_config(DistillConfig)))


if __name__ == "__main__":
    entrypoint()
