"""sf-eval: evaluate a trained scene on a dataset's test views and write the metrics as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from scenes import load_scene
from trainers.config import check_background, check_range

from ._cli import check_output_file, parse_config, run_cli


@dataclass
class EvalConfig:
    """Per-image and mean PSNR / SSIM (LPIPS where its weights are local), primitive count, render time."""

    scene: Path
    """scene.ply or a checkpoint (.pt)."""
    data: Path
    """Dataset folder; its test split is evaluated (the training views when it has none), and for Blender/D-NeRF
    folders the val split as well (reported under "splits")."""
    output: Optional[Path] = None
    """JSON file to write (default: eval.json beside the scene)."""
    downscale: int = 1
    background: Optional[Tuple[float, float, float]] = None
    backend: str = "auto"
    save_renders: int = 0
    """Save this many (render | ground truth) PNGs beside the JSON."""

    def __post_init__(self) -> None:
        check_range("downscale", self.downscale, 1)
        check_range("save_renders", self.save_renders, 0)
        check_background("background", self.background)


def run_eval(config: EvalConfig) -> dict:
    from trainers.data import load_dataset
    from trainers.data.load import detect_format
    from trainers.evaluation import evaluate
    from trainers.motion_errors import motion_error_split
    from trainers.trainer import peak_memory_mb, write_json

    output = config.output or config.scene.parent / "eval.json"
    check_output_file(output, "--output")  # default eval.json beside the scene: that folder must be writable
    scene = load_scene(config.scene)
    options = {"val": True} if detect_format(config.data) == "blender" else {}
    data = load_dataset(config.data, downscale=config.downscale, background=config.background, **options)
    views = data.test_views or data.train_views
    background = config.background if config.background is not None else data.background
    render_dir = output.parent / f"{output.stem}_renders" if config.save_renders else None
    compose = None
    if data.driving is not None:  # driving logs: the run's sky behind the splats; held-out frames named
        from trainers.driving_losses import sky_compose_beside

        compose = sky_compose_beside(config.scene)
        metrics_note = next((n for n in data.notes if n.startswith("split:")), "")
        print(f"[eval] driving log, {metrics_note}; sky: {'sky.pt beside the scene' if compose else 'none'}")
    metrics = evaluate(scene, views, background, config.backend, render_dir, config.save_renders, compose=compose)
    metrics.update(split="test" if data.test_views else "train (no test views)", scene=str(config.scene), dataset=str(data.source))
    if data.driving is not None:
        metrics["held_out"] = f"every {data.driving.test_every}th frame: {', '.join(map(str, data.driving.test_frames))}"
        print(f"depth vs LiDAR (1-80 m, {metrics['depth_points']} returns): AbsRel {metrics['depth_abs_rel']:.4f}, "
              f"RMSE {metrics['depth_rmse']:.3f} m, delta<1.25 {metrics['depth_delta1']:.4f}")
    metrics["splits"] = {name: evaluate(scene, split_views, background, config.backend) for name, split_views in data.extra_splits.items()}
    for name, split_views in data.extra_splits.items():  # D-NeRF val: one camera over time -> where the error is
        motion = motion_error_split(scene, split_views, background, backend=config.backend)
        if motion is not None:
            metrics["splits"][name]["motion"] = motion
    run_metrics = config.scene.parent / "metrics.json"
    if run_metrics.is_file():  # training wall time and memory come from the run that made the scene
        previous = json.loads(run_metrics.read_text())
        for key in ("train_seconds", "steps", "peak_memory_mb"):
            if key in previous:
                metrics[f"training_{key}" if not key.startswith("train") else key] = previous[key]
    metrics["eval_peak_memory_mb"] = peak_memory_mb()
    write_json(output, metrics)
    lpips = f", LPIPS {metrics['lpips']:.4f}" if metrics["lpips"] is not None else f" (LPIPS unavailable: {metrics['lpips_note']})"
    print(f"{metrics['split']}: PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}{lpips}; {metrics['num_gaussians']} Gaussians, "
          f"{metrics['render_ms_per_image']:.1f} ms/image -> {output}")
    for name, split in [(metrics["split"], metrics)] + list(metrics["splits"].items()):
        if name != metrics["split"]:
            print(f"{name}: PSNR {split['psnr']:.2f} dB, SSIM {split['ssim']:.4f} over {split['num_views']} views")
        if "motion" in split:
            m = split["motion"]
            print(f"{name} (one camera over time): moving pixels {100 * m['moving_fraction']:.1f}% hold "
                  f"{100 * m['moving_error_share']:.0f}% of the squared error; PSNR with the moving pixels perfect "
                  f"{m['psnr_if_moving_perfect']:.2f} dB, with the still ones perfect {m['psnr_if_still_perfect']:.2f} dB")
        if split["per_time"]:
            rows = ", ".join(f"t={r['time']:.3g}: {r['psnr']:.2f}" for r in split["per_time"])
            print(f"{name} PSNR per time: {rows}")
    return metrics


def entrypoint() -> None:
    run_cli(lambda: run_eval(parse_config(EvalConfig)))


if __name__ == "__main__":
    entrypoint()
